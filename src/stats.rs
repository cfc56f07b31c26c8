//! Small statistics shared by the benchmark and the guide.

/// The median (upper median for even counts) of `values`, sorting them in place; 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The arithmetic mean of `values`; 0 when empty.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_takes_the_middle() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(super::median(&mut []), 0.0);
    }

    #[test]
    fn mean_averages_and_is_zero_when_empty() {
        assert_eq!(super::mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(super::mean(&[]), 0.0);
    }
}
