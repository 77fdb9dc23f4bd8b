//! Arrow syntax: typed columns of a Parquet row group.
//!
//! Columns are matched to fields by name and normalised once per batch
//! (any integer or string type to text, any timestamp unit to epoch
//! milliseconds, decimals kept exact), then each row is read without
//! copying its strings. A column whose type cannot be read as its field
//! makes each row a `schema_mismatch` dead letter, never a panic.

use std::borrow::Cow;

use arrow::array::{Array, AsArray, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::{Field, RawFields, RawValue, Rejection};
use crate::dead_letter::{Reason, EXCERPT_BYTES};
use crate::money::Micros;
use crate::schema::MAX_RECORD_BYTES;

#[derive(Clone, Debug)]
enum Column {
    Absent,
    Text(StringArray),
    Millis(Int64Array),
    Decimal { values: Decimal128Array, scale: i8 },
    Mismatch(String),
}

/// The columns of one record batch, normalised for row-by-row reading.
#[derive(Clone, Debug)]
pub struct BatchFields {
    columns: Vec<Column>,
    rows: usize,
}

impl BatchFields {
    /// Matches the batch's columns to fields and normalises their types.
    pub fn prepare(batch: &RecordBatch) -> BatchFields {
        let columns = Field::ALL
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                None => Column::Absent,
                Some(array) => prepare_column(*field, array.as_ref()),
            })
            .collect();
        BatchFields {
            columns,
            rows: batch.num_rows(),
        }
    }

    /// Rows in the batch.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The raw fields of one row.
    pub fn row(&self, row: usize) -> Result<RawFields<'_>, Rejection> {
        let mut raw = RawFields::default();
        let mut text_bytes = 0;
        for (field, column) in Field::ALL.iter().zip(&self.columns) {
            let value = match column {
                Column::Absent => None,
                Column::Mismatch(message) => {
                    return Err(Rejection::message(Reason::SchemaMismatch, message.clone()))
                }
                Column::Text(values) => (!values.is_null(row)).then(|| {
                    let text = values.value(row);
                    text_bytes += text.len();
                    RawValue::Text(Cow::Borrowed(text))
                }),
                Column::Millis(values) => {
                    (!values.is_null(row)).then(|| RawValue::Millis(values.value(row)))
                }
                Column::Decimal { values, scale } => match values.is_null(row) {
                    true => None,
                    false => Some(RawValue::Micros(
                        decimal_to_micros(values.value(row), *scale)
                            .ok_or_else(|| Rejection::field(Reason::BadMoney, *field))?,
                    )),
                },
            };
            if let Some(value) = value {
                raw.set(*field, value);
            }
        }
        if text_bytes > MAX_RECORD_BYTES {
            return Err(Rejection::message(
                Reason::RecordTooLarge,
                format!("{text_bytes} bytes of text"),
            ));
        }
        Ok(raw)
    }

    /// A short `field=value` rendering of a row, for dead letters.
    pub fn row_excerpt(&self, row: usize) -> String {
        let mut excerpt = String::new();
        for (field, column) in Field::ALL.iter().zip(&self.columns) {
            let value = match column {
                Column::Text(values) if !values.is_null(row) => values.value(row).to_string(),
                Column::Millis(values) if !values.is_null(row) => values.value(row).to_string(),
                Column::Decimal { values, scale } if !values.is_null(row) => {
                    format!("{}e-{scale}", values.value(row))
                }
                _ => continue,
            };
            excerpt.push_str(field.name());
            excerpt.push('=');
            excerpt.push_str(&value);
            excerpt.push(' ');
            if excerpt.len() >= EXCERPT_BYTES {
                break;
            }
        }
        excerpt
    }
}

fn prepare_column(field: Field, array: &dyn Array) -> Column {
    let mismatch = || {
        Column::Mismatch(format!(
            "column {} has type {}",
            field.name(),
            array.data_type()
        ))
    };
    let as_text = || match cast(array, &DataType::Utf8) {
        Ok(text) => Column::Text(text.as_string::<i32>().clone()),
        Err(_) => mismatch(),
    };
    let data_type = array.data_type();
    match field {
        Field::Ts => match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => as_text(),
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                let millis = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .and_then(|ms| cast(&ms, &DataType::Int64));
                match millis {
                    Ok(millis) => Column::Millis(millis.as_primitive::<Int64Type>().clone()),
                    Err(_) => mismatch(),
                }
            }
            data_type if data_type.is_integer() => match cast(array, &DataType::Int64) {
                Ok(millis) => Column::Millis(millis.as_primitive::<Int64Type>().clone()),
                Err(_) => mismatch(),
            },
            _ => mismatch(),
        },
        Field::Cost | Field::Revenue => match data_type {
            DataType::Decimal128(_, scale) => Column::Decimal {
                values: array.as_primitive().clone(),
                scale: *scale,
            },
            data_type if data_type.is_numeric() || is_text(data_type) => as_text(),
            _ => mismatch(),
        },
        _ if is_text(data_type) || data_type.is_integer() => as_text(),
        _ => mismatch(),
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Rescales a decimal with `scale` places to micros, exactly or not at all.
fn decimal_to_micros(value: i128, scale: i8) -> Option<Micros> {
    let shift = 6 - i32::from(scale);
    let micros = if shift >= 0 {
        value.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?
    } else {
        let divisor = 10i128.checked_pow(shift.unsigned_abs())?;
        if value % divisor != 0 {
            return None;
        }
        value / divisor
    };
    Micros::try_from(micros).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_rescale_exactly() {
        assert_eq!(decimal_to_micros(125, 2), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000, 6), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000_000, 9), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000_001, 9), None);
        assert_eq!(decimal_to_micros(i128::MAX, 0), None);
        assert_eq!(decimal_to_micros(1, -3), Some(1_000_000_000));
    }
}
