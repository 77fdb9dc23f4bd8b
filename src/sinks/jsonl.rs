//! The JSONL format: one JSON object per row, keyed by column name.
//!
//! Money is written as a JSON number in exact decimal text (from
//! `format_micros`, never through `f64`), times as RFC 3339 strings,
//! non-finite floats and `Null` as `null`.

use std::io::Write as _;

use super::output::{io_error, ByteSink, RowWriter};
use super::text::{push_i64, push_json_string, push_micros, push_rfc3339};
use super::{Column, SinkError, Value};

/// Writes each row as one line.
pub(crate) struct JsonlWriter {
    bytes: ByteSink,
    target: String,
    /// Each column's `"name":` prefix, escaped once.
    keys: Vec<Vec<u8>>,
    /// Reused for every row, so that a row costs no allocation.
    line: Vec<u8>,
}

impl JsonlWriter {
    pub(crate) fn new(bytes: ByteSink, target: String) -> Self {
        JsonlWriter {
            bytes,
            target,
            keys: Vec::new(),
            line: Vec::new(),
        }
    }
}

impl RowWriter for JsonlWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        self.keys = json_keys(columns);
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        self.line.clear();
        push_object(&mut self.line, &self.keys, row);
        self.line.push(b'\n');
        self.bytes
            .write_all(&self.line)
            .map_err(io_error(&self.target))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.bytes.flush().map_err(io_error(&self.target))
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        self.flush()
    }
}

/// Appends `row` as one JSON object whose keys are the escaped `"name":`
/// prefixes in `keys` (from [`json_keys`]), in order: the JSONL format's
/// lines, and the Kafka sink's message keys and values.
pub(crate) fn push_object(line: &mut Vec<u8>, keys: &[Vec<u8>], row: &[Value]) {
    line.push(b'{');
    for (index, (key, value)) in keys.iter().zip(row).enumerate() {
        if index > 0 {
            line.push(b',');
        }
        line.extend_from_slice(key);
        push_value(line, value);
    }
    line.push(b'}');
}

/// Each column's escaped `"name":` prefix, for [`push_object`].
pub(crate) fn json_keys(columns: &[Column]) -> Vec<Vec<u8>> {
    columns.iter().map(|column| json_key(column.name)).collect()
}

/// `"name":`, escaped.
fn json_key(name: &str) -> Vec<u8> {
    let mut key = Vec::new();
    push_json_string(&mut key, name);
    key.push(b':');
    key
}

fn push_value(line: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => line.extend_from_slice(b"null"),
        Value::Bool(value) => line.extend_from_slice(if *value { b"true" } else { b"false" }),
        Value::I64(value) => push_i64(line, *value),
        Value::F64(value) => match serde_json::Number::from_f64(*value) {
            // Writing to a `Vec` cannot fail.
            Some(number) => {
                let _ = write!(line, "{number}");
            }
            None => line.extend_from_slice(b"null"),
        },
        Value::Text(text) => push_json_string(line, text),
        Value::Time(ms) => {
            // RFC 3339 text holds nothing JSON escapes.
            line.push(b'"');
            push_rfc3339(line, *ms);
            line.push(b'"');
        }
        Value::Money(micros) => push_micros(line, *micros),
    }
}
