//! Order statistics over repeated measurements, and number formatting for
//! the report tables.

/// Samples of one quantity (seconds, bytes, ...), kept unsorted as taken.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// The samples in the order they were taken.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (mean of the two middle values for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }

    /// Nearest-rank percentile, `p` in 0..=100; NaN when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

/// Seconds as milliseconds with precision suited to the size.
pub fn ms(secs: f64) -> String {
    if secs.is_nan() {
        return "n/a".into();
    }
    let m = secs * 1e3;
    if m < 10.0 {
        format!("{m:.2}")
    } else if m < 100.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.0}")
    }
}

/// A ratio as `1.23x`, or `n/a`.
pub fn ratio(num: f64, den: f64) -> String {
    if num.is_nan() || den.is_nan() || den == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}x", num / den)
    }
}

/// Whether `value <= goal`, as a word for the report.
pub fn verdict(value: f64, goal: f64) -> &'static str {
    if value.is_nan() {
        "not measured"
    } else if value <= goal {
        "met"
    } else {
        "MISSED"
    }
}

/// KiB as MiB with two decimals.
pub fn mib(kib: f64) -> String {
    if kib.is_nan() {
        "n/a".into()
    } else {
        format!("{:.2}", kib / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Samples {
        let mut x = Samples::default();
        for &a in v {
            x.push(a);
        }
        x
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(s(&[3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(s(&[4.0, 1.0, 3.0, 2.0]).median(), 2.5);
        assert!(s(&[]).median().is_nan());
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v = s(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(v.percentile(50.0), 50.0);
        assert_eq!(v.percentile(99.0), 99.0);
        assert_eq!(v.percentile(100.0), 100.0);
        assert_eq!(v.percentile(0.0), 1.0);
        assert_eq!(s(&[7.0]).percentile(99.0), 7.0);
    }

    #[test]
    fn min_max() {
        let v = s(&[2.0, -1.0, 5.0]);
        assert_eq!(v.min(), -1.0);
        assert_eq!(v.max(), 5.0);
    }

    #[test]
    fn formatting() {
        assert_eq!(ratio(3.0, 2.0), "1.50x");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(ms(0.0123), "12.3");
        assert_eq!(ms(1.5), "1500");
        assert_eq!(verdict(1.2, 1.3), "met");
        assert_eq!(verdict(1.4, 1.3), "MISSED");
    }
}
