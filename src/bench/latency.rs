//! Latency samples summed up as the benchmarks print them: count, median, 99th
//! percentile and maximum.

use std::time::Duration;

/// Count, median, 99th percentile and maximum of a set of samples, by nearest rank
/// (the sample at rank ⌈q · n⌉): so the 99th percentile of 100 samples is the 99th
/// smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Percentiles<T> {
    pub(crate) count: usize,
    pub(crate) p50: T,
    pub(crate) p99: T,
    pub(crate) max: T,
}

impl<T: Copy + PartialOrd> Percentiles<T> {
    /// `None` without samples (samples that do not compare, a NaN, are left out).
    pub(crate) fn of(samples: &[T]) -> Option<Self> {
        let mut sorted: Vec<T> = samples
            .iter()
            .copied()
            .filter(|s| s.partial_cmp(s).is_some())
            .collect();
        sorted.sort_unstable_by(|a, b| a.partial_cmp(b).expect("comparable"));
        Some(Self {
            count: sorted.len(),
            p50: quantile(&sorted, 0.50)?,
            p99: quantile(&sorted, 0.99)?,
            max: *sorted.last()?,
        })
    }
}

/// The sample at quantile `q` (0..=1) of `sorted`, by nearest rank.
fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_of_a_hundred() {
        // 1..=100 ms, shuffled.
        let mut v: Vec<u64> = (1..=100).collect();
        v.reverse();
        v.swap(3, 70);
        let p = Percentiles::of(&ms_list(&v)).unwrap();
        assert_eq!(p.count, 100);
        // Rank ⌈0.5 · 100⌉: the 50th sample.
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
    }

    #[test]
    fn one_sample_or_none() {
        let one = Percentiles::of(&ms_list(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (ms_list(&[7])[0], ms_list(&[7])[0], ms_list(&[7])[0])
        );
        assert_eq!(Percentiles::<Duration>::of(&[]), None);
        assert_eq!(quantile::<Duration>(&[], 0.5), None);
    }

    #[test]
    fn percentiles_of_milliseconds() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        let p = Percentiles::of(&samples).unwrap();
        assert_eq!((p.count, p.p50, p.p99, p.max), (200, 100.0, 198.0, 200.0));
        let one = Percentiles::of(&[7.5]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (7.5, 7.5, 7.5));
        assert_eq!(Percentiles::<f64>::of(&[]), None);
        assert_eq!(Percentiles::of(&[f64::NAN]), None);
    }

    #[test]
    fn quantiles_at_the_ends() {
        let v = ms_list(&[1, 2, 3]);
        assert_eq!(quantile(&v, 0.0), Some(v[0]));
        assert_eq!(quantile(&v, 1.0), Some(v[2]));
        assert_eq!(quantile(&v, 7.0), Some(v[2]));
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
