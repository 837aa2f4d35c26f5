//! Kubernetes resource quantities as numbers: `250m` is 0.25, `64Mi` is
//! 67108864, `1G` is 10^9. No dependencies, so the host and Wasm guests (the
//! scheduler SDK) share it.

/// The binary and decimal suffixes, longest first where they share a letter.
const SUFFIXES: [(&str, f64); 13] = [
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("m", 1e-3),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// The value of a quantity in its base unit (cores, bytes), or `None` when it
/// is not a non-negative quantity.
pub fn parse(text: &str) -> Option<f64> {
    let (number, unit) = SUFFIXES
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((text, 1.0));
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("250m"), Some(0.25));
        assert_eq!(parse("4096"), Some(4096.0));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("-1"), None);
    }
}
