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
    ArrayRef, BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
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
    schema: Option<SchemaRef>,
    writer: Option<ArrowWriter<ByteSink>>,
    /// The pending rows, appended column by column as they arrive rather
    /// than kept as rows: no copy of each row, and no second pass.
    builders: Vec<ColumnBuilder>,
    pending: usize,
}

impl ParquetWriter {
    pub(crate) fn new(bytes: ByteSink, target: String) -> Self {
        ParquetWriter {
            bytes: Some(bytes),
            target,
            schema: None,
            writer: None,
            builders: Vec::new(),
            pending: 0,
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
        if self.pending == 0 {
            return Ok(());
        }
        let (Some(schema), Some(_)) = (self.schema.clone(), self.writer.as_ref()) else {
            return Ok(());
        };
        self.pending = 0;
        let arrays = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.arrow_error(source))?;
        let batch =
            RecordBatch::try_new(schema, arrays).map_err(|source| self.arrow_error(source))?;
        match self.writer.as_mut().map(|writer| writer.write(&batch)) {
            Some(Err(source)) => Err(self.parquet_error(source)),
            _ => Ok(()),
        }
    }
}

impl RowWriter for ParquetWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        self.builders = columns
            .iter()
            .map(|column| ColumnBuilder::new(column.ty))
            .collect();
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
        // The caller has checked the row's arity; a missing value is null.
        for (index, builder) in self.builders.iter_mut().enumerate() {
            builder.append(row.get(index).unwrap_or(&Value::Null));
        }
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
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

/// One column of the pending rows, in its Arrow builder.
enum ColumnBuilder {
    Bool(BooleanBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Time(TimestampMillisecondBuilder),
    Money(Decimal128Builder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> ColumnBuilder {
        match ty {
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            ColumnType::I64 => ColumnBuilder::I64(Int64Builder::new()),
            ColumnType::F64 => ColumnBuilder::F64(Float64Builder::new()),
            ColumnType::Text => ColumnBuilder::Text(StringBuilder::new()),
            ColumnType::Time => ColumnBuilder::Time(TimestampMillisecondBuilder::new()),
            ColumnType::Money => ColumnBuilder::Money(Decimal128Builder::new()),
        }
    }

    /// Appends `value`; a value that does not fit the column's type (the
    /// caller has checked they all do) becomes a null.
    fn append(&mut self, value: &Value) {
        match (self, value) {
            (ColumnBuilder::Bool(builder), Value::Bool(value)) => builder.append_value(*value),
            (ColumnBuilder::I64(builder), Value::I64(value)) => builder.append_value(*value),
            (ColumnBuilder::F64(builder), Value::F64(value)) => builder.append_value(*value),
            (ColumnBuilder::Text(builder), Value::Text(value)) => builder.append_value(value),
            (ColumnBuilder::Time(builder), Value::Time(ms)) => builder.append_value(*ms),
            (ColumnBuilder::Money(builder), Value::Money(micros)) => {
                builder.append_value(i128::from(*micros))
            }
            (ColumnBuilder::Bool(builder), _) => builder.append_null(),
            (ColumnBuilder::I64(builder), _) => builder.append_null(),
            (ColumnBuilder::F64(builder), _) => builder.append_null(),
            (ColumnBuilder::Text(builder), _) => builder.append_null(),
            (ColumnBuilder::Time(builder), _) => builder.append_null(),
            (ColumnBuilder::Money(builder), _) => builder.append_null(),
        }
    }

    /// The appended values as an array of the column's Arrow type; the
    /// builder is left empty for the next batch.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            ColumnBuilder::Bool(builder) => Arc::new(builder.finish()),
            ColumnBuilder::I64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::F64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Text(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Time(builder) => Arc::new(builder.finish().with_timezone("UTC")),
            ColumnBuilder::Money(builder) => {
                let money = builder
                    .finish()
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?;
                money.validate_decimal_precision(MONEY_PRECISION)?;
                Arc::new(money)
            }
        })
    }
}
