//! JSON syntax: one object per line, keys as in `docs/schema.md`.
//!
//! Values are borrowed as raw JSON text and interpreted here, so that
//! numbers keep their exact decimal text (money) and numeric ids are
//! accepted as ids. Unknown keys are ignored for forward compatibility.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue as JsonRaw;

use super::{EventValidator, Field, RawFields, RawValue, Rejection};
use crate::dead_letter::Reason;
use crate::event::Event;
use crate::schema::MAX_RECORD_BYTES;

#[derive(Deserialize)]
struct JsonRecord<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    kind: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    ts: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    user_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    device_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    campaign_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    ad_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    publisher_id: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    ip: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    user_agent: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    country: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    device_type: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    cost: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    revenue: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    conversion_type: Option<&'a JsonRaw>,
    #[serde(borrow, default)]
    order_id: Option<&'a JsonRaw>,
}

/// Extracts the raw fields of one JSON line. The caller has already checked
/// UTF-8 and length.
pub fn parse_json(line: &[u8]) -> Result<RawFields<'_>, Rejection> {
    // serde would also accept an array as a struct; the schema says object.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Rejection::message(
            Reason::MalformedJson,
            "not a JSON object",
        ));
    }
    let record: JsonRecord<'_> = serde_json::from_slice(line)
        .map_err(|error| Rejection::message(Reason::MalformedJson, error.to_string()))?;
    let mut raw = RawFields::default();
    let pairs = [
        (Field::EventId, record.event_id),
        (Field::Kind, record.kind),
        (Field::Ts, record.ts),
        (Field::UserId, record.user_id),
        (Field::DeviceId, record.device_id),
        (Field::CampaignId, record.campaign_id),
        (Field::AdId, record.ad_id),
        (Field::PublisherId, record.publisher_id),
        (Field::Ip, record.ip),
        (Field::UserAgent, record.user_agent),
        (Field::Country, record.country),
        (Field::DeviceType, record.device_type),
        (Field::Cost, record.cost),
        (Field::Revenue, record.revenue),
        (Field::ConversionType, record.conversion_type),
        (Field::OrderId, record.order_id),
    ];
    for (field, value) in pairs {
        if let Some(value) = value {
            if let Some(value) = interpret(field, value.get())? {
                raw.set(field, value);
            }
        }
    }
    Ok(raw)
}

/// Validates one JSON record given as text (a line of a file); a blank
/// line is malformed.
pub fn parse_json_text(text: &str, validator: &mut EventValidator) -> Result<Event, Rejection> {
    if text.trim().is_empty() {
        return Err(Rejection::message(Reason::MalformedJson, "empty line"));
    }
    parse_json(text.as_bytes()).and_then(|raw| validator.validate(&raw))
}

/// Validates one JSON record given as bytes (a Kafka message payload): a
/// record over [`MAX_RECORD_BYTES`] is `record_too_large` and bytes that
/// are not UTF-8 are `invalid_utf8`, as for lines of a file.
pub fn parse_json_bytes(bytes: &[u8], validator: &mut EventValidator) -> Result<Event, Rejection> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Rejection::message(
            Reason::RecordTooLarge,
            format!("{} bytes", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|error| Rejection::message(Reason::InvalidUtf8, error.to_string()))?;
    parse_json_text(text, validator)
}

fn interpret(field: Field, text: &str) -> Result<Option<RawValue<'_>>, Rejection> {
    Ok(match text.as_bytes().first() {
        Some(b'"') => {
            let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
            if inner.contains('\\') {
                let unescaped: String = serde_json::from_str(text)
                    .map_err(|_| Rejection::field(Reason::MalformedJson, field))?;
                Some(RawValue::Text(Cow::Owned(unescaped)))
            } else {
                Some(RawValue::Text(Cow::Borrowed(inner)))
            }
        }
        Some(b'n') => None,
        Some(b'-' | b'0'..=b'9') => Some(RawValue::Number(text)),
        Some(b'{') => Some(RawValue::WrongType("object")),
        Some(b'[') => Some(RawValue::WrongType("array")),
        _ => Some(RawValue::WrongType("boolean")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_unescapes_others() {
        let raw = parse_json(br#"{"event_id":"a\"b","kind":"click","user_id":42,"x":{}}"#)
            .unwrap_or_default();
        assert_eq!(
            raw.get(Field::EventId),
            Some(&RawValue::Text(Cow::Owned("a\"b".into())))
        );
        assert_eq!(raw.get(Field::Kind), Some(&RawValue::Text("click".into())));
        assert_eq!(raw.get(Field::UserId), Some(&RawValue::Number("42")));
    }

    #[test]
    fn rejects_non_objects_and_duplicates() {
        for line in [
            &b"[1,2]"[..],
            b"42",
            b"{\"kind\":1",
            b"{\"kind\":\"a\",\"kind\":\"b\"}",
        ] {
            let rejection = parse_json(line).err().map(|r| r.reason);
            assert_eq!(rejection, Some(Reason::MalformedJson), "{line:?}");
        }
    }
}
