//! A small, fast, seedable PRNG (SplitMix64). P2C needs cheap uniform indices, not
//! cryptographic randomness, and a Wasm filter should not pull in `getrandom`.

#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2⁻³² for any `n` we use).
    /// Returns 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        let x = self.next_u64();
        match u32::try_from(n) {
            // The high 64 bits of `x × n` from two 32 × 32-bit products: exact, and native
            // on wasm32, which has no 128-bit multiply (it would call a software one).
            Ok(n) => {
                let n = u64::from(n);
                let (high, low) = (x >> 32, x & 0xFFFF_FFFF);
                ((high * n + ((low * n) >> 32)) >> 32) as usize
            }
            // Only where `usize` is wider than 32 bits; the result is below `n`, a usize.
            #[allow(clippy::cast_possible_truncation)]
            Err(_) => ((u128::from(x) * n as u128) >> 64) as usize,
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 1_800 && c < 2_200), "{seen:?}");
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn below_is_the_high_half_of_the_128_bit_product() {
        let mut r = SplitMix64::new(99);
        let mut copy = SplitMix64::new(99);
        for n in [1usize, 2, 3, 7, 1_000, 65_535, u32::MAX as usize] {
            for _ in 0..10_000 {
                let expected = ((u128::from(copy.next_u64()) * n as u128) >> 64) as usize;
                assert_eq!(r.below(n), expected, "n = {n}");
            }
        }
    }

    #[test]
    fn unit_is_in_zero_one() {
        let mut r = SplitMix64::new(1);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
