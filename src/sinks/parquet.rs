//! The Parquet format: rows gathered into Arrow record batches of up to
//! [`BATCH_ROWS`] rows and written with an `ArrowWriter` (snappy).
//!
//! Column types map as: Bool → Boolean, I64 → Int64, F64 → Float64,
//! Text → Utf8, Time → Timestamp(Millisecond, "UTC"),
//! Money → Decimal128(18, 6) (micros are the unscaled value). Every field is
//! nullable. The file is only readable once finished (its footer is written
//! last), so [`RowWriter::flush`] writes nothing.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::output::{io_error, ByteSink, RowWriter};
use super::{Column, ColumnType, SinkError, Value};

/// Rows per record batch.
pub(crate) const BATCH_ROWS: usize = 64 * 1024;

/// Precision and scale of money columns.
const MONEY_PRECISION: u8 = 18;
const MONEY_SCALE: i8 = 6;

/// Buffers rows and writes them a batch at a time.
pub(crate) struct ParquetWriter {
    /// The byte stream until `begin` hands it to the Arrow writer.
    bytes: Option<ByteSink>,
    target: String,
    columns: Vec<Column>,
    schema: Option<SchemaRef>,
    writer: Option<ArrowWriter<ByteSink>>,
    pending: Vec<Vec<Value>>,
}

impl ParquetWriter {
    pub(crate) fn new(bytes: ByteSink, target: String) -> Self {
        ParquetWriter {
            bytes: Some(bytes),
            target,
            columns: Vec::new(),
            schema: None,
            writer: None,
            pending: Vec::new(),
        }
    }

    fn parquet_error(&self, source: ParquetError) -> SinkError {
        SinkError::Parquet {
            target: self.target.clone(),
            source: Arc::new(source),
        }
    }

    fn arrow_error(&self, source: ArrowError) -> SinkError {
        SinkError::Arrow {
            target: self.target.clone(),
            source: Arc::new(source),
        }
    }

    /// Writes the pending rows as one record batch.
    fn write_pending(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (Some(schema), Some(_)) = (self.schema.clone(), self.writer.as_ref()) else {
            return Ok(());
        };
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| array(column.ty, &self.pending, index))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.arrow_error(source))?;
        let batch =
            RecordBatch::try_new(schema, arrays).map_err(|source| self.arrow_error(source))?;
        self.pending.clear();
        match self.writer.as_mut().map(|writer| writer.write(&batch)) {
            Some(Err(source)) => Err(self.parquet_error(source)),
            _ => Ok(()),
        }
    }
}

impl RowWriter for ParquetWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        self.columns = columns.to_vec();
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|column| Field::new(column.name, data_type(column.ty), true))
                .collect::<Vec<_>>(),
        ));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let Some(bytes) = self.bytes.take() else {
            return Ok(());
        };
        let writer = ArrowWriter::try_new(bytes, Arc::clone(&schema), Some(props))
            .map_err(|source| self.parquet_error(source))?;
        self.schema = Some(schema);
        self.writer = Some(writer);
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        self.pending.push(row.to_vec());
        if self.pending.len() >= BATCH_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        self.write_pending()?;
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        writer
            .finish()
            .map_err(|source| self.parquet_error(source))?;
        writer.inner_mut().flush().map_err(io_error(&self.target))
    }
}

/// The Arrow type of a column type.
pub(crate) fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Bool => DataType::Boolean,
        ColumnType::I64 => DataType::Int64,
        ColumnType::F64 => DataType::Float64,
        ColumnType::Text => DataType::Utf8,
        ColumnType::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ColumnType::Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
    }
}

/// Column `index` of `rows` as an array of type `ty`. Values that do not fit
/// the type (the caller has checked they all do) become nulls.
fn array(ty: ColumnType, rows: &[Vec<Value>], index: usize) -> Result<ArrayRef, ArrowError> {
    let cells = rows
        .iter()
        .map(|row| row.get(index).unwrap_or(&Value::Null));
    Ok(match ty {
        ColumnType::Bool => Arc::new(
            cells
                .map(|value| match value {
                    Value::Bool(value) => Some(*value),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        ColumnType::I64 => Arc::new(
            cells
                .map(|value| match value {
                    Value::I64(value) => Some(*value),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        ColumnType::F64 => Arc::new(
            cells
                .map(|value| match value {
                    Value::F64(value) => Some(*value),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        ColumnType::Text => Arc::new(
            cells
                .map(|value| match value {
                    Value::Text(value) => Some(value.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        ColumnType::Time => Arc::new(
            cells
                .map(|value| match value {
                    Value::Time(ms) => Some(*ms),
                    _ => None,
                })
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        ColumnType::Money => {
            let money = cells
                .map(|value| match value {
                    Value::Money(micros) => Some(i128::from(*micros)),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?;
            money.validate_decimal_precision(MONEY_PRECISION)?;
            Arc::new(money)
        }
    })
}
