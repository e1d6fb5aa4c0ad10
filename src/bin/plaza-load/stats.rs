//! Figures from samples: latency histograms (HdrHistogram, microseconds) and their quantiles,
//! percentages, and error kinds counted under a cap so a flood of distinct messages stays
//! readable.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Histogram range in microseconds: 1 µs .. 2 minutes, 3 significant figures.
const HIST_MAX_US: u64 = 120_000_000;
/// Distinct error kinds remembered per phase (the rest are counted as "other").
const MAX_ERROR_KINDS: usize = 16;

/// Error kinds and their counts, at most [`MAX_ERROR_KINDS`] distinct ones (the rest are
/// counted together).
#[derive(Default)]
pub struct Kinds(BTreeMap<String, u64>);

impl Kinds {
    pub fn add(&mut self, kind: String, n: u64) {
        let mut kind: String = kind.chars().take(160).collect();
        if !self.0.contains_key(&kind) && self.0.len() >= MAX_ERROR_KINDS {
            kind = "other errors".into();
        }
        *self.0.entry(kind).or_insert(0) += n;
    }

    pub fn merge(&mut self, other: Kinds) {
        for (kind, n) in other.0 {
            self.add(kind, n);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Prints `label` and the kinds, one per line, or `none`.
pub fn print_kinds(label: &str, kinds: &Kinds, none: &str) {
    if kinds.is_empty() {
        println!("{label}{none}");
        return;
    }
    let pad = " ".repeat(label.chars().count());
    for (i, (kind, n)) in kinds.iter().enumerate() {
        println!("{}{n} x {kind}", if i == 0 { label } else { &pad });
    }
}

pub fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| format!("histogram: {e}"))
}

pub fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), String> {
    into.add(from).map_err(|e| format!("merging histograms: {e:?}"))
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `p50 1.23  p99 4.56  max 7.89 ms` for the given quantiles.
pub fn quantiles_ms(hist: &Histogram<u64>, quantiles: &[f64]) -> String {
    if hist.is_empty() {
        return "no samples".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out: Vec<String> =
        quantiles.iter().map(|q| format!("p{} {:.2}", (q * 100.0).round(), ms(hist.value_at_quantile(*q)))).collect();
    out.push(format!("max {:.2} ms", ms(hist.max())));
    out.join("  ")
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_error_kinds() {
        let mut kinds = Kinds::default();
        for i in 0..MAX_ERROR_KINDS + 5 {
            kinds.add(format!("kind {i}"), 1);
        }
        assert_eq!(kinds.iter().count(), MAX_ERROR_KINDS + 1);
        assert_eq!(kinds.iter().find(|(k, _)| *k == "other errors").map(|(_, n)| *n), Some(5));
    }
}
