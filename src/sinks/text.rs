//! Text forms of values appended to a reused byte buffer.
//!
//! The bytes are exactly those of `Value`'s `Display` (and of
//! `format_micros`, `format_rfc3339` and `serde_json`'s string escaping),
//! but a sink writes hundreds of thousands of rows: one `String` per cell
//! through the `fmt` machinery cost more than everything else a row needs.

use std::io::Write as _;

use super::Value;
use crate::money::Micros;
use crate::timestamp::{
    civil_from_days, format_rfc3339, Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS,
};

/// Appends the text form of `value` (see `Value`'s `Display`).
pub(crate) fn push_display(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => {}
        Value::Bool(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Value::I64(value) => push_i64(out, *value),
        Value::F64(value) => {
            // Writing to a `Vec` cannot fail.
            let _ = write!(out, "{value}");
        }
        Value::Text(text) => out.extend_from_slice(text.as_bytes()),
        Value::Time(ms) => push_rfc3339(out, *ms),
        Value::Money(micros) => push_micros(out, *micros),
    }
}

/// Appends `value` in decimal, as `Display` does.
pub(crate) fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// Appends `value` in decimal, as `Display` does.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = digit(value % 10);
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends micros as `format_micros` does: no trailing fraction zeros.
pub(crate) fn push_micros(out: &mut Vec<u8>, micros: Micros) {
    if micros < 0 {
        out.push(b'-');
    }
    let magnitude = micros.unsigned_abs();
    push_u64(out, magnitude / 1_000_000);
    let mut fraction = magnitude % 1_000_000;
    if fraction == 0 {
        return;
    }
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = digit(fraction % 10);
        fraction /= 10;
    }
    // The fraction is non-zero, so some digit is not '0'.
    let end = digits
        .iter()
        .rposition(|&byte| byte != b'0')
        .map_or(digits.len(), |at| at + 1);
    out.push(b'.');
    out.extend_from_slice(&digits[..end]);
}

/// Appends `ms` as `format_rfc3339` does (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
pub(crate) fn push_rfc3339(out: &mut Vec<u8>, ms: Millis) {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let Ok(year) = u64::try_from(year) else {
        // Years before 0 are signed and padded differently; rare enough
        // to take the formatting path.
        out.extend_from_slice(format_rfc3339(ms).as_bytes());
        return;
    };
    if year > 9999 {
        out.extend_from_slice(format_rfc3339(ms).as_bytes());
        return;
    }
    // `in_day` is in 0..DAY_MS, so every field below is non-negative.
    let field = |value: i64| value.unsigned_abs();
    let mut text = [0u8; 24];
    fixed(&mut text[0..4], year);
    text[4] = b'-';
    fixed(&mut text[5..7], u64::from(month));
    text[7] = b'-';
    fixed(&mut text[8..10], u64::from(day));
    text[10] = b'T';
    fixed(&mut text[11..13], field(in_day / HOUR_MS));
    text[13] = b':';
    fixed(&mut text[14..16], field(in_day % HOUR_MS / MINUTE_MS));
    text[16] = b':';
    fixed(&mut text[17..19], field(in_day % MINUTE_MS / SECOND_MS));
    text[19] = b'.';
    fixed(&mut text[20..23], field(in_day % SECOND_MS));
    text[23] = b'Z';
    out.extend_from_slice(&text);
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` does.
pub(crate) fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // serde_json escapes exactly the control bytes, `"` and `\`; most text
    // has none of them and is copied as is.
    let plain = text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    let start = out.len();
    if serde_json::to_writer(&mut *out, text).is_err() {
        // Serialising a `str` into a `Vec` cannot fail; this only keeps the
        // function total.
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// Fills `slot` with the low decimal digits of `value`, zero-padded.
fn fixed(slot: &mut [u8], mut value: u64) {
    for byte in slot.iter_mut().rev() {
        *byte = digit(value % 10);
        value /= 10;
    }
}

/// The ASCII digit of `value` (0..=9).
fn digit(value: u64) -> u8 {
    b'0' + u8::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::format_micros;
    use proptest::prelude::*;

    fn display(value: &Value) -> String {
        let mut out = Vec::new();
        push_display(&mut out, value);
        String::from_utf8(out).expect("ASCII or the text itself")
    }

    fn json(text: &str) -> String {
        let mut out = Vec::new();
        push_json_string(&mut out, text);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    #[test]
    fn edges_match_the_formatting_path() {
        for value in [0, 1, -1, 9, 10, 99, 100, i64::MAX, i64::MIN] {
            assert_eq!(display(&Value::I64(value)), value.to_string());
        }
        for micros in [
            0,
            1,
            -1,
            10,
            1_000_000,
            -1_000_000,
            12_500_000,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(display(&Value::Money(micros)), format_micros(micros));
        }
        let times = [
            0,
            -1,
            1_795_441_020_125,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // year 10000
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year -1
            i64::MAX,
            i64::MIN,
        ];
        for ms in times {
            assert_eq!(display(&Value::Time(ms)), format_rfc3339(ms));
        }
        for text in [
            "",
            "plain",
            "tab\t",
            "\"q\"",
            "back\\slash",
            "\u{7f}\u{1F600}",
            "\0",
        ] {
            let expected = serde_json::to_string(text).expect("a str serialises");
            assert_eq!(json(text), expected);
        }
        assert_eq!(display(&Value::Null), "");
        assert_eq!(display(&Value::Bool(false)), "false");
        assert_eq!(display(&Value::F64(0.1)), "0.1");
    }

    proptest! {
        #[test]
        fn text_forms_match_display(
            int in any::<i64>(),
            micros in any::<i64>(),
            ms in any::<i64>(),
            near in -100_000_000_000_000i64..300_000_000_000_000,
            float in any::<f64>(),
            text in ".*",
        ) {
            for value in [
                Value::I64(int),
                Value::Money(micros),
                Value::Time(ms),
                Value::Time(near),
                Value::F64(float),
                Value::Text(text.clone()),
            ] {
                prop_assert_eq!(display(&value), value.to_string());
            }
            let expected = serde_json::to_string(&text).expect("a str serialises");
            prop_assert_eq!(json(&text), expected);
        }
    }
}
