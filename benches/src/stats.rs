//! Summary statistics for the comparison: median with a 95% bootstrap confidence interval
//! (percentile method, fixed seed so reports are reproducible from the same samples).

use serde::{Deserialize, Serialize};

/// Bootstrap resamples per interval.
const RESAMPLES: usize = 2000;

/// Median and its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// The samples' median.
    pub median: f64,
    /// Lower bound of the interval.
    pub ci_low: f64,
    /// Upper bound of the interval.
    pub ci_high: f64,
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() & 1 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

/// Median with a 95% bootstrap interval; a single sample gives a zero-width interval.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let med = median(values)?;
    if values.len() == 1 {
        return Some(Summary {
            n: 1,
            median: med,
            ci_low: med,
            ci_high: med,
        });
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut medians = Vec::with_capacity(RESAMPLES);
    let mut buf = vec![0.0; values.len()];
    for _ in 0..RESAMPLES {
        for slot in buf.iter_mut() {
            *slot = values[rng.below(values.len())];
        }
        medians.push(median(&buf).expect("non-empty"));
    }
    medians.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| medians[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some(Summary {
        n: values.len(),
        median: med,
        ci_low: at(0.025),
        ci_high: at(0.975),
    })
}

/// A small deterministic PRNG (xorshift64*), enough for resampling indices.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn interval_contains_the_median_and_is_deterministic() {
        let v = [10.0, 11.0, 9.5, 10.2, 30.0, 10.1, 9.9, 10.4, 10.0, 10.3];
        let s = summarize(&v).unwrap();
        assert_eq!(s.n, 10);
        assert!(s.ci_low <= s.median && s.median <= s.ci_high, "{s:?}");
        assert!(s.ci_high < 30.0, "the outlier does not drag the median's interval");
        assert_eq!(summarize(&v), Some(s));
        let one = summarize(&[5.0]).unwrap();
        assert_eq!((one.ci_low, one.ci_high), (5.0, 5.0));
    }
}
