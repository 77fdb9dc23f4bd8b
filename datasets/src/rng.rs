//! A small, self-contained PRNG so that generated data is byte-identical
//! whatever the versions of other crates: SplitMix64 seeds xoshiro256++
//! (Blackman & Vigna), and [`mix64`] derives stateless per-entity values
//! (a user's country, an ad's CTR) from a seed and an index.

/// The SplitMix64 finaliser: a bijective 64-bit mix, good enough to turn
/// consecutive integers into independent-looking values.
///
/// ```
/// use adflow_datagen::rng::mix64;
/// assert_eq!(mix64(0), 0);
/// assert_ne!(mix64(1), mix64(2));
/// ```
pub fn mix64(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The golden-ratio increment of SplitMix64.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64 (Steele, Lea & Flood): a tiny generator used to seed others.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// use adflow_datagen::rng::SplitMix64;
    /// // The reference implementation's first output for seed 0.
    /// assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }
}

/// xoshiro256++ 1.0: fast, 256 bits of state, passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

/// 2^-53, the spacing of the doubles [`Rng::next_f64`] returns.
const F64_UNIT: f64 = 1.0 / (1u64 << 53) as f64;

impl Rng {
    /// A generator whose state is four SplitMix64 outputs of `seed`, as the
    /// xoshiro authors recommend.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut seeder = SplitMix64::new(seed);
        Rng {
            state: [
                seeder.next_u64(),
                seeder.next_u64(),
                seeder.next_u64(),
                seeder.next_u64(),
            ],
        }
    }

    /// A generator with an explicit state (must not be all zero).
    ///
    /// ```
    /// use adflow_datagen::rng::Rng;
    /// // Reference value: rotl(1 + 4, 23) + 1.
    /// assert_eq!(Rng::from_state([1, 2, 3, 4]).next_u64(), 41_943_041);
    /// ```
    pub fn from_state(state: [u64; 4]) -> Self {
        Rng { state }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// A uniform double in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * F64_UNIT
    }

    /// A uniform integer in `[0, n)` (0 when `n` is 0), by Lemire's
    /// multiply-shift; the bias is below 2^-32 for the sizes used here.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in `[low, high]` (`low` when the range is empty).
    #[inline]
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = high.abs_diff(low).saturating_add(1);
        low.wrapping_add_unsigned(self.below(span))
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniform double in `[low, high)`.
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// An exponential variate with mean 1.
    #[inline]
    pub fn exponential(&mut self) -> f64 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        -(1.0 - self.next_f64()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_reference_sequence() {
        // First outputs of the reference C implementation from state {1, 2, 3, 4}.
        let mut rng = Rng::from_state([1, 2, 3, 4]);
        let outputs: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(
            outputs,
            [
                41_943_041,
                58_720_359,
                3_588_806_011_781_223,
                3_591_011_842_654_386
            ]
        );
    }

    #[test]
    fn ranges_are_respected() {
        let mut rng = Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            let x = rng.between(-3, 3);
            assert!((-3..=3).contains(&x));
            assert!(rng.below(10) < 10);
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(rng.exponential().is_finite());
        }
        assert_eq!(rng.between(5, 5), 5);
        assert_eq!(rng.between(5, 1), 5);
        assert_eq!(rng.below(0), 0);
    }
}
