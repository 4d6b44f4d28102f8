//! Latency samples summed up as the benchmarks print them: count, median, 99th
//! percentile and maximum.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// `None` without samples.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Self {
            count: sorted.len(),
            p50: quantile(&sorted, 0.50)?,
            p99: quantile(&sorted, 0.99)?,
            max: *sorted.last()?,
        })
    }
}

/// The sample at quantile `q` (0..=1) of `sorted`: the one at rank `q · (n − 1)`,
/// rounded to the nearest, so that the 99th of 100 samples is the second largest.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted
        .get((last as f64 * q.clamp(0.0, 1.0)).round() as usize)
        .copied()
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
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
        // Rank 49.5 rounds to 50: the 51st sample.
        assert_eq!(p.p50, Duration::from_millis(51));
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
        assert_eq!(Percentiles::of(&[]), None);
        assert_eq!(quantile(&[], 0.5), None);
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
