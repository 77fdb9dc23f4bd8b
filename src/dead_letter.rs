//! Dead letters: records that could not become events, kept as data.
//!
//! Following Materialize's errors-as-data, a bad record never panics and
//! never disappears: it becomes a [`DeadLetter`] carrying where it came from,
//! why it was rejected and an excerpt of its bytes, flows through its own
//! collection, is counted, and is written out like any other result.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest excerpt of a rejected record that a dead letter keeps, in bytes.
pub const EXCERPT_BYTES: usize = 256;

/// Why a record was rejected. `code()` is the stable name used in outputs
/// and documented in `docs/schema.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// The file or stream could not be opened or read further (I/O, gzip or Parquet corruption).
    UnreadableSource,
    /// The record is not valid UTF-8.
    InvalidUtf8,
    /// The record is longer than 64 KiB.
    RecordTooLarge,
    /// The line is not a JSON object (syntax error, truncation, duplicate key, not an object).
    MalformedJson,
    /// The CSV line does not split into the header's columns (quoting error, wrong column count).
    MalformedCsv,
    /// A Parquet column has a type adflow cannot read as its field.
    SchemaMismatch,
    /// A required field (event_id, kind, ts; user_id or device_id; campaign_id and ad_id on
    /// impressions and clicks) is absent or empty.
    MissingField,
    /// A field holds a value of the wrong type (an object where text belongs, a string where a number does).
    WrongType,
    /// `kind` is not impression, click, conversion or page_view.
    UnknownKind,
    /// `ts` is neither RFC 3339 nor epoch milliseconds.
    BadTimestamp,
    /// `ts` lies outside 2000–2100 or more than the allowed skew (default one year) from the stream's time.
    TimestampOutOfRange,
    /// `cost` or `revenue` is below zero.
    NegativeMoney,
    /// `cost` or `revenue` is not a decimal, has more than six decimals or overflows.
    BadMoney,
    /// `ip` or `country` does not parse.
    InvalidField,
    /// The event arrived after the lateness horizon had closed its time.
    Late,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 15] = [
        Reason::UnreadableSource,
        Reason::InvalidUtf8,
        Reason::RecordTooLarge,
        Reason::MalformedJson,
        Reason::MalformedCsv,
        Reason::SchemaMismatch,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownKind,
        Reason::BadTimestamp,
        Reason::TimestampOutOfRange,
        Reason::NegativeMoney,
        Reason::BadMoney,
        Reason::InvalidField,
        Reason::Late,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::UnreadableSource => "unreadable_source",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::RecordTooLarge => "record_too_large",
            Reason::MalformedJson => "malformed_json",
            Reason::MalformedCsv => "malformed_csv",
            Reason::SchemaMismatch => "schema_mismatch",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownKind => "unknown_kind",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::NegativeMoney => "negative_money",
            Reason::BadMoney => "bad_money",
            Reason::InvalidField => "invalid_field",
            Reason::Late => "late",
        }
    }

    /// Position of this reason in [`Reason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|reason| *reason == self)
            .unwrap_or(0)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where in its source a record was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Position {
    /// The source as a whole (it could not be opened).
    Source,
    /// 1-based line number in a JSONL or CSV file.
    Line(u64),
    /// 0-based row number in a Parquet file.
    Row(u64),
    /// A message in a partitioned log.
    Offset {
        /// Partition number.
        partition: i32,
        /// Offset within the partition.
        offset: i64,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Source => f.write_str("source"),
            Position::Line(line) => write!(f, "line {line}"),
            Position::Row(row) => write!(f, "row {row}"),
            Position::Offset { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
        }
    }
}

/// A rejected record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// File path or topic name.
    pub source: String,
    /// Position within the source.
    pub position: Position,
    /// Why it was rejected.
    pub reason: Reason,
    /// Which field, or the underlying error message.
    pub detail: String,
    /// The first bytes of the record (lossy UTF-8, at most [`EXCERPT_BYTES`]).
    pub excerpt: String,
}

impl DeadLetter {
    /// Builds a dead letter, cutting the excerpt to [`EXCERPT_BYTES`].
    pub fn new(
        source: &str,
        position: Position,
        reason: Reason,
        detail: impl Into<String>,
        raw: &[u8],
    ) -> DeadLetter {
        DeadLetter {
            source: source.to_owned(),
            position,
            reason,
            detail: limit_length(detail.into(), EXCERPT_BYTES),
            excerpt: excerpt(raw),
        }
    }
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} ({}): {:?}",
            self.source, self.position, self.reason, self.detail, self.excerpt
        )
    }
}

/// The first [`EXCERPT_BYTES`] of `raw` as lossy UTF-8.
pub fn excerpt(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(EXCERPT_BYTES)]).into_owned()
}

fn limit_length(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Dead letters counted per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCounts(pub [u64; Reason::ALL.len()]);

impl ReasonCounts {
    /// Counts one dead letter.
    pub fn add(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &ReasonCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// Total dead letters.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    /// Non-zero counts, in reason order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .zip(self.0)
            .filter(|(_, count)| *count > 0)
    }
}
