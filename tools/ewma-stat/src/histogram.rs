//! A Prometheus histogram's cumulative buckets, their change over a window, and
//! quantiles interpolated inside a bucket exactly as PromQL's
//! `histogram_quantile` does, so `ewma-stat` and a Grafana panel over the same
//! window agree.

/// Cumulative counts by upper bound (`le`), sorted by bound; a complete
/// histogram ends with the `+Inf` bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    cumulative: Vec<(f64, f64)>,
}

impl Buckets {
    /// Buckets from `(le, cumulative count)` pairs in any order.
    pub fn new(mut cumulative: Vec<(f64, f64)>) -> Self {
        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { cumulative }
    }

    /// `(le, cumulative count)` pairs, sorted by bound.
    pub fn cumulative(&self) -> &[(f64, f64)] {
        &self.cumulative
    }

    /// Observations in the histogram: the count of the last (`+Inf`) bucket.
    pub fn count(&self) -> f64 {
        self.cumulative.last().map_or(0.0, |&(_, count)| count)
    }

    /// What was observed between `earlier` and `self`, bucket by bucket.
    ///
    /// If the bounds differ or any count went down, the histogram was reset
    /// (Envoy restarted) in between, and everything in `self` is new.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let same_bounds = self.cumulative.len() == earlier.cumulative.len()
            && self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .all(|(now, then)| now.0 == then.0);
        let reset = !same_bounds
            || self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .any(|(now, then)| now.1 < then.1);
        if reset {
            return self.clone();
        }
        Buckets {
            cumulative: self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(&(le, now), &(_, then))| (le, now - then))
                .collect(),
        }
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket;
    /// `None` without observations or without a `+Inf` bucket.
    ///
    /// As in PromQL: the first bucket starts at 0; a quantile that falls in the
    /// `+Inf` bucket is the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let buckets = &self.cumulative;
        if buckets.len() < 2 || buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return None;
        }
        let observations = self.count();
        if observations <= 0.0 || !q.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * observations;
        let b = buckets
            .iter()
            .position(|&(_, count)| count >= rank)
            .unwrap_or(buckets.len() - 1);
        if b == buckets.len() - 1 {
            return Some(buckets[b - 1].0);
        }
        let (end, count) = buckets[b];
        if b == 0 {
            if end <= 0.0 || count <= 0.0 {
                return Some(end.min(0.0));
            }
            return Some(end * rank / count);
        }
        let (start, below) = buckets[b - 1];
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(end);
        }
        Some(start + (end - start) * (rank - below) / in_bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn buckets(pairs: &[(f64, f64)]) -> Buckets {
        Buckets::new(pairs.to_vec())
    }

    #[test]
    fn interpolates_inside_the_bucket_holding_the_rank() {
        // 896 observations, all in (25 ms, 50 ms]: the slow greeter of the fixture.
        let h = buckets(&[
            (25_000.0, 0.0),
            (50_000.0, 896.0),
            (100_000.0, 896.0),
            (INF, 896.0),
        ]);
        assert_eq!(h.quantile(0.5), Some(37_500.0));
        assert_eq!(h.quantile(0.95), Some(48_750.0));
        assert_eq!(h.quantile(0.99), Some(49_750.0));
    }

    #[test]
    fn the_first_bucket_starts_at_zero() {
        let h = buckets(&[(100.0, 10.0), (250.0, 20.0), (INF, 20.0)]);
        assert_eq!(h.quantile(0.25), Some(50.0));
        assert_eq!(h.quantile(0.75), Some(175.0));
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let h = buckets(&[(100.0, 1.0), (10_000_000.0, 1.0), (INF, 10.0)]);
        assert_eq!(h.quantile(0.5), Some(10_000_000.0));
    }

    #[test]
    fn no_observations_or_no_inf_bucket_means_no_quantile() {
        assert_eq!(buckets(&[(100.0, 0.0), (INF, 0.0)]).quantile(0.5), None);
        assert_eq!(buckets(&[(100.0, 3.0), (200.0, 3.0)]).quantile(0.5), None);
        assert_eq!(buckets(&[(INF, 3.0)]).quantile(0.5), None);
        assert_eq!(Buckets::default().quantile(0.5), None);
        assert_eq!(
            buckets(&[(100.0, 3.0), (INF, 3.0)]).quantile(f64::NAN),
            None
        );
    }

    #[test]
    fn bounds_are_sorted_whatever_order_they_came_in() {
        let h = buckets(&[(INF, 4.0), (250.0, 4.0), (100.0, 2.0)]);
        assert_eq!(h.cumulative(), [(100.0, 2.0), (250.0, 4.0), (INF, 4.0)]);
        assert_eq!(h.count(), 4.0);
    }

    #[test]
    fn since_subtracts_bucket_by_bucket() {
        let before = buckets(&[(100.0, 1.0), (250.0, 5.0), (INF, 6.0)]);
        let after = buckets(&[(100.0, 3.0), (250.0, 9.0), (INF, 12.0)]);
        assert_eq!(
            after.since(&before),
            buckets(&[(100.0, 2.0), (250.0, 4.0), (INF, 6.0)])
        );
        assert_eq!(after.since(&after).quantile(0.5), None);
    }

    #[test]
    fn since_a_reset_or_other_bounds_counts_everything_as_new() {
        let before = buckets(&[(100.0, 5.0), (INF, 9.0)]);
        let restarted = buckets(&[(100.0, 1.0), (INF, 1.0)]);
        assert_eq!(restarted.since(&before), restarted);
        let rebucketed = buckets(&[(500.0, 7.0), (INF, 10.0)]);
        assert_eq!(rebucketed.since(&before), rebucketed);
        assert_eq!(before.since(&Buckets::default()), before);
    }
}
