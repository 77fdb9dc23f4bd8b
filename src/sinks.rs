//! Sinks: the output changelogs of differential collections, rendered as a
//! stdout table, JSONL, CSV or Parquet.
//!
//! A record type describes itself as a row through [`OutputRecord`]
//! (column names and types, then one [`Value`] per column). A [`SinkSpec`]
//! says where rows go (a directory, or stdout), in which [`OutputFormat`],
//! and whether the sink writes the final contents ([`SinkMode::Snapshot`])
//! or every update as it becomes final ([`SinkMode::Changelog`]).
//!
//! Transport is split from format, as in pathway's connectors: the
//! destination (a file `dir/<name>.<ext>` or stdout) is opened in one place
//! and each format is a small row writer over any byte stream
//! (`sinks/table.rs`, `sinks/jsonl.rs`, `sinks/csv.rs`, `sinks/parquet.rs`).
//!
//! Inside a dataflow, [`SinkExt::sink`] exchanges every update to worker 0,
//! which alone writes, so a multi-worker computation produces exactly one
//! file. Failures never panic: they become [`SinkError`] values recorded in
//! the [`SinkHandle`] that the sink returns.
//!
//! Outside a dataflow, [`write_records`] writes a slice of records and
//! [`render_table`] renders one as text.
//!
//! ```
//! use adflow::sinks::{render_table, Column, ColumnType, OutputRecord, Value};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
//! struct Spend {
//!     campaign: String,
//!     micros: i64,
//! }
//!
//! impl OutputRecord for Spend {
//!     fn columns() -> Vec<Column> {
//!         vec![
//!             Column::new("campaign", ColumnType::Text),
//!             Column::new("spend", ColumnType::Money),
//!         ]
//!     }
//!     fn values(&self) -> Vec<Value> {
//!         vec![Value::Text(self.campaign.clone()), Value::Money(self.micros)]
//!     }
//! }
//!
//! let rows = [
//!     Spend { campaign: "spring".into(), micros: 12_500_000 },
//!     Spend { campaign: "autumn".into(), micros: 250_000 },
//! ];
//! let text = render_table("spend", &rows, 20);
//! assert_eq!(
//!     text,
//!     "spend (2 rows)\n\
//!      campaign | spend\n\
//!      ---------+------\n\
//!      spring   |  12.5\n\
//!      autumn   |  0.25\n"
//! );
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::dead_letter::DeadLetter;
use crate::event::{Country, DeviceType, EventId, Id};
use crate::money::{format_micros, Micros};
use crate::timestamp::{format_rfc3339, Millis};

mod csv;
mod jsonl;
mod operator;
mod output;
mod parquet;
mod set;
mod table;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use jsonl::{json_keys, push_object};
pub use operator::{SinkExt, SinkHandle, SinkReport};
pub use set::{AttachedSinks, NamedOutputs, SinkSet};
pub use table::cell as table_cell;

/// One cell of an output row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value; empty in CSV and tables, `null` in JSON, a null in Parquet.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 64-bit float. Non-finite values are `null` in JSON.
    F64(f64),
    /// Text.
    Text(String),
    /// An instant in epoch milliseconds: RFC 3339 text (via
    /// [`format_rfc3339`]) in text formats, `Timestamp(ms, UTC)` in Parquet.
    Time(Millis),
    /// An amount of money in micros: exact decimal units (via
    /// [`format_micros`]) in text formats, a JSON number in JSONL,
    /// `Decimal128(18, 6)` in Parquet.
    Money(Micros),
}

/// An event id as its 32 hex digits.
impl From<EventId> for Value {
    fn from(id: EventId) -> Value {
        let id = id.0;
        Value::Text(format!("{id:032x}"))
    }
}

/// An identifier hash as its 16 hex digits. Campaign and ad columns use
/// [`Value::named`] instead, which shows their text.
impl From<Id> for Value {
    fn from(id: Id) -> Value {
        Value::Text(format!("{:016x}", id.get()))
    }
}

/// A country as its code (`??` when unknown), as dimension columns show it.
impl From<Country> for Value {
    fn from(country: Country) -> Value {
        Value::Text(country.as_str().to_owned())
    }
}

/// A device type as its wire name (empty when unknown).
impl From<DeviceType> for Value {
    fn from(device_type: DeviceType) -> Value {
        Value::Text(device_type.as_str().to_owned())
    }
}

/// An optional identifier: its hex digits, or `Null`.
impl From<Option<Id>> for Value {
    fn from(id: Option<Id>) -> Value {
        id.map_or(Value::Null, Value::from)
    }
}

impl Value {
    /// A campaign or ad id as the text it arrived with, if a source has
    /// seen it, else its 16 hex digits ([`crate::names`]); `Null` if
    /// absent.
    pub fn named(id: impl Into<Option<Id>>) -> Value {
        id.into()
            .map_or(Value::Null, |id| Value::Text(crate::names::id_text(id)))
    }

    /// The name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
            Value::Text(_) => "text",
            Value::Time(_) => "time",
            Value::Money(_) => "money",
        }
    }

    /// A total order for sorting rows as a reader expects them: `Null`
    /// first, then by value (numbers numerically, floats by
    /// [`f64::total_cmp`], times chronologically, text in natural order:
    /// runs of digits by their number, so `ad-9` before `ad-10`). Values
    /// of different kinds, which one column never mixes, order by kind.
    ///
    /// ```
    /// use adflow::sinks::Value;
    /// use std::cmp::Ordering;
    /// let text = |text: &str| Value::Text(text.to_owned());
    /// assert_eq!(Value::Null.total_cmp(&Value::I64(-1)), Ordering::Less);
    /// assert_eq!(Value::F64(2.5).total_cmp(&Value::F64(10.0)), Ordering::Less);
    /// assert_eq!(text("cmp-010").total_cmp(&text("cmp-002")), Ordering::Greater);
    /// assert_eq!(text("cmp-1-ad-9").total_cmp(&text("cmp-1-ad-10")), Ordering::Less);
    /// assert_eq!(text("ad-7").total_cmp(&text("ad-07")), Ordering::Less);
    /// assert_eq!(text("ad-7").total_cmp(&text("ad-7b")), Ordering::Less);
    /// ```
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::I64(a), Value::I64(b)) => a.cmp(b),
            (Value::F64(a), Value::F64(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => natural_cmp(a, b),
            (Value::Time(a), Value::Time(b)) => a.cmp(b),
            (Value::Money(a), Value::Money(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// The position of the variant in [`Value::total_cmp`]'s order of kinds.
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I64(_) => 2,
            Value::F64(_) => 3,
            Value::Text(_) => 4,
            Value::Time(_) => 5,
            Value::Money(_) => 6,
        }
    }

    /// Whether this value may stand in a column of type `ty` (`Null` fits any).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Null, _)
                | (Value::Bool(_), ColumnType::Bool)
                | (Value::I64(_), ColumnType::I64)
                | (Value::F64(_), ColumnType::F64)
                | (Value::Text(_), ColumnType::Text)
                | (Value::Time(_), ColumnType::Time)
                | (Value::Money(_), ColumnType::Money)
        )
    }
}

/// Text in natural order: runs of ASCII digits compare by their number
/// (then the shorter run, with fewer leading zeros, first), everything
/// else character by character. A total order: equal only if equal.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    // Most texts of one column share a long prefix (`cmp-018-ad-`): skip
    // it, back to the start of any run of digits it ends in.
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut start = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while start > 0 && a[start - 1].is_ascii_digit() {
        start -= 1;
    }
    let (mut a, mut b) = (&a[start..], &b[start..]);
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |text: &[u8]| text.iter().take_while(|c| c.is_ascii_digit()).count();
                let (digits_a, rest_a) = a.split_at(run(a));
                let (digits_b, rest_b) = b.split_at(run(b));
                let leading_zeros =
                    |digits: &[u8]| digits.iter().take_while(|c| **c == b'0').count();
                let (value_a, value_b) = (
                    &digits_a[leading_zeros(digits_a)..],
                    &digits_b[leading_zeros(digits_b)..],
                );
                let order = value_a
                    .len()
                    .cmp(&value_b.len())
                    .then_with(|| value_a.cmp(value_b))
                    .then_with(|| digits_a.len().cmp(&digits_b.len()));
                if order.is_ne() {
                    return order;
                }
                (a, b) = (rest_a, rest_b);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

/// Orders rows column by column, left to right, by [`Value::total_cmp`]:
/// the order in which sinks write them.
///
/// ```
/// use adflow::sinks::{compare_rows, Value};
/// use std::cmp::Ordering;
/// let a = [Value::Text("cmp-001".into()), Value::I64(9)];
/// let b = [Value::Text("cmp-002".into()), Value::I64(1)];
/// assert_eq!(compare_rows(&a, &b), Ordering::Less);
/// ```
pub fn compare_rows(a: &[Value], b: &[Value]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(a, b)| a.total_cmp(b))
        .find(|order| order.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Sorts `items` into the order of their rows ([`compare_rows`]), `row`
/// rendering (or lending) each item's row; as `items.sort_by(|a, b|
/// compare_rows(&row(a), &row(b)))` would, up to the order of items with
/// equal rows, but faster and in less memory on millions of items.
///
/// Each of the first [`SORT_KEY_COLUMNS`] columns becomes a number that
/// orders as the column's values do (a text by its rank among the
/// column's distinct texts, ranked once), so the sort compares numbers and
/// falls back to [`compare_rows`] only between items equal in all of
/// them. Rows are rendered one at a time and dropped, so sinks can sort
/// typed records and render each again as they write it: rendering every
/// row of a few million before sorting them held them all at once (2.5M
/// rows of 21 `Value`s for the 10M-event backfill's hourly metrics, an
/// estimated 2 GB), and comparing rendered rows chased every text to the
/// heap.
///
/// ```
/// use std::borrow::Cow;
/// use adflow::sinks::{compare_rows, sort_rows_by, Value};
/// let row = |campaign: &str, clicks: i64| vec![Value::Text(campaign.into()), Value::I64(clicks)];
/// let mut rows = vec![row("cmp-10", 1), row("cmp-9", 2), row("cmp-9", 1)];
/// sort_rows_by(&mut rows, |row| Cow::Borrowed(row.as_slice()));
/// assert_eq!(rows, [row("cmp-9", 1), row("cmp-9", 2), row("cmp-10", 1)]);
/// assert!(rows.windows(2).all(|pair| compare_rows(&pair[0], &pair[1]).is_le()));
/// ```
pub fn sort_rows_by<T>(items: &mut Vec<T>, row: impl for<'a> Fn(&'a T) -> Cow<'a, [Value]>) {
    // Texts get a provisional number as first seen, their rank once all
    // are known; the high half of a key marks the texts to rewrite.
    let text_kind = sort_key(&Value::Text(String::new())) >> 64;
    let mut texts: Vec<HashMap<String, u64>> = vec![HashMap::new(); SORT_KEY_COLUMNS];
    let mut keys: Vec<([u128; SORT_KEY_COLUMNS], usize)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let row = row(item);
        let mut key = [0u128; SORT_KEY_COLUMNS];
        for ((slot, value), seen) in key.iter_mut().zip(row.iter()).zip(texts.iter_mut()) {
            *slot = match value {
                Value::Text(text) => {
                    let next = u64::try_from(seen.len()).unwrap_or(u64::MAX);
                    let number = match seen.get(text.as_str()) {
                        Some(number) => *number,
                        None => *seen.entry(text.clone()).or_insert(next),
                    };
                    (text_kind << 64) | u128::from(number)
                }
                other => sort_key(other),
            };
        }
        keys.push((key, index));
    }
    let ranks: Vec<Vec<u64>> = texts
        .into_iter()
        .map(|seen| {
            let mut distinct: Vec<(String, u64)> = seen.into_iter().collect();
            distinct.sort_unstable_by(|(a, _), (b, _)| natural_cmp(a, b));
            let mut rank = vec![0; distinct.len()];
            for (position, (_, number)) in (0..).zip(&distinct) {
                if let Some(slot) = usize::try_from(*number)
                    .ok()
                    .and_then(|at| rank.get_mut(at))
                {
                    *slot = position;
                }
            }
            rank
        })
        .collect();
    for (key, _) in &mut keys {
        for (slot, ranks) in key.iter_mut().zip(&ranks) {
            if *slot >> 64 == text_kind {
                let number = usize::try_from(*slot & u128::from(u64::MAX)).unwrap_or(usize::MAX);
                *slot = (text_kind << 64) | u128::from(ranks.get(number).copied().unwrap_or(0));
            }
        }
    }
    keys.sort_unstable_by(|(key_a, a), (key_b, b)| {
        key_a
            .cmp(key_b)
            .then_with(|| compare_rows(&row(&items[*a]), &row(&items[*b])))
    });
    let mut taken: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(
        keys.into_iter()
            .filter_map(|(_, index)| taken[index].take()),
    );
}

/// How many leading columns [`sort_rows_by`] turns into numbers: enough
/// for the key columns of every output record, so that the fallback to
/// comparing rows is rare.
pub const SORT_KEY_COLUMNS: usize = 6;

/// A number that orders as `value` does among values of other kinds and
/// non-text values of its own ([`Value::total_cmp`]): its kind in the high
/// half, its value in the low; 0 is left for a missing column, which
/// [`compare_rows`] puts first. A text's low half is left 0 for
/// [`sort_rows_by`], which ranks the texts.
fn sort_key(value: &Value) -> u128 {
    // Signed integers in unsigned order: flip the sign bit.
    let signed = |number: i64| u64::from_ne_bytes(number.to_ne_bytes()) ^ (1 << 63);
    let within = match value {
        Value::Null | Value::Text(_) => 0,
        Value::Bool(flag) => u64::from(*flag),
        Value::I64(number) | Value::Time(number) | Value::Money(number) => signed(*number),
        // `f64::total_cmp`'s order: negative numbers have all bits flipped,
        // the others only the sign bit.
        Value::F64(number) => {
            let bits = number.to_bits();
            if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            }
        }
    };
    ((u128::from(value.rank()) + 1) << 64) | u128::from(within)
}

/// The text form used by tables and CSV: `Null` is empty, times are
/// RFC 3339, money is exact decimal units.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(value) => write!(f, "{value}"),
            Value::I64(value) => write!(f, "{value}"),
            Value::F64(value) => write!(f, "{value}"),
            Value::Text(value) => f.write_str(value),
            Value::Time(ms) => f.write_str(&format_rfc3339(*ms)),
            Value::Money(micros) => f.write_str(&format_micros(*micros)),
        }
    }
}

/// The type of an output column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColumnType {
    /// Holds [`Value::Bool`].
    Bool,
    /// Holds [`Value::I64`].
    I64,
    /// Holds [`Value::F64`].
    F64,
    /// Holds [`Value::Text`].
    Text,
    /// Holds [`Value::Time`].
    Time,
    /// Holds [`Value::Money`].
    Money,
}

impl ColumnType {
    /// Whether tables right-align this type (numbers do).
    pub fn is_numeric(self) -> bool {
        matches!(self, ColumnType::I64 | ColumnType::F64 | ColumnType::Money)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Bool => "bool",
            ColumnType::I64 => "i64",
            ColumnType::F64 => "f64",
            ColumnType::Text => "text",
            ColumnType::Time => "time",
            ColumnType::Money => "money",
        })
    }
}

/// A named, typed output column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Column {
    /// The column name: the CSV header, JSON key and Parquet field name.
    pub name: &'static str,
    /// The type of the column's values.
    pub ty: ColumnType,
}

impl Column {
    /// A column named `name` of type `ty`.
    pub const fn new(name: &'static str, ty: ColumnType) -> Column {
        Column { name, ty }
    }
}

/// A record that sinks can write: a fixed list of typed columns and, per
/// record, one value for each.
///
/// `ExchangeData` (timely's `Send + Serialize + Deserialize` plus
/// differential's `Ord + Debug + Clone + 'static`) lets sinks exchange
/// records to the writing worker and sort snapshots by `Ord`.
pub trait OutputRecord: differential_dataflow::ExchangeData {
    /// The columns, in output order. Must not depend on any record.
    fn columns() -> Vec<Column>;
    /// This record's values, in the order and arity of [`OutputRecord::columns`];
    /// each value must fit its column's type (or be [`Value::Null`]).
    fn values(&self) -> Vec<Value>;
    /// How many leading columns form the record's key: a changelog topic
    /// ([`crate::kafka`]) keys its messages by them, and holds one current
    /// value per key. Defaults to every column (the whole record is the key).
    fn key_columns() -> usize {
        Self::columns().len()
    }
    /// Whether a collection of these records holds at most one row per key
    /// at every time, as a count or a reduce per key guarantees. A changelog
    /// topic then needs no copy of the rows once it is up to date: a key's
    /// new value is its inserted row, or a tombstone. Defaults to `false`.
    fn one_row_per_key() -> bool {
        false
    }
    /// The values of the key columns alone: `values()` cut to
    /// [`OutputRecord::key_columns`]. A changelog topic computes them for
    /// every update, so a record with many or costly columns may override
    /// this to build only the key's.
    fn key_values(&self) -> Vec<Value> {
        let mut values = self.values();
        values.truncate(Self::key_columns());
        values
    }
}

/// Dead letters as output rows: `source`, `position` (its display form,
/// e.g. `line 12`), `reason` (the stable code), `detail`, `excerpt`.
impl OutputRecord for DeadLetter {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("source", ColumnType::Text),
            Column::new("position", ColumnType::Text),
            Column::new("reason", ColumnType::Text),
            Column::new("detail", ColumnType::Text),
            Column::new("excerpt", ColumnType::Text),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Text(self.source.clone()),
            Value::Text(self.position.to_string()),
            Value::Text(self.reason.code().to_owned()),
            Value::Text(self.detail.clone()),
            Value::Text(self.excerpt.clone()),
        ]
    }

    /// A record is identified by where it was: its source and position.
    fn key_columns() -> usize {
        2
    }
}

/// How rows are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputFormat {
    /// An aligned text table titled with the sink name, showing at most
    /// [`SinkSpec::table_rows`] rows; rendered once, when the sink finishes.
    Table,
    /// One JSON object per line, keyed by column name.
    Jsonl,
    /// A header line, then one line per row.
    Csv,
    /// Parquet with snappy compression; needs a directory (not stdout).
    Parquet,
}

impl OutputFormat {
    /// Every format, in declaration order.
    pub const ALL: [OutputFormat; 4] = [
        OutputFormat::Table,
        OutputFormat::Jsonl,
        OutputFormat::Csv,
        OutputFormat::Parquet,
    ];

    /// The name accepted by `FromStr`: `table`, `jsonl`, `csv`, `parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
        }
    }

    /// The file extension: `txt`, `jsonl`, `csv`, `parquet`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Table => "txt",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = SinkError;

    /// Parses a format name, ignoring ASCII case.
    fn from_str(text: &str) -> Result<OutputFormat, SinkError> {
        OutputFormat::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| SinkError::UnknownFormat {
                text: limit_length(text, 64),
            })
    }
}

/// What a sink writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SinkMode {
    /// The consolidated final contents, written once the input frontier is
    /// empty, sorted by their rendered columns, left to right
    /// ([`compare_rows`]: campaigns and ads by name, not by their ids'
    /// hashes). Only the record's columns; a
    /// record with multiplicity `m > 1` is written `m` times. A negative final
    /// multiplicity is a producer bug: the record is not written and a
    /// [`SinkError::NegativeMultiplicity`] is recorded.
    #[default]
    Snapshot,
    /// Every update once the input frontier has passed its time, in time
    /// order (consolidated per time, sorted by rendered columns within a
    /// time, as snapshots are), with two
    /// extra columns: `time` (the dataflow time, I64) and `diff` (I64). The
    /// writer is flushed after each batch of closed times.
    Changelog,
}

/// Where and how a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSpec {
    /// The sink's name: the table title and the file stem (`<name>.<ext>`).
    pub name: String,
    /// The directory to write `<name>.<ext>` into (created if missing);
    /// `None` writes to stdout.
    pub dir: Option<PathBuf>,
    /// The encoding.
    pub format: OutputFormat,
    /// Final contents or every update.
    pub mode: SinkMode,
    /// The most rows a [`OutputFormat::Table`] shows.
    pub table_rows: usize,
}

impl SinkSpec {
    /// Rows a table shows unless told otherwise.
    pub const DEFAULT_TABLE_ROWS: usize = 20;

    /// A snapshot sink writing `name` to stdout.
    pub fn stdout(name: impl Into<String>, format: OutputFormat) -> SinkSpec {
        SinkSpec {
            name: name.into(),
            dir: None,
            format,
            mode: SinkMode::Snapshot,
            table_rows: SinkSpec::DEFAULT_TABLE_ROWS,
        }
    }

    /// A snapshot sink writing `dir/<name>.<ext>`.
    pub fn file(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        format: OutputFormat,
    ) -> SinkSpec {
        SinkSpec {
            dir: Some(dir.into()),
            ..SinkSpec::stdout(name, format)
        }
    }

    /// The same spec in `mode`.
    pub fn with_mode(self, mode: SinkMode) -> SinkSpec {
        SinkSpec { mode, ..self }
    }

    /// The same spec showing at most `rows` table rows.
    pub fn with_table_rows(self, rows: usize) -> SinkSpec {
        SinkSpec {
            table_rows: rows,
            ..self
        }
    }

    /// The file this spec writes, or `None` for stdout.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_deref().map(|dir| self.path_in(dir))
    }

    fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.{}", self.name, self.format.extension()))
    }

    /// The columns this spec writes for records of type `D`: the record's
    /// columns, plus `time` and `diff` in [`SinkMode::Changelog`].
    pub fn columns<D: OutputRecord>(&self) -> Vec<Column> {
        let mut columns = D::columns();
        if self.mode == SinkMode::Changelog {
            columns.push(Column::new("time", ColumnType::I64));
            columns.push(Column::new("diff", ColumnType::I64));
        }
        columns
    }
}

/// Why a sink could not write (part of) its output.
///
/// Recorded in a [`SinkHandle`] (dataflow sinks) or returned (by
/// [`write_records`]); never a panic. Sources are shared (`Arc`) so that
/// errors can be cloned out of a handle.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Creating, writing, flushing or renaming the output failed.
    #[error("{target}: {source}")]
    Io {
        /// The file path, or `<stdout>`.
        target: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The CSV writer failed.
    #[error("{target}: {source}")]
    Csv {
        /// The file path, or `<stdout>`.
        target: String,
        /// The underlying error.
        #[source]
        source: Arc<::csv::Error>,
    },
    /// Building an Arrow batch failed (e.g. money beyond `Decimal128(18, 6)`).
    #[error("{target}: {source}")]
    Arrow {
        /// The file path.
        target: String,
        /// The underlying error.
        #[source]
        source: Arc<arrow::error::ArrowError>,
    },
    /// The Parquet writer failed.
    #[error("{target}: {source}")]
    Parquet {
        /// The file path.
        target: String,
        /// The underlying error.
        #[source]
        source: Arc<::parquet::errors::ParquetError>,
    },
    /// A record produced a different number of values than it has columns.
    #[error("{sink}: a row has {found} values for {expected} columns")]
    Arity {
        /// The sink name.
        sink: String,
        /// The number of columns.
        expected: usize,
        /// The number of values.
        found: usize,
    },
    /// A value does not fit its column's type.
    #[error("{sink}: column `{column}` is {expected} but a row holds a {found} value")]
    TypeMismatch {
        /// The sink name.
        sink: String,
        /// The column name.
        column: &'static str,
        /// The column's type.
        expected: ColumnType,
        /// The value's kind ([`Value::kind`]).
        found: &'static str,
    },
    /// In [`SinkMode::Snapshot`], a record's final multiplicity was negative;
    /// the record was not written.
    #[error("{sink}: record has final multiplicity {multiplicity}: {record}")]
    NegativeMultiplicity {
        /// The sink name.
        sink: String,
        /// The record's `Debug` form, cut to 256 bytes.
        record: String,
        /// Its multiplicity.
        multiplicity: isize,
    },
    /// The thread writing a snapshot file panicked; the file may be missing.
    #[error("{sink}: the thread writing the output panicked")]
    WriterPanicked {
        /// The sink name.
        sink: String,
    },
    /// A dataflow time does not fit the `time` column (I64); written as null.
    #[error("{sink}: time {time} does not fit a signed 64-bit column")]
    TimeOutOfRange {
        /// The sink name.
        sink: String,
        /// The time.
        time: u64,
    },
    /// The sink name is empty or is not a plain file stem.
    #[error("invalid sink name {name:?}: must be non-empty without path separators")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The format cannot write to this destination (Parquet to stdout).
    #[error("{sink}: {format} output needs a directory, not stdout")]
    NeedsDirectory {
        /// The sink name.
        sink: String,
        /// The format.
        format: OutputFormat,
    },
    /// Producing to or reading back a Kafka topic failed.
    #[error("{sink}: kafka: {message}")]
    Kafka {
        /// The sink name (its topic).
        sink: String,
        /// What failed.
        message: String,
    },
    /// A format name that `OutputFormat::from_str` does not know.
    #[error("unknown output format {text:?} (expected table, jsonl, csv or parquet)")]
    UnknownFormat {
        /// The text, cut to 64 bytes.
        text: String,
    },
}

/// Writes `records`, in the given order, as `spec` says; returns the file
/// written (`None` for stdout).
///
/// The columns are `D::columns()`; `spec.mode` is ignored (a slice has no
/// times). A file is written under a temporary name and renamed into place
/// when complete, so `dir/<name>.<ext>` never holds a partial file; on
/// error the temporary file is removed.
pub fn write_records<D: OutputRecord>(
    records: &[D],
    spec: &SinkSpec,
) -> Result<Option<PathBuf>, SinkError> {
    let rows = records.iter().map(OutputRecord::values);
    output::write_all(spec, D::columns(), rows).map(|(path, _rows)| path)
}

/// Renders `records` as an aligned text table: the title with the row
/// count, a header, a rule, the first `max_rows` rows, then `… N more rows`
/// if any were left out. Numbers are right-aligned; control characters in
/// text are escaped and long cells cut, so rows stay on one line.
pub fn render_table<D: OutputRecord>(title: &str, records: &[D], max_rows: usize) -> String {
    let shown: Vec<Vec<Value>> = records
        .iter()
        .take(max_rows)
        .map(OutputRecord::values)
        .collect();
    table::render(title, &D::columns(), &shown, records.len())
}

/// `text`, cut at a character boundary to at most `max` bytes.
fn limit_length(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}
