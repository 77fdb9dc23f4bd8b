//! The CSV format: a header of column names, then one line per row; cells
//! are the values' text forms (`Null` empty, times RFC 3339, money exact).

use std::sync::Arc;

use super::output::{io_error, ByteSink, RowWriter};
use super::text::push_display;
use super::{Column, SinkError, Value};

/// Writes rows through the `csv` crate (quoting as needed).
pub(crate) struct CsvWriter {
    writer: csv::Writer<ByteSink>,
    target: String,
    /// Reused for every row, so that a row costs no allocation.
    record: csv::ByteRecord,
    cell: Vec<u8>,
}

impl CsvWriter {
    pub(crate) fn new(bytes: ByteSink, target: String) -> Self {
        CsvWriter {
            writer: csv::Writer::from_writer(bytes),
            target,
            record: csv::ByteRecord::new(),
            cell: Vec::new(),
        }
    }

    fn error(&self, source: csv::Error) -> SinkError {
        SinkError::Csv {
            target: self.target.clone(),
            source: Arc::new(source),
        }
    }
}

impl RowWriter for CsvWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        let header = columns.iter().map(|column| column.name);
        self.writer
            .write_record(header)
            .map_err(|source| self.error(source))
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        self.record.clear();
        for value in row {
            self.cell.clear();
            push_display(&mut self.cell, value);
            self.record.push_field(&self.cell);
        }
        // Quotes exactly as `write_record` does, with a faster path when the
        // row fits the writer's buffer.
        self.writer
            .write_byte_record(&self.record)
            .map_err(|source| self.error(source))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush().map_err(io_error(&self.target))
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        self.flush()
    }
}
