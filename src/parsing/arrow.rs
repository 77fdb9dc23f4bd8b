//! Arrow syntax: typed columns of a Parquet row group.
//!
//! Columns are matched to fields by name and normalised once per batch
//! (any integer or string type to text, any timestamp unit to epoch
//! milliseconds, decimals kept exact), then each row is read without
//! copying its strings. Dictionary columns stay dictionaries: each entry is
//! hashed once per batch, not once per row that holds it. A column whose type cannot be read as its field
//! makes each row a `schema_mismatch` dead letter, never a panic.

use std::borrow::Cow;

use arrow::array::{
    Array, AsArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit};

use super::{Field, RawFields, RawValue, Rejection};
use crate::dead_letter::{Reason, EXCERPT_BYTES};
use crate::event::Id;
use crate::money::Micros;
use crate::schema::MAX_RECORD_BYTES;

#[derive(Clone, Debug)]
enum Column {
    Absent,
    Text(StringArray),
    /// A dictionary column: each row's key into `values`, and each
    /// value's [`Id::of`] (`None` for an empty or null value).
    Dictionary {
        keys: Int32Array,
        values: StringArray,
        ids: Vec<Option<Id>>,
    },
    Millis(Int64Array),
    Decimal {
        values: Decimal128Array,
        scale: i8,
    },
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
                Column::Dictionary { keys, values, ids } => dictionary_entry(keys, values, row)
                    // An empty value has no id and counts as absent.
                    .and_then(|entry| Some((entry, ids.get(entry).copied().flatten()?)))
                    .map(|(entry, id)| {
                        let text = values.value(entry);
                        text_bytes += text.len();
                        RawValue::Hashed(text, id)
                    }),
                Column::Millis(values) => {
                    (!values.is_null(row)).then(|| RawValue::Millis(values.value(row)))
                }
                Column::Decimal { values, scale } => match values.is_null(row) {
                    true => None,
                    false => Some(match decimal_to_micros(values.value(row), *scale) {
                        Some(micros) => RawValue::Micros(micros),
                        // Not whole micros: validation rejects its text in
                        // its turn, as it would the same number from JSON,
                        // so that a record with several faults gets the
                        // same reason whatever its format.
                        None => RawValue::Text(Cow::Owned(decimal_text(values.value(row), *scale))),
                    }),
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
                Column::Dictionary { keys, values, .. } => {
                    match dictionary_entry(keys, values, row) {
                        Some(entry) => values.value(entry).to_string(),
                        None => continue,
                    }
                }
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

/// The entry of `row` in a dictionary column's `values`; `None` if the row
/// or its value is null.
fn dictionary_entry(keys: &Int32Array, values: &StringArray, row: usize) -> Option<usize> {
    if keys.is_null(row) {
        return None;
    }
    let entry = usize::try_from(keys.value(row)).ok()?;
    (entry < values.len() && !values.is_null(entry)).then_some(entry)
}

/// A dictionary of text as `Int32` keys into `Utf8` values, with every
/// value hashed; `None` if `array` is no such dictionary or cannot be cast
/// to one.
fn prepare_dictionary(array: &dyn Array) -> Option<Column> {
    let DataType::Dictionary(_, value_type) = array.data_type() else {
        return None;
    };
    if !is_text(value_type) {
        return None;
    }
    let normalised = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let array = cast(array, &normalised).ok()?;
    let dictionary = array.as_dictionary_opt::<Int32Type>()?;
    let values = dictionary.values().as_string_opt::<i32>()?.clone();
    let ids = (0..values.len())
        .map(|entry| match values.is_null(entry) {
            true => None,
            false => Id::of(values.value(entry)),
        })
        .collect();
    Some(Column::Dictionary {
        keys: dictionary.keys().clone(),
        values,
        ids,
    })
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
            data_type if is_text_like(data_type) => as_text(),
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
            data_type if data_type.is_numeric() || is_text_like(data_type) => as_text(),
            _ => mismatch(),
        },
        _ => match prepare_dictionary(array) {
            Some(column) => column,
            None if is_text_like(data_type) || data_type.is_integer() => as_text(),
            None => mismatch(),
        },
    }
}

/// Text, or a dictionary of text.
fn is_text_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => is_text(values),
        data_type => is_text(data_type),
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// A decimal with `scale` places as a number literal: `-1` at scale 9 is
/// `-0.000000001`, `5` at scale -2 is `500`.
fn decimal_text(value: i128, scale: i8) -> String {
    let places = usize::from(scale.unsigned_abs());
    if scale <= 0 {
        return format!("{value}{}", "0".repeat(places));
    }
    let sign = if value < 0 { "-" } else { "" };
    let digits = format!("{:0>width$}", value.unsigned_abs(), width = places + 1);
    let (whole, fraction) = digits.split_at(digits.len() - places);
    format!("{sign}{whole}.{fraction}")
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
    use std::sync::Arc;

    use arrow::array::{ArrayRef, DictionaryArray, Int64Array};
    use arrow::datatypes::{Field as ArrowField, Schema};

    use super::*;
    use crate::parsing::EventValidator;

    /// A batch of `columns` (name, values), each either plain `Utf8` or
    /// a dictionary of it, plus a `ts` column.
    fn batch(columns: &[(&str, Vec<Option<&str>>)], dictionary: bool) -> RecordBatch {
        let rows = columns[0].1.len();
        let mut fields = vec![ArrowField::new("ts", DataType::Int64, false)];
        let mut arrays: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(vec![1_793_527_200_000; rows]))];
        for (name, values) in columns {
            let array: ArrayRef = match dictionary {
                true => Arc::new(
                    values
                        .iter()
                        .copied()
                        .collect::<DictionaryArray<Int32Type>>(),
                ),
                false => Arc::new(StringArray::from(values.clone())),
            };
            fields.push(ArrowField::new(*name, array.data_type().clone(), true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("valid batch")
    }

    #[test]
    fn dictionary_columns_read_as_their_text_does() {
        let columns = [
            (
                "event_id",
                vec![Some("e1"), Some("e2"), Some("e3"), Some("e4"), Some("e5")],
            ),
            (
                "kind",
                vec![
                    Some("click"),
                    Some("impression"),
                    Some("click"),
                    Some("click"),
                    Some("teleport"),
                ],
            ),
            (
                "user_id",
                vec![Some("u1"), Some(""), None, Some("u1"), Some("u2")],
            ),
            (
                "device_id",
                vec![Some("d1"), None, None, Some("d2"), Some("d2")],
            ),
            (
                "campaign_id",
                vec![Some("c1"), Some("c1"), Some("c2"), None, Some("c1")],
            ),
            (
                "ad_id",
                vec![Some("a1"), Some("a2"), Some("a2"), Some("a1"), Some("a1")],
            ),
            (
                "user_agent",
                vec![
                    Some("curl/8.0"),
                    Some("Mozilla/5.0"),
                    Some(""),
                    None,
                    Some("curl/8.0"),
                ],
            ),
            (
                "country",
                vec![Some("DE"), Some("XX!"), Some("FR"), Some("DE"), Some("DE")],
            ),
            (
                "cost",
                vec![
                    Some("0.25"),
                    Some("-1"),
                    Some("0.1"),
                    Some("0.1"),
                    Some("0.1"),
                ],
            ),
        ];
        let read = |dictionary: bool| {
            let fields = BatchFields::prepare(&batch(&columns, dictionary));
            let mut validator = EventValidator::default();
            (0..fields.num_rows())
                .map(|row| {
                    let raw = fields.row(row)?;
                    validator.validate(&raw)
                })
                .collect::<Vec<_>>()
        };
        let plain = read(false);
        assert!(plain[0].is_ok() && plain[1].is_err() && plain[4].is_err());
        assert_eq!(read(true), plain);
        let fields = BatchFields::prepare(&batch(&columns, true));
        assert!(fields
            .columns
            .iter()
            .any(|column| matches!(column, Column::Dictionary { .. })));
        assert_eq!(
            fields.row_excerpt(1),
            BatchFields::prepare(&batch(&columns, false)).row_excerpt(1)
        );
    }

    #[test]
    fn decimals_rescale_exactly() {
        assert_eq!(decimal_to_micros(125, 2), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000, 6), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000_000, 9), Some(1_250_000));
        assert_eq!(decimal_to_micros(1_250_000_001, 9), None);
        assert_eq!(decimal_to_micros(i128::MAX, 0), None);
        assert_eq!(decimal_to_micros(1, -3), Some(1_000_000_000));
        assert_eq!(decimal_text(-1, 9), "-0.000000001");
        assert_eq!(decimal_text(1_250_000_001, 9), "1.250000001");
        assert_eq!(decimal_text(5, -2), "500");
        assert_eq!(decimal_text(-125, 0), "-125");
    }
}
