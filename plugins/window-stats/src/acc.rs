//! Accumulators for the statistics, mergeable so since-start totals can be
//! built from closed batch windows.

use serde::{Deserialize, Serialize};
use weir_plugin::window::Merge;

/// Running figures of one window: count, sum, mean and M2 (Welford, for a
/// numerically stable standard deviation), min and max.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of samples.
    pub n: u64,
    /// Sum of the samples.
    pub sum: f64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared differences from the mean.
    pub m2: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

/// The smaller of two samples. Samples are never NaN (rows with a field
/// that is not a finite number are refused), so a comparison does what
/// `f64::min` does; in 32-bit WebAssembly `f64::min` is a call to `fmin`,
/// because the `f64.min` instruction treats NaN differently.
#[inline(always)]
fn lower(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// The larger of two samples; see [`lower`].
#[inline(always)]
fn higher(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

impl Moments {
    /// Adds a sample (a finite number).
    pub fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = lower(self.min, x);
            self.max = higher(self.max, x);
        }
        self.n += 1;
        self.sum += x;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Sample standard deviation (n - 1), `None` below two samples.
    pub fn stddev(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).sqrt())
    }
}

impl Merge for Moments {
    fn merge(&mut self, other: Self) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = other;
            return;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        self.m2 += other.m2 + delta * delta * (self.n as f64) * (other.n as f64) / n as f64;
        self.mean = self.sum_mean(&other, n);
        self.sum += other.sum;
        self.min = lower(self.min, other.min);
        self.max = higher(self.max, other.max);
        self.n = n;
    }
}

impl Moments {
    fn sum_mean(&self, other: &Moments, n: u64) -> f64 {
        (self.sum + other.sum) / n as f64
    }
}

/// Sample times of one open window, for counting gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Times(pub Vec<i64>);

impl Times {
    /// Gaps inside the window: consecutive samples (in time order) not
    /// exactly `expect` apart; with the first and last time.
    pub fn summarise(mut self, expect: i64) -> GapSummary {
        self.0.sort_unstable();
        let gaps = self.0.windows(2).filter(|w| w[1] - w[0] != expect).count() as u64;
        GapSummary {
            n: self.0.len() as u64,
            gaps,
            first: self.0.first().copied(),
            last: self.0.last().copied(),
            expect,
        }
    }
}

impl Merge for Times {
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// Gap count of a span of samples, mergeable in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapSummary {
    /// Samples.
    pub n: u64,
    /// Consecutive pairs not `expect` apart.
    pub gaps: u64,
    /// Earliest sample time.
    pub first: Option<i64>,
    /// Latest sample time.
    pub last: Option<i64>,
    /// Expected distance, ms.
    pub expect: i64,
}

impl GapSummary {
    /// Appends a later span (its samples all come after ours).
    pub fn append(&mut self, later: GapSummary) {
        if later.n == 0 {
            return;
        }
        if let (Some(last), Some(first)) = (self.last, later.first)
            && first - last != self.expect
        {
            self.gaps += 1;
        }
        self.gaps += later.gaps;
        self.n += later.n;
        self.first = self.first.or(later.first);
        self.last = later.last;
        self.expect = later.expect;
    }
}

/// What one window of one statistic accumulates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// Numeric statistics.
    Moments(Moments),
    /// Gap counting.
    Times(Times),
}

impl Default for Acc {
    fn default() -> Self {
        Acc::Moments(Moments::default())
    }
}

impl Merge for Acc {
    fn merge(&mut self, other: Self) {
        match (self, other) {
            (Acc::Moments(a), Acc::Moments(b)) => a.merge(b),
            (Acc::Times(a), Acc::Times(b)) => a.merge(b),
            (a, b) => *a = b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_two_pass_figures_and_merge() {
        let xs = [23.18, 23.15, 23.15, 23.15, 23.1, 23.1, 23.1, 23.05];
        let mut all = Moments::default();
        xs.iter().for_each(|x| all.push(*x));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert!((all.mean - mean).abs() < 1e-12);
        assert!((all.stddev().unwrap() - var.sqrt()).abs() < 1e-12);
        assert_eq!((all.min, all.max), (23.05, 23.18));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        xs[..3].iter().for_each(|x| a.push(*x));
        xs[3..].iter().for_each(|x| b.push(*x));
        a.merge(b);
        assert_eq!(a.n, 8);
        assert!((a.mean - mean).abs() < 1e-12);
        assert!((a.stddev().unwrap() - var.sqrt()).abs() < 1e-12);
        assert_eq!((a.min, a.max), (23.05, 23.18));
        assert_eq!(Moments::default().stddev(), None);
    }

    #[test]
    fn gaps_count_in_time_order_and_across_spans() {
        let s = Times(vec![180, 0, 60, 121]).summarise(60);
        assert_eq!((s.n, s.gaps), (4, 2), "60->121 and 121->180");
        let mut total = Times(vec![0, 60]).summarise(60);
        total.append(Times(vec![130, 190]).summarise(60));
        assert_eq!(total.gaps, 1, "the jump 60 -> 130 between spans counts");
    }
}
