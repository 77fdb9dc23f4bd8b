//! The JSONL format: one JSON object per row, keyed by column name.
//!
//! Money is written as a JSON number in exact decimal text (from
//! `format_micros`, never through `f64`), times as RFC 3339 strings,
//! non-finite floats and `Null` as `null`.

use super::output::{io_error, ByteSink, RowWriter};
use super::{Column, SinkError, Value};
use crate::money::format_micros;
use crate::timestamp::format_rfc3339;

/// Writes each row as one line.
pub(crate) struct JsonlWriter {
    bytes: ByteSink,
    target: String,
    /// Each column's `"name":` prefix, escaped once.
    keys: Vec<String>,
    line: String,
}

impl JsonlWriter {
    pub(crate) fn new(bytes: ByteSink, target: String) -> Self {
        JsonlWriter {
            bytes,
            target,
            keys: Vec::new(),
            line: String::new(),
        }
    }
}

impl RowWriter for JsonlWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        self.keys = columns
            .iter()
            .map(|column| {
                let mut key = json_string(column.name);
                key.push(':');
                key
            })
            .collect();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        self.line.clear();
        self.line.push('{');
        for (index, (key, value)) in self.keys.iter().zip(row).enumerate() {
            if index > 0 {
                self.line.push(',');
            }
            self.line.push_str(key);
            push_value(&mut self.line, value);
        }
        self.line.push_str("}\n");
        self.bytes
            .write_all(self.line.as_bytes())
            .map_err(io_error(&self.target))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.bytes.flush().map_err(io_error(&self.target))
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        self.flush()
    }
}

fn push_value(line: &mut String, value: &Value) {
    match value {
        Value::Null => line.push_str("null"),
        Value::Bool(value) => line.push_str(if *value { "true" } else { "false" }),
        Value::I64(value) => line.push_str(&value.to_string()),
        Value::F64(value) => match serde_json::Number::from_f64(*value) {
            Some(number) => line.push_str(&number.to_string()),
            None => line.push_str("null"),
        },
        Value::Text(text) => line.push_str(&json_string(text)),
        Value::Time(ms) => line.push_str(&json_string(&format_rfc3339(*ms))),
        Value::Money(micros) => line.push_str(&format_micros(*micros)),
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    // Serialising a `str` cannot fail; the fallback only keeps this total.
    serde_json::to_string(text).unwrap_or_else(|_| String::from("null"))
}
