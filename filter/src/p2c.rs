//! Power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load
//! Balancing", 2001): sample two distinct endpoints uniformly and send the request to the
//! better one (`choice.rs` decides which, and from which endpoints the two are drawn).
//! It avoids both the herd behaviour of "always the cheapest" under stale information
//! and the blindness of random choice, at O(1) per pick.

use crate::rng::SplitMix64;

/// Two distinct indices in `0..len`, uniformly (Floyd's algorithm for k = 2).
/// `None` when there are fewer than two.
pub fn pick_two(len: usize, rng: &mut SplitMix64) -> Option<(usize, usize)> {
    if len < 2 {
        return None;
    }
    let a = rng.below(len - 1);
    let b = rng.below(len);
    // Floyd: draw from 0..len-1 then 0..len; on collision take the new top element.
    let b = if b == a { len - 1 } else { b };
    // Floyd's first draw never yields `len - 1`; a coin flip makes the order uniform too,
    // so "ties go to the first pick" favours no index.
    if rng.next_u64() & 1 == 0 {
        Some((a, b))
    } else {
        Some((b, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_than_two_endpoints_gives_no_pair() {
        let mut r = SplitMix64::new(1);
        assert_eq!(pick_two(0, &mut r), None);
        assert_eq!(pick_two(1, &mut r), None);
    }

    #[test]
    fn two_endpoints_always_gives_both() {
        let mut r = SplitMix64::new(3);
        for _ in 0..1000 {
            let (a, b) = pick_two(2, &mut r).unwrap_or((9, 9));
            assert!((a, b) == (0, 1) || (a, b) == (1, 0), "{a} {b}");
        }
    }

    #[test]
    fn pairs_are_distinct_in_range_and_uniform() {
        let mut r = SplitMix64::new(11);
        let n = 5;
        let mut hits = vec![0u32; n];
        for _ in 0..50_000 {
            let (a, b) = pick_two(n, &mut r).unwrap_or((0, 0));
            assert_ne!(a, b);
            assert!(a < n && b < n);
            hits[a] += 1;
            hits[b] += 1;
        }
        // each index is in 2/5 of the pairs: 20,000 ± 3 %
        assert!(
            hits.iter().all(|&h| (19_400..20_600).contains(&h)),
            "{hits:?}"
        );
    }

    #[test]
    fn every_index_is_first_pick_equally_often() {
        let mut r = SplitMix64::new(5);
        let mut first = [0u32; 3];
        for _ in 0..30_000 {
            first[pick_two(3, &mut r).map_or(0, |p| p.0)] += 1;
        }
        assert!(
            first.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{first:?}"
        );
    }
}
