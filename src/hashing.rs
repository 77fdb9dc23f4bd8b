//! Hashing of keys that are hashes already.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map for keys built from [`crate::event::Id`]s and
/// [`crate::event::EventId`]s, hashed with [`PrehashedHasher`].
///
/// ```
/// use adflow::event::Id;
/// use adflow::hashing::PrehashedMap;
/// let mut seen: PrehashedMap<Id, u32> = PrehashedMap::default();
/// *seen.entry(Id::of("ad-1").unwrap()).or_default() += 1;
/// assert_eq!(seen.get(&Id::of("ad-1").unwrap()), Some(&1));
/// ```
pub type PrehashedMap<K, V> = HashMap<K, V, BuildHasherDefault<PrehashedHasher>>;

/// FxHash, for keys that are hashes already (event ids are xxh3-128, ids
/// are xxh3-64): a multiply per word spreads them well enough, for a
/// fraction of SipHash's cost. Fixed, so a table behaves the same on every
/// run. Not for keys an adversary picks freely, such as raw strings.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl PrehashedHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        let [low, high] = [n, n >> 64].map(|half| u64::try_from(half & u128::from(u64::MAX)));
        self.add(low.unwrap_or_default());
        self.add(high.unwrap_or_default());
    }

    fn write_usize(&mut self, n: usize) {
        self.add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}
