//! Money: decimal currency units on the wire, integer micros inside.
//!
//! Floats never touch money: `"12.345"` becomes `12_345_000` micros by
//! reading the decimal digits, so sums are exact and reproducible.

/// Currency amount in millionths of a unit.
pub type Micros = i64;

/// Micros in one currency unit.
pub const MICROS_PER_UNIT: Micros = 1_000_000;

/// Why a money field was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a decimal number.
    Malformed,
    /// Below zero.
    Negative,
    /// More than six decimal places, or too large for i64 micros.
    OutOfRange,
}

/// Parses a non-negative decimal amount such as `12.5`, `"0.000001"` or `3e2`.
///
/// ```
/// use adflow::money::{parse_micros, MoneyError};
/// assert_eq!(parse_micros("12.345"), Ok(12_345_000));
/// assert_eq!(parse_micros("1.5e1"), Ok(15_000_000));
/// assert_eq!(parse_micros("-1"), Err(MoneyError::Negative));
/// ```
pub fn parse_micros(text: &str) -> Result<Micros, MoneyError> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent: i32 = unsigned[at + 1..]
                .parse()
                .map_err(|_| MoneyError::Malformed)?;
            (&unsigned[..at], exponent)
        }
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(MoneyError::Malformed);
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(MoneyError::Malformed);
    }
    // value = digits * 10^(exponent - fraction.len()); micros shift by 6.
    let significant = whole.trim_start_matches('0').len() + fraction.len();
    let digits = whole.bytes().chain(fraction.bytes());
    let mut scale = i64::from(exponent) + 6 - i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    if significant > 40 || !(-60..=40).contains(&scale) {
        return Err(MoneyError::OutOfRange);
    }
    let mut value: i128 = 0;
    for digit in digits {
        value = value * 10 + i128::from(digit - b'0');
    }
    while scale < 0 {
        if value % 10 != 0 {
            return Err(MoneyError::OutOfRange);
        }
        value /= 10;
        scale += 1;
    }
    for _ in 0..scale {
        value = value.checked_mul(10).ok_or(MoneyError::OutOfRange)?;
    }
    if negative && value != 0 {
        return Err(MoneyError::Negative);
    }
    Micros::try_from(value).map_err(|_| MoneyError::OutOfRange)
}

/// Formats micros as a decimal amount with no trailing zeros, e.g. `12.5`.
///
/// ```
/// use adflow::money::format_micros;
/// assert_eq!(format_micros(12_500_000), "12.5");
/// assert_eq!(format_micros(-1), "-0.000001");
/// ```
pub fn format_micros(micros: Micros) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let magnitude = micros.unsigned_abs();
    let whole = magnitude / 1_000_000;
    let fraction = magnitude % 1_000_000;
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{fraction:06}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edge_cases() {
        assert_eq!(parse_micros("0"), Ok(0));
        assert_eq!(parse_micros("-0"), Ok(0));
        assert_eq!(parse_micros(".5"), Ok(500_000));
        assert_eq!(parse_micros("5."), Ok(5_000_000));
        assert_eq!(parse_micros("0.0000001"), Err(MoneyError::OutOfRange));
        assert_eq!(parse_micros("0.0000010"), Ok(1));
        assert_eq!(parse_micros("1e400"), Err(MoneyError::OutOfRange));
        assert_eq!(
            parse_micros("99999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(parse_micros("abc"), Err(MoneyError::Malformed));
        assert_eq!(parse_micros("."), Err(MoneyError::Malformed));
        assert_eq!(parse_micros(""), Err(MoneyError::Malformed));
        assert_eq!(parse_micros("1.5e-6"), Err(MoneyError::OutOfRange));
        assert_eq!(parse_micros("1e-6"), Ok(1));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(micros in 0i64..i64::MAX) {
            prop_assert_eq!(parse_micros(&format_micros(micros)), Ok(micros));
        }

        #[test]
        fn parse_never_panics(text in "[-+0-9.eE]{0,30}") {
            let _ = parse_micros(&text);
        }
    }
}
