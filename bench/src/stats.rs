//! Summaries of measured samples: nearest-rank percentiles, as `wrk` and most latency reports use.

/// The `p`-th percentile (0–100) of `samples` by the nearest-rank method; `None` when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(median(&samples), Some(10.0));
        assert_eq!(percentile(&samples, 90.0), Some(18.0));
        assert_eq!(
            percentile(&samples, 99.0),
            Some(20.0),
            "p99 of 20 is the maximum"
        );
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(median(&[3.5]), Some(3.5));
        assert_eq!(median(&[]), None);
    }
}
