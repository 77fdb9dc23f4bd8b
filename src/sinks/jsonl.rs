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
        self.keys = columns
            .iter()
            .map(|column| {
                let mut key = Vec::new();
                push_json_string(&mut key, column.name);
                key.push(b':');
                key
            })
            .collect();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        self.line.clear();
        self.line.push(b'{');
        for (index, (key, value)) in self.keys.iter().zip(row).enumerate() {
            if index > 0 {
                self.line.push(b',');
            }
            self.line.extend_from_slice(key);
            push_value(&mut self.line, value);
        }
        self.line.extend_from_slice(b"}\n");
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
