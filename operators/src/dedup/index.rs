//! The index from a key's hash to its slot, behind dedup's chains.
//!
//! Dedup looks up one key per update in a table of millions, nearly always
//! a key it has never seen: each lookup is a cache miss, and waiting for
//! them one after the other was most of dedup's time. This table is built
//! so that the misses of many lookups overlap ([`SlotIndex::warm`]) and so
//! that it stays small: one `u64` per entry (part of the hash and the slot
//! number), where a general map stores each key beside its value. The keys
//! themselves live in the slots, which the caller checks a candidate
//! against.

/// An entry: the hash's upper 32 bits (the tag) above the slot number.
type Entry = u64;

/// No slot number is `u32::MAX`, so no entry is this.
const EMPTY: Entry = u64::MAX;

/// Fewer buckets than this are never allocated.
const MIN_BITS: u32 = 4;

/// An open-addressing table, with linear probing, from 64-bit key hashes
/// to `u32` slot numbers; several keys may share a hash, and the caller
/// tells them apart by their slots. A key's home bucket is its hash's top
/// bits, so growing needs only the tags, never the keys.
pub(super) struct SlotIndex {
    entries: Vec<Entry>,
    /// Entries in use.
    len: usize,
    /// `entries.len()` is `1 << bits`.
    bits: u32,
}

impl SlotIndex {
    /// An empty index.
    pub(super) fn new() -> SlotIndex {
        SlotIndex {
            entries: vec![EMPTY; 1 << MIN_BITS],
            len: 0,
            bits: MIN_BITS,
        }
    }

    /// Entries in use.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Reads the home bucket of each hash and returns something computed
    /// from them, which the caller passes to [`std::hint::black_box`]:
    /// the reads do not depend on each other, so the processor waits for
    /// their cache misses together, and the lookups that follow find the
    /// buckets in cache.
    pub(super) fn warm(&self, hashes: impl Iterator<Item = u64>) -> u64 {
        hashes.fold(0, |seen, hash| seen ^ self.entries[self.home(hash)])
    }

    /// The slot of the key with `hash` for which `is_key` holds.
    pub(super) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag(hash);
        let mask = self.mask();
        let mut bucket = self.home(hash);
        loop {
            let entry = self.entries[bucket];
            if entry == EMPTY {
                return None;
            }
            if entry_tag(entry) == tag && is_key(slot(entry)) {
                return Some(slot(entry));
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// Adds `slot` under `hash`; the caller knows that it is not there yet.
    pub(super) fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert!(slot != u32::MAX);
        // At most 3/4 full: linear probing slows down quickly beyond.
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place((u64::from(tag(hash)) << 32) | u64::from(slot));
        self.len += 1;
    }

    /// Removes `slot`, which is under `hash`. Entries further along its
    /// probe run move back into the gap, so that no lookup stops short of
    /// them (no tombstones to clean up later).
    pub(super) fn remove(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let mut gap = self.home(hash);
        let wanted = (u64::from(tag(hash)) << 32) | u64::from(slot);
        loop {
            match self.entries[gap] {
                EMPTY => return,
                entry if entry == wanted => break,
                _ => gap = (gap + 1) & mask,
            }
        }
        self.len -= 1;
        let mut next = (gap + 1) & mask;
        loop {
            let entry = self.entries[next];
            if entry == EMPTY {
                break;
            }
            // The entry may fill the gap if its home is not in the cyclic
            // range (gap, next]: its probe run passes through the gap.
            let home = self.home_of_tag(entry_tag(entry));
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(gap) & mask {
                self.entries[gap] = entry;
                gap = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[gap] = EMPTY;
    }

    /// Empties the index and gives its memory back.
    pub(super) fn clear(&mut self) {
        *self = SlotIndex::new();
    }

    fn grow(&mut self) {
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; 1 << (self.bits + 1)]);
        self.bits += 1;
        for entry in old.into_iter().filter(|&entry| entry != EMPTY) {
            self.place(entry);
        }
    }

    /// Puts `entry` in the first empty bucket from its home.
    fn place(&mut self, entry: Entry) {
        let mask = self.mask();
        let mut bucket = self.home_of_tag(entry_tag(entry));
        while self.entries[bucket] != EMPTY {
            bucket = (bucket + 1) & mask;
        }
        self.entries[bucket] = entry;
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, hash: u64) -> usize {
        self.home_of_tag(tag(hash))
    }

    /// The top `bits` bits of the tag. Slot numbers are `u32`, so an index
    /// never needs more than 2^32 buckets, which the tag's 32 bits cover.
    fn home_of_tag(&self, tag: u32) -> usize {
        (u64::from(tag) >> (32 - self.bits)) as usize
    }
}

fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn entry_tag(entry: Entry) -> u32 {
    (entry >> 32) as u32
}

fn slot(entry: Entry) -> u32 {
    entry as u32
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::SlotIndex;

    /// Keys are `u32`s; slot `n` holds key `keys[n]`. Hashes come from a
    /// few distinct values, so that collisions, shared homes and long
    /// probe runs are the common case.
    fn hash_of(key: u32, spread: u32) -> u64 {
        let hash = u64::from(key % spread).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Half the keys share a home with another hash's keys.
        if key % 2 == 0 {
            hash & 0xffff_0000_ffff_ffff
        } else {
            hash
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_map_from_keys_to_slots(
            operations in prop::collection::vec((any::<bool>(), 0u32..64), 0..600),
            spread in 1u32..40,
        ) {
            let mut index = SlotIndex::new();
            let mut keys: Vec<u32> = Vec::new();
            let mut expected: HashMap<u32, u32> = HashMap::new();
            for (insert, key) in operations {
                let hash = hash_of(key, spread);
                let found = index.find(hash, |slot| keys[slot as usize] == key);
                prop_assert_eq!(found, expected.get(&key).copied());
                match (insert, found) {
                    (true, None) => {
                        let slot = keys.len() as u32;
                        keys.push(key);
                        index.insert(hash, slot);
                        expected.insert(key, slot);
                    }
                    (false, Some(slot)) => {
                        index.remove(hash, slot);
                        expected.remove(&key);
                    }
                    _ => {}
                }
                prop_assert_eq!(index.len(), expected.len());
            }
            for (key, slot) in &expected {
                let found = index.find(hash_of(*key, spread), |slot| keys[slot as usize] == *key);
                prop_assert_eq!(found, Some(*slot));
            }
        }
    }

    #[test]
    fn grows_and_shrinks_back_when_cleared() {
        let mut index = SlotIndex::new();
        let hash = |key: u32| u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for key in 0..10_000 {
            index.insert(hash(key), key);
        }
        assert_eq!(index.len(), 10_000);
        assert!((0..10_000).all(|key| index.find(hash(key), |slot| slot == key) == Some(key)));
        assert_eq!(index.find(hash(10_001), |_| true), None);
        index.clear();
        assert_eq!(index.len(), 0);
        assert_eq!(index.find(hash(5), |_| true), None);
    }
}
