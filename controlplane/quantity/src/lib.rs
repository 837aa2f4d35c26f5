//! Kubernetes resource quantities as numbers: `250m` is 0.25, `64Mi` is
//! 67108864, `1G` is 10^9. No dependencies, so the host and Wasm guests (the
//! scheduler SDK, the admission policies) share it. [`parse`] gives a float;
//! [`value`] and [`milli_value`] give the exact integers Kubernetes accounts
//! resources in; [`format`] writes one back. With the `json` feature,
//! [`usage`] says what a pod asks, as ResourceQuotas count it.

#[cfg(feature = "json")]
pub mod usage;

/// A quantity of `resource` as Kubernetes prints a sum of them: cpu in
/// cores or millicores, other amounts with the largest binary suffix that
/// divides them exactly, counts as they are.
pub fn format(resource: &str, value: f64) -> String {
    if resource == "cpu" || resource.ends_with(".cpu") {
        let milli = (value * 1000.0).round() as i64;
        return if milli % 1000 == 0 {
            (milli / 1000).to_string()
        } else {
            format!("{milli}m")
        };
    }
    let whole = value.round() as i64;
    let suffixes = [
        ("Ti", 1i64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, size) in suffixes {
        if whole != 0 && whole % size == 0 {
            return format!("{}{suffix}", whole / size);
        }
    }
    whole.to_string()
}

/// The value of a quantity in its base unit (cores, bytes), or `None` when it
/// is not a non-negative quantity.
pub fn parse(text: &str) -> Option<f64> {
    let parts = Parts::of(text)?;
    let number: f64 = parts.number.parse().ok()?;
    let power = 10f64.powi(parts.exponent.unsigned_abs().try_into().ok()?);
    let scaled = if parts.exponent < 0 {
        number / power
    } else {
        number * power
    };
    let value = scaled * 2f64.powi(parts.power_of_two.try_into().ok()?);
    value.is_finite().then_some(value)
}

/// The value of a quantity as a whole number, rounded up, as Kubernetes'
/// `Quantity.Value` gives it (bytes of memory, pods, devices); `None` when it
/// is not a non-negative quantity. Exact, saturating at `i64::MAX`.
pub fn value(text: &str) -> Option<i64> {
    scaled(text, 0)
}

/// The value of a quantity in thousandths, rounded up, as Kubernetes'
/// `Quantity.MilliValue` gives it (millicores of cpu): `250m` is 250, `1.5`
/// is 1500; `None` when it is not a non-negative quantity. Exact, saturating
/// at `i64::MAX`.
pub fn milli_value(text: &str) -> Option<i64> {
    scaled(text, 3)
}

/// A quantity taken apart: `<number><suffix>`, the number
/// `<digits>[.<digits>]` (a leading `+` allowed), the suffix binary (`Ki` …
/// `Ei`), decimal (`n` … `E`) or an exponent (`e3`, `E-2`).
struct Parts<'a> {
    /// The number, `.` included.
    number: &'a str,
    /// Its digits before the point.
    whole: &'a str,
    /// Its digits after the point.
    fraction: &'a str,
    /// The power of ten the suffix multiplies it by.
    exponent: i32,
    /// The power of two the suffix multiplies it by.
    power_of_two: u32,
}

impl Parts<'_> {
    fn of(text: &str) -> Option<Parts<'_>> {
        let text = text.strip_prefix('+').unwrap_or(text);
        let end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let (exponent, power_of_two) = match suffix {
            "" => (0, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            other => (other.strip_prefix(['e', 'E'])?.parse().ok()?, 0),
        };
        Some(Parts {
            number,
            whole,
            fraction,
            exponent,
            power_of_two,
        })
    }
}

/// The most significant digits kept of a number: past them, digits only
/// make the value larger than any `i64` or round it up.
const DIGITS: u128 = 10u128.pow(36);

/// The quantity times 10^`scale`, rounded up, in integer arithmetic.
fn scaled(text: &str, scale: i32) -> Option<i64> {
    let parts = Parts::of(text)?;
    // The number as digits times a power of ten; digits past what is kept
    // only say whether to round up.
    let mut digits: u128 = 0;
    let mut exponent = parts.exponent.checked_add(scale)?;
    let mut dropped = false;
    let (whole, fraction) = (parts.whole, parts.fraction);
    for (i, digit) in whole.bytes().chain(fraction.bytes()).enumerate() {
        let fractional = i >= whole.len();
        if digits < DIGITS {
            digits = digits * 10 + u128::from(digit - b'0');
            exponent = exponent.saturating_sub(i32::from(fractional));
        } else {
            exponent = exponent.saturating_add(i32::from(!fractional));
            dropped |= digit != b'0';
        }
    }
    let Some(digits) = digits.checked_mul(1 << parts.power_of_two) else {
        return Some(i64::MAX);
    };
    let exact = if exponent >= 0 {
        10u128
            .checked_pow(exponent.unsigned_abs())
            .and_then(|power| digits.checked_mul(power))
    } else {
        let divisor = 10u128.checked_pow(exponent.unsigned_abs());
        Some(divisor.map_or(u128::from(digits > 0 || dropped), |d| {
            digits / d + u128::from(digits % d > 0 || dropped)
        }))
    };
    Some(exact.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_print_as_kubernetes_prints_them() {
        assert_eq!(format("requests.cpu", 1.5), "1500m");
        assert_eq!(format("cpu", 2.0), "2");
        assert_eq!(format("limits.memory", 1_610_612_736.0), "1536Mi");
        assert_eq!(format("pods", 3.0), "3");
        assert_eq!(format("requests.memory", 0.0), "0");
    }

    #[test]
    fn integers_are_exact_and_round_up() {
        assert_eq!(milli_value("9m"), Some(9));
        assert_eq!(milli_value("2.007"), Some(2007));
        assert_eq!(milli_value("0.1"), Some(100));
        assert_eq!(milli_value("1"), Some(1000));
        assert_eq!(
            milli_value("100u"),
            Some(1),
            "a part of a thousandth is one"
        );
        assert_eq!(milli_value("1.0005"), Some(1001));
        assert_eq!(milli_value("+250m"), Some(250));
        assert_eq!(milli_value(".5"), Some(500));
        assert_eq!(value("64Mi"), Some(64 << 20));
        assert_eq!(value("1.5Gi"), Some(3 << 29));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("1E3"), Some(1000));
        assert_eq!(value("12e-1"), Some(2));
        assert_eq!(value("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(value("500m"), Some(1));
        assert_eq!(value("0"), Some(0));
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("16Ei"), Some(i64::MAX), "saturates");
        assert_eq!(value("1e400"), Some(i64::MAX));
        assert_eq!(value("1e-400"), Some(1));
        assert_eq!(
            value("0.000000000000000000000000000000000000000001"),
            Some(1)
        );
        assert_eq!(
            value("1000000000000000000000000000000000000001e-40"),
            Some(1),
            "digits past those kept still round up"
        );
        for bad in ["", ".", "lots", "-1", "1.2.3", "1Qi", "1e", "m"] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("250m"), Some(0.25));
        assert_eq!(parse("4096"), Some(4096.0));
        assert_eq!(parse("1.5e3"), Some(1500.0));
        assert_eq!(parse("100u"), Some(0.0001));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("1e400"), None);
    }
}
