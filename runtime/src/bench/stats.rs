//! Order statistics of a set of runs.

use serde::{Deserialize, Serialize};

/// min, p50, p90, p99, max of one figure (nearest-rank percentiles: each is one of the
/// measured values, never an interpolation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The summary of `values`; None when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let k = (q * v.len() as f64).ceil() as usize;
        v[k.clamp(1, v.len()) - 1]
    };
    Some(Summary {
        min: v[0],
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p90, s.p99, s.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p90, s.p99, s.max),
            (1.0, 2.0, 3.0, 3.0, 3.0)
        );
        assert_eq!(summarize(&[]), None);
    }
}
