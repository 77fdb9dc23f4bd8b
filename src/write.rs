//! Writers of [`EventRecord`]s in the wire formats: JSONL, CSV (plain or
//! gzip) and Parquet, one file at a time or partitioned by event date.
//!
//! Every format renders a record the same way (see `docs/schema.md`):
//!
//! - keys / columns are [`FIELDS`], in that order;
//! - `ts` is RFC 3339 UTC with milliseconds in text formats
//!   ([`format_rfc3339`]) and a UTC millisecond timestamp in Parquet;
//! - money is decimal currency units written from integer micros
//!   ([`format_micros`], exact text, never through `f64`) in text formats and
//!   `Decimal128(18, 6)` holding the micros in Parquet;
//! - an empty string is an absent field: omitted in JSONL, an empty cell in
//!   CSV, null in Parquet (`event_id` and `kind` are always written);
//! - `cost` is written on impressions and clicks, `revenue` on conversions;
//!   on other kinds they are absent unless non-zero, so no amount is lost.
//!
//! The adflow CSV reader is line based, so CSV cells never contain `\r` or
//! `\n`: both are replaced by a space when writing. Gzip output uses the
//! fast compression level (1).
//!
//! ```
//! use adflow::event::EventRecord;
//! use adflow::write::{FileFormat, PartitionedWriter, WriteOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("adflow-write-doc-{}", std::process::id()));
//! let mut writer = PartitionedWriter::new(&dir, FileFormat::Jsonl, WriteOptions::default());
//! let record = EventRecord {
//!     event_id: "e-1".into(),
//!     kind: "click".into(),
//!     ts: 1_793_491_200_000, // 2026-11-01T00:00:00Z
//!     cost_micros: 250_000,
//!     ..EventRecord::default()
//! };
//! writer.write(&record)?;
//! let files = writer.finish()?;
//! assert_eq!(files.len(), 1);
//! assert!(files[0].path.ends_with("dt=2026-11-01/part-00000.jsonl"));
//! let text = std::fs::read_to_string(&files[0].path)?;
//! assert_eq!(
//!     text,
//!     "{\"event_id\":\"e-1\",\"kind\":\"click\",\"ts\":\"2026-11-01T00:00:00.000Z\",\"cost\":0.25}\n"
//! );
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use flate2::write::GzEncoder;
use flate2::Compression as GzCompression;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::event::EventRecord;
use crate::money::format_micros;
use crate::schema::{event_arrow_schema, FIELDS, MONEY_PRECISION, MONEY_SCALE};
use crate::timestamp::{format_date, format_rfc3339, Millis, DAY_MS};

/// Why writing events failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The destination could not be created or written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV encoder failed (in practice an I/O error underneath).
    #[error("CSV error: {0}")]
    Csv(#[from] csv::Error),
    /// The JSON encoder failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// Building an Arrow batch failed.
    #[error("Arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet encoder failed.
    #[error("Parquet error: {0}")]
    Parquet(#[from] ParquetError),
    /// An error while writing one file, with its path.
    #[error("writing {}: {source}", path.display())]
    File {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<WriteError>,
    },
}

impl WriteError {
    fn at(path: &Path) -> impl FnOnce(WriteError) -> WriteError + '_ {
        move |source| match source {
            already @ WriteError::File { .. } => already,
            source => WriteError::File {
                path: path.to_path_buf(),
                source: Box::new(source),
            },
        }
    }
}

/// An event file format, chosen by file name (see [`FileFormat::from_path`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileFormat {
    /// One JSON object per line (`.jsonl`, `.json`, `.ndjson`).
    Jsonl,
    /// Gzip-compressed JSONL (`.jsonl.gz`, `.json.gz`, `.ndjson.gz`).
    JsonlGz,
    /// CSV with a header line of [`FIELDS`] (`.csv`).
    Csv,
    /// Gzip-compressed CSV (`.csv.gz`).
    CsvGz,
    /// Parquet with [`event_arrow_schema`], snappy-compressed (`.parquet`).
    Parquet,
}

impl FileFormat {
    /// Every format, in declaration order.
    pub const ALL: [FileFormat; 5] = [
        FileFormat::Jsonl,
        FileFormat::JsonlGz,
        FileFormat::Csv,
        FileFormat::CsvGz,
        FileFormat::Parquet,
    ];

    /// The file name extension written for this format, without the leading dot.
    ///
    /// ```
    /// use adflow::write::FileFormat;
    /// assert_eq!(FileFormat::CsvGz.extension(), "csv.gz");
    /// assert_eq!(FileFormat::Parquet.extension(), "parquet");
    /// ```
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::JsonlGz => "jsonl.gz",
            FileFormat::Csv => "csv",
            FileFormat::CsvGz => "csv.gz",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The name used on command lines: `jsonl`, `jsonl-gz`, `csv`, `csv-gz`, `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::JsonlGz => "jsonl-gz",
            FileFormat::Csv => "csv",
            FileFormat::CsvGz => "csv-gz",
            FileFormat::Parquet => "parquet",
        }
    }

    /// Whether files of this format are gzip streams.
    pub fn is_gzip(self) -> bool {
        matches!(self, FileFormat::JsonlGz | FileFormat::CsvGz)
    }

    /// Detects the format from a file name, ignoring ASCII case: `.jsonl`,
    /// `.json` and `.ndjson` are JSONL, `.csv` is CSV, the same followed by
    /// `.gz` are their gzip variants, `.parquet` (or `.pq`) is Parquet.
    /// Anything else (including a bare `.gz`) is `None`.
    ///
    /// ```
    /// use std::path::Path;
    /// use adflow::write::FileFormat;
    /// assert_eq!(FileFormat::from_path(Path::new("a/b.NDJSON")), Some(FileFormat::Jsonl));
    /// assert_eq!(FileFormat::from_path(Path::new("part-00001.csv.gz")), Some(FileFormat::CsvGz));
    /// assert_eq!(FileFormat::from_path(Path::new("x.parquet")), Some(FileFormat::Parquet));
    /// assert_eq!(FileFormat::from_path(Path::new("x.gz")), None);
    /// assert_eq!(FileFormat::from_path(Path::new("csv")), None);
    /// ```
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let (_, extension) = stem.rsplit_once('.')?;
        match (extension, gzip) {
            ("jsonl" | "json" | "ndjson", false) => Some(FileFormat::Jsonl),
            ("jsonl" | "json" | "ndjson", true) => Some(FileFormat::JsonlGz),
            ("csv", false) => Some(FileFormat::Csv),
            ("csv", true) => Some(FileFormat::CsvGz),
            ("parquet" | "pq", false) => Some(FileFormat::Parquet),
            _ => None,
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`FileFormat::name`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file format {0:?} (expected jsonl, jsonl-gz, csv, csv-gz or parquet)")]
pub struct UnknownFormat(pub String);

impl FromStr for FileFormat {
    type Err = UnknownFormat;

    /// Parses a command-line name (`jsonl`, `jsonl-gz`, `csv`, `csv-gz`,
    /// `parquet`) or an extension (`jsonl.gz`, `csv.gz`, `ndjson`…).
    fn from_str(text: &str) -> Result<FileFormat, UnknownFormat> {
        let lower = text.to_ascii_lowercase();
        FileFormat::ALL
            .into_iter()
            .find(|format| format.name() == lower)
            .or_else(|| FileFormat::from_path(Path::new(&format!("x.{lower}"))))
            .ok_or_else(|| UnknownFormat(text.to_owned()))
    }
}

/// Tuning of the writers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Rows per Parquet row group (default 131 072).
    pub row_group_rows: usize,
    /// Most partition files a [`PartitionedWriter`] keeps open at once
    /// (default 8); the least recently written one is closed beyond that.
    pub max_open_partitions: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            row_group_rows: 128 * 1024,
            max_open_partitions: 8,
        }
    }
}

/// One field of a record as written.
enum Cell<'a> {
    /// A string field (quoted in JSON).
    Text(&'a str),
    /// The event time as RFC 3339 (quoted in JSON).
    Time(String),
    /// A decimal amount (a bare number in JSON).
    Money(String),
    /// Not written.
    Absent,
}

fn optional(text: &str) -> Cell<'_> {
    if text.is_empty() {
        Cell::Absent
    } else {
        Cell::Text(text)
    }
}

/// Whether `cost` is written for this record (see the module docs).
fn has_cost(record: &EventRecord) -> bool {
    record.cost_micros != 0 || matches!(record.kind.as_str(), "impression" | "click")
}

/// Whether `revenue` is written for this record (see the module docs).
fn has_revenue(record: &EventRecord) -> bool {
    record.revenue_micros != 0 || record.kind == "conversion"
}

fn money(written: bool, micros: i64) -> Cell<'static> {
    if written {
        Cell::Money(format_micros(micros))
    } else {
        Cell::Absent
    }
}

/// The cells of a record, in [`FIELDS`] order.
fn cells(record: &EventRecord) -> [Cell<'_>; 16] {
    [
        Cell::Text(&record.event_id),
        Cell::Text(&record.kind),
        Cell::Time(format_rfc3339(record.ts)),
        optional(&record.user_id),
        optional(&record.device_id),
        optional(&record.campaign_id),
        optional(&record.ad_id),
        optional(&record.publisher_id),
        optional(&record.ip),
        optional(&record.user_agent),
        optional(&record.country),
        optional(&record.device_type),
        money(has_cost(record), record.cost_micros),
        money(has_revenue(record), record.revenue_micros),
        optional(&record.conversion_type),
        optional(&record.order_id),
    ]
}

/// Writes records as JSON Lines: one object per line, keys in [`FIELDS`]
/// order, absent fields omitted.
pub struct JsonlWriter<W: Write> {
    out: W,
    line: Vec<u8>,
    rows: u64,
}

impl<W: Write> JsonlWriter<W> {
    /// A writer onto `out` (wrap files in a `BufWriter`).
    pub fn new(out: W) -> Self {
        JsonlWriter {
            out,
            line: Vec::with_capacity(512),
            rows: 0,
        }
    }

    /// Appends one record as one line.
    pub fn write(&mut self, record: &EventRecord) -> Result<(), WriteError> {
        self.line.clear();
        self.line.push(b'{');
        let mut first = true;
        for (name, cell) in FIELDS.iter().zip(cells(record)) {
            if matches!(cell, Cell::Absent) {
                continue;
            }
            if !first {
                self.line.push(b',');
            }
            first = false;
            self.line.push(b'"');
            self.line.extend_from_slice(name.as_bytes());
            self.line.extend_from_slice(b"\":");
            match cell {
                Cell::Text(text) => serde_json::to_writer(&mut self.line, text)?,
                Cell::Time(text) => {
                    self.line.push(b'"');
                    self.line.extend_from_slice(text.as_bytes());
                    self.line.push(b'"');
                }
                Cell::Money(number) => self.line.extend_from_slice(number.as_bytes()),
                Cell::Absent => {}
            }
        }
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The last record written, as JSON without the line break: one
    /// message payload (write to `std::io::sink()` to encode only).
    pub fn last_record(&self) -> &[u8] {
        self.line.strip_suffix(b"\n").unwrap_or(&self.line)
    }

    /// Flushes and returns the destination.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Replaces line breaks by spaces: the adflow CSV reader splits on lines.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

/// Writes records as CSV with a header line of [`FIELDS`]; an absent field
/// is an empty cell, line breaks inside a field become spaces.
pub struct CsvWriter<W: Write> {
    out: csv::Writer<W>,
    rows: u64,
}

impl<W: Write> CsvWriter<W> {
    /// A writer onto `out`; writes the header line immediately.
    pub fn new(out: W) -> Result<Self, WriteError> {
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        out.write_record(FIELDS)?;
        Ok(CsvWriter { out, rows: 0 })
    }

    /// Appends one record as one line.
    pub fn write(&mut self, record: &EventRecord) -> Result<(), WriteError> {
        let cells = cells(record).map(|cell| match cell {
            Cell::Text(text) => one_line(text),
            Cell::Time(text) | Cell::Money(text) => Cow::Owned(text),
            Cell::Absent => Cow::Borrowed(""),
        });
        self.out
            .write_record(cells.iter().map(|cell| cell.as_bytes()))?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far (the header not included).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and returns the destination.
    pub fn finish(self) -> Result<W, WriteError> {
        let mut out = self.out.into_inner().map_err(|error| error.into_error())?;
        out.flush()?;
        Ok(out)
    }
}

/// Rows buffered in the Arrow builders before they are handed to the
/// Parquet encoder: small enough to stay in cache, large enough to amortise
/// the per-batch work.
const PARQUET_BATCH_ROWS: usize = 8 * 1024;

/// The column builders of one batch, reused across batches.
struct ColumnBuilders {
    event_id: StringBuilder,
    kind: StringBuilder,
    ts: TimestampMillisecondBuilder,
    user_id: StringBuilder,
    device_id: StringBuilder,
    campaign_id: StringBuilder,
    ad_id: StringBuilder,
    publisher_id: StringBuilder,
    ip: StringBuilder,
    user_agent: StringBuilder,
    country: StringBuilder,
    device_type: StringBuilder,
    cost: Decimal128Builder,
    revenue: Decimal128Builder,
    conversion_type: StringBuilder,
    order_id: StringBuilder,
}

impl ColumnBuilders {
    fn new(rows: usize) -> Result<Self, ArrowError> {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        let money = || {
            Decimal128Builder::with_capacity(rows)
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
        };
        Ok(ColumnBuilders {
            event_id: text(16),
            kind: text(10),
            ts: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            user_id: text(10),
            device_id: text(18),
            campaign_id: text(8),
            ad_id: text(14),
            publisher_id: text(8),
            ip: text(15),
            user_agent: text(120),
            country: text(2),
            device_type: text(7),
            cost: money()?,
            revenue: money()?,
            conversion_type: text(8),
            order_id: text(4),
        })
    }

    fn append(&mut self, record: &EventRecord) {
        fn nullable(builder: &mut StringBuilder, text: &str) {
            if text.is_empty() {
                builder.append_null();
            } else {
                builder.append_value(text);
            }
        }
        self.event_id.append_value(&record.event_id);
        self.kind.append_value(&record.kind);
        self.ts.append_value(record.ts);
        nullable(&mut self.user_id, &record.user_id);
        nullable(&mut self.device_id, &record.device_id);
        nullable(&mut self.campaign_id, &record.campaign_id);
        nullable(&mut self.ad_id, &record.ad_id);
        nullable(&mut self.publisher_id, &record.publisher_id);
        nullable(&mut self.ip, &record.ip);
        nullable(&mut self.user_agent, &record.user_agent);
        nullable(&mut self.country, &record.country);
        nullable(&mut self.device_type, &record.device_type);
        self.cost
            .append_option(has_cost(record).then_some(i128::from(record.cost_micros)));
        self.revenue
            .append_option(has_revenue(record).then_some(i128::from(record.revenue_micros)));
        nullable(&mut self.conversion_type, &record.conversion_type);
        nullable(&mut self.order_id, &record.order_id);
    }

    /// Drains the builders into a batch of `schema`.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.device_id.finish()),
            Arc::new(self.campaign_id.finish()),
            Arc::new(self.ad_id.finish()),
            Arc::new(self.publisher_id.finish()),
            Arc::new(self.ip.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.device_type.finish()),
            Arc::new(self.cost.finish()),
            Arc::new(self.revenue.finish()),
            Arc::new(self.conversion_type.finish()),
            Arc::new(self.order_id.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// Columns whose values are (nearly) all distinct: a dictionary would only
/// cost time before falling back to plain encoding.
const HIGH_CARDINALITY_COLUMNS: [&str; 7] = [
    "event_id",
    "order_id",
    "user_id",
    "device_id",
    "ip",
    "ts",
    "revenue",
];

/// Columns whose min/max statistics are useless for pruning (random or
/// unsorted identifiers, long free text), so they are not computed.
const NO_STATISTICS_COLUMNS: [&str; 6] = [
    "event_id",
    "order_id",
    "user_id",
    "device_id",
    "ip",
    "user_agent",
];

/// The Parquet writer properties adflow uses: snappy, at most
/// `row_group_rows` rows per row group, dictionary encoding only for the
/// low-cardinality columns (kind, campaign, ad, publisher, user agent,
/// country, device type, cost, conversion type), `ts` delta-encoded (it is
/// nearly sorted), and no statistics on identifier columns. Chosen for
/// write speed: these settings let `adgen` generate and write over a
/// million rows per second on one core.
pub fn parquet_writer_properties(row_group_rows: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        .set_created_by(concat!("adflow ", env!("CARGO_PKG_VERSION")).to_owned());
    for column in HIGH_CARDINALITY_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in NO_STATISTICS_COLUMNS {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    builder.build()
}

/// Writes records to Parquet with schema exactly [`event_arrow_schema`]:
/// empty strings become nulls, money is `Decimal128(18, 6)` holding micros.
///
/// Rows are buffered in reused Arrow builders and handed to the encoder in
/// batches; call [`ParquetWriter::finish`] or the file has no footer.
pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    columns: ColumnBuilders,
    buffered: usize,
    batch_rows: usize,
    rows: u64,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer onto `out` with `row_group_rows` rows per row group.
    pub fn new(out: W, row_group_rows: usize) -> Result<Self, WriteError> {
        let schema = event_arrow_schema();
        let batch_rows = PARQUET_BATCH_ROWS.min(row_group_rows.max(1));
        let writer = ArrowWriter::try_new(
            out,
            Arc::clone(&schema),
            Some(parquet_writer_properties(row_group_rows)),
        )?;
        Ok(ParquetWriter {
            writer,
            schema,
            columns: ColumnBuilders::new(batch_rows)?,
            buffered: 0,
            batch_rows,
            rows: 0,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &EventRecord) -> Result<(), WriteError> {
        self.columns.append(record);
        self.buffered += 1;
        self.rows += 1;
        if self.buffered >= self.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), WriteError> {
        if self.buffered > 0 {
            // Fresh builders sized for a whole batch: finishing hands the
            // buffers to the batch, and regrowing empty ones would realloc.
            let fresh = ColumnBuilders::new(self.batch_rows)?;
            let batch = std::mem::replace(&mut self.columns, fresh).finish(&self.schema)?;
            self.buffered = 0;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the buffered rows and the footer, and returns the destination.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.flush_batch()?;
        // `into_inner` flushes the last row group and writes the footer.
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}

type Gz = GzEncoder<BufWriter<File>>;

enum AnyWriter {
    Jsonl(JsonlWriter<BufWriter<File>>),
    JsonlGz(JsonlWriter<Gz>),
    Csv(CsvWriter<BufWriter<File>>),
    CsvGz(CsvWriter<Gz>),
    Parquet(Box<ParquetWriter<BufWriter<File>>>),
}

/// Writes records to one file in a [`FileFormat`].
pub struct EventFileWriter {
    path: PathBuf,
    inner: AnyWriter,
}

impl EventFileWriter {
    /// Creates (or truncates) `path` and writes `format` into it.
    pub fn create(
        path: impl AsRef<Path>,
        format: FileFormat,
        options: &WriteOptions,
    ) -> Result<Self, WriteError> {
        let path = path.as_ref();
        let open = || -> Result<AnyWriter, WriteError> {
            let file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
            // Level 1: ~3.5x faster than the default level 6, files ~30% larger.
            let gzip = |file| GzEncoder::new(file, GzCompression::fast());
            Ok(match format {
                FileFormat::Jsonl => AnyWriter::Jsonl(JsonlWriter::new(file)),
                FileFormat::JsonlGz => AnyWriter::JsonlGz(JsonlWriter::new(gzip(file))),
                FileFormat::Csv => AnyWriter::Csv(CsvWriter::new(file)?),
                FileFormat::CsvGz => AnyWriter::CsvGz(CsvWriter::new(gzip(file))?),
                FileFormat::Parquet => {
                    AnyWriter::Parquet(Box::new(ParquetWriter::new(file, options.row_group_rows)?))
                }
            })
        };
        let inner = open().map_err(WriteError::at(path))?;
        Ok(EventFileWriter {
            path: path.to_path_buf(),
            inner,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &EventRecord) -> Result<(), WriteError> {
        let written = match &mut self.inner {
            AnyWriter::Jsonl(writer) => writer.write(record),
            AnyWriter::JsonlGz(writer) => writer.write(record),
            AnyWriter::Csv(writer) => writer.write(record),
            AnyWriter::CsvGz(writer) => writer.write(record),
            AnyWriter::Parquet(writer) => writer.write(record),
        };
        written.map_err(WriteError::at(&self.path))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        match &self.inner {
            AnyWriter::Jsonl(writer) => writer.rows(),
            AnyWriter::JsonlGz(writer) => writer.rows(),
            AnyWriter::Csv(writer) => writer.rows(),
            AnyWriter::CsvGz(writer) => writer.rows(),
            AnyWriter::Parquet(writer) => writer.rows(),
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Completes the file (gzip trailer, Parquet footer), syncs nothing, and
    /// returns the number of rows written.
    pub fn finish(self) -> Result<u64, WriteError> {
        let rows = self.rows();
        let finished = match self.inner {
            AnyWriter::Jsonl(writer) => writer.finish().map(drop),
            AnyWriter::Csv(writer) => writer.finish().map(drop),
            AnyWriter::Parquet(writer) => writer.finish().map(drop),
            AnyWriter::JsonlGz(writer) => writer.finish().and_then(finish_gzip),
            AnyWriter::CsvGz(writer) => writer.finish().and_then(finish_gzip),
        };
        finished.map_err(WriteError::at(&self.path))?;
        Ok(rows)
    }
}

fn finish_gzip(gzip: Gz) -> Result<(), WriteError> {
    gzip.finish()?.flush()?;
    Ok(())
}

/// Writes `records` to one file whose format is detected from its name.
///
/// Returns the number of rows written; an unrecognised extension is an
/// `InvalidInput` I/O error.
pub fn write_file<'a>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a EventRecord>,
    options: &WriteOptions,
) -> Result<u64, WriteError> {
    let path = path.as_ref();
    let format = FileFormat::from_path(path).ok_or_else(|| {
        WriteError::at(path)(WriteError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "unrecognised event file extension",
        )))
    })?;
    let mut writer = EventFileWriter::create(path, format, options)?;
    for record in records {
        writer.write(record)?;
    }
    writer.finish()
}

/// A file written by a [`PartitionedWriter`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WrittenFile {
    /// Where it is: `<dir>/dt=<date>/part-<part>.<extension>`.
    pub path: PathBuf,
    /// The event date of its rows, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Its part number within the date (from 0).
    pub part: u32,
    /// Rows in it.
    pub rows: u64,
}

struct OpenPartition {
    day: i64,
    date: String,
    part: u32,
    writer: EventFileWriter,
    last_write: u64,
}

/// Writes records under `<dir>/dt=YYYY-MM-DD/part-NNNNN.<ext>` by event date
/// (UTC), in the order they are given.
///
/// At most [`WriteOptions::max_open_partitions`] files are open at once;
/// opening one more closes the least recently written (in arrival order that
/// is the oldest date). A later record for a closed date goes to a new part
/// with the next part number, so no file is ever reopened or overwritten
/// within one writer. Existing files with the same names are truncated.
pub struct PartitionedWriter {
    dir: PathBuf,
    format: FileFormat,
    options: WriteOptions,
    open: Vec<OpenPartition>,
    next_part: BTreeMap<i64, u32>,
    written: Vec<WrittenFile>,
    writes: u64,
    last: usize,
}

impl PartitionedWriter {
    /// A writer into `dir` (created on the first record).
    pub fn new(dir: impl Into<PathBuf>, format: FileFormat, options: WriteOptions) -> Self {
        PartitionedWriter {
            dir: dir.into(),
            format,
            options,
            open: Vec::new(),
            next_part: BTreeMap::new(),
            written: Vec::new(),
            writes: 0,
            last: 0,
        }
    }

    /// The format written.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Rows written so far, over all files.
    pub fn rows(&self) -> u64 {
        self.writes
    }

    /// Appends one record to the file of its event date.
    pub fn write(&mut self, record: &EventRecord) -> Result<(), WriteError> {
        let day = record.ts.div_euclid(DAY_MS);
        let index = match self.open.get(self.last) {
            Some(partition) if partition.day == day => self.last,
            _ => match self.open.iter().position(|partition| partition.day == day) {
                Some(index) => index,
                None => self.open_partition(day, record.ts)?,
            },
        };
        self.last = index;
        self.writes += 1;
        let partition = &mut self.open[index];
        partition.last_write = self.writes;
        partition.writer.write(record)
    }

    fn open_partition(&mut self, day: i64, ts: Millis) -> Result<usize, WriteError> {
        while self.open.len() >= self.options.max_open_partitions.max(1) {
            let oldest = self
                .open
                .iter()
                .enumerate()
                .min_by_key(|(_, partition)| partition.last_write)
                .map(|(index, _)| index)
                .unwrap_or(0);
            let partition = self.open.swap_remove(oldest);
            self.close(partition)?;
        }
        let date = format_date(ts);
        let part = self.next_part.entry(day).or_insert(0);
        let number = *part;
        *part += 1;
        let partition_dir = self.dir.join(format!("dt={date}"));
        std::fs::create_dir_all(&partition_dir).map_err(|error| WriteError::File {
            path: partition_dir.clone(),
            source: Box::new(WriteError::Io(error)),
        })?;
        let path = partition_dir.join(format!("part-{number:05}.{}", self.format.extension()));
        let writer = EventFileWriter::create(path, self.format, &self.options)?;
        self.open.push(OpenPartition {
            day,
            date,
            part: number,
            writer,
            last_write: self.writes,
        });
        Ok(self.open.len() - 1)
    }

    fn close(&mut self, partition: OpenPartition) -> Result<(), WriteError> {
        let path = partition.writer.path().to_path_buf();
        let rows = partition.writer.finish()?;
        self.written.push(WrittenFile {
            path,
            date: partition.date,
            part: partition.part,
            rows,
        });
        Ok(())
    }

    /// Closes every file and returns all files written, sorted by path.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, WriteError> {
        for partition in std::mem::take(&mut self.open) {
            self.close(partition)?;
        }
        self.written.sort();
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Decimal128Array, StringArray, TimestampMillisecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::io::{BufRead, BufReader, Read};

    /// 2026-11-01T00:00:00Z.
    const NOV_1: Millis = 1_793_491_200_000;

    fn click() -> EventRecord {
        EventRecord {
            event_id: "e-1".into(),
            kind: "click".into(),
            ts: NOV_1 + 3_723_004,
            user_id: "u-7".into(),
            device_id: "d-1f".into(),
            campaign_id: "cmp-042".into(),
            ad_id: "cmp-042-ad-3".into(),
            publisher_id: "pub-001".into(),
            ip: "81.2.69.160".into(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) \"quoted\", comma\r\nnext".into(),
            country: "GB".into(),
            device_type: "desktop".into(),
            cost_micros: 1_250_001,
            ..EventRecord::default()
        }
    }

    fn conversion() -> EventRecord {
        EventRecord {
            event_id: "e-2".into(),
            kind: "conversion".into(),
            ts: NOV_1 + DAY_MS + 1,
            user_id: "u-7".into(),
            revenue_micros: 42_000_000,
            conversion_type: "purchase".into(),
            order_id: "o-9".into(),
            ..EventRecord::default()
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("adflow-write-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn formats_by_path_and_name() {
        for format in FileFormat::ALL {
            let path = PathBuf::from(format!("part-00000.{}", format.extension()));
            assert_eq!(FileFormat::from_path(&path), Some(format));
            assert_eq!(format.name().parse::<FileFormat>(), Ok(format));
            assert_eq!(format.extension().parse::<FileFormat>(), Ok(format));
        }
        assert_eq!(
            FileFormat::from_path(Path::new("x.JSON.GZ")),
            Some(FileFormat::JsonlGz)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("x.pq")),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_path(Path::new("x.txt")), None);
        assert_eq!(FileFormat::from_path(Path::new(".gz")), None);
        assert!("avro".parse::<FileFormat>().is_err());
    }

    #[test]
    fn jsonl_keys_values_and_omissions() {
        let mut writer = JsonlWriter::new(Vec::new());
        writer.write(&click()).expect("write");
        writer.write(&conversion()).expect("write");
        let bytes = writer.finish().expect("finish");
        let text = String::from_utf8(bytes).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);

        let first: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(lines[0]).expect("json");
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = FIELDS.to_vec();
        expected.retain(|key| !matches!(*key, "revenue" | "conversion_type" | "order_id"));
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted_keys, expected);
        assert_eq!(first["ts"], "2026-11-01T01:02:03.004Z");
        assert_eq!(first["user_agent"], click().user_agent.as_str());
        // Money is exact decimal text, not an f64 rendering.
        assert!(lines[0].ends_with(",\"cost\":1.250001}"), "{}", lines[0]);
        // Keys appear in FIELDS order.
        let positions: Vec<usize> = FIELDS
            .iter()
            .filter_map(|key| lines[0].find(&format!("\"{key}\":")))
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));

        assert_eq!(
            lines[1],
            "{\"event_id\":\"e-2\",\"kind\":\"conversion\",\"ts\":\"2026-11-02T00:00:00.001Z\",\
             \"user_id\":\"u-7\",\"revenue\":42,\"conversion_type\":\"purchase\",\"order_id\":\"o-9\"}"
        );
    }

    #[test]
    fn money_on_other_kinds_is_kept_when_non_zero() {
        let mut record = conversion();
        record.kind = "page_view".into();
        record.revenue_micros = 0;
        record.cost_micros = 5;
        let mut writer = JsonlWriter::new(Vec::new());
        writer.write(&record).expect("write");
        let text = String::from_utf8(writer.finish().expect("finish")).expect("utf8");
        assert!(text.contains("\"cost\":0.000005"));
        assert!(!text.contains("revenue"));
    }

    fn read_csv(reader: impl Read) -> (Vec<String>, Vec<Vec<String>>) {
        let mut csv = csv::ReaderBuilder::new().from_reader(reader);
        let header = csv
            .headers()
            .expect("header")
            .iter()
            .map(String::from)
            .collect();
        let rows = csv
            .records()
            .map(|row| row.expect("row").iter().map(String::from).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn csv_header_cells_and_no_line_breaks() {
        let mut writer = CsvWriter::new(Vec::new()).expect("writer");
        writer.write(&click()).expect("write");
        writer.write(&conversion()).expect("write");
        assert_eq!(writer.rows(), 2);
        let bytes = writer.finish().expect("finish");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert_eq!(text.lines().count(), 3, "one line per row:\n{text}");
        assert_eq!(text.lines().next(), Some(FIELDS.join(",").as_str()));

        let (header, rows) = read_csv(bytes.as_slice());
        assert_eq!(header, FIELDS);
        let column = |name: &str| FIELDS.iter().position(|field| *field == name).unwrap_or(99);
        assert_eq!(rows[0][column("ts")], "2026-11-01T01:02:03.004Z");
        assert_eq!(
            rows[0][column("user_agent")],
            "Mozilla/5.0 (X11; Linux x86_64) \"quoted\", comma  next"
        );
        assert_eq!(rows[0][column("cost")], "1.250001");
        assert_eq!(rows[0][column("revenue")], "");
        assert_eq!(rows[1][column("campaign_id")], "");
        assert_eq!(rows[1][column("cost")], "");
        assert_eq!(rows[1][column("revenue")], "42");
        assert_eq!(rows[1][column("order_id")], "o-9");
    }

    #[test]
    fn gzip_files_decompress_to_the_plain_text() {
        let dir = temp_dir("gzip");
        for (format, plain) in [
            (FileFormat::CsvGz, FileFormat::Csv),
            (FileFormat::JsonlGz, FileFormat::Jsonl),
        ] {
            let records = [click(), conversion()];
            let zipped = dir.join(format!("events.{}", format.extension()));
            let unzipped = dir.join(format!("events.{}", plain.extension()));
            assert_eq!(
                write_file(&zipped, &records, &WriteOptions::default()).expect("gz"),
                2
            );
            assert_eq!(
                write_file(&unzipped, &records, &WriteOptions::default()).expect("plain"),
                2
            );
            let mut text = String::new();
            flate2::read::GzDecoder::new(File::open(&zipped).expect("open"))
                .read_to_string(&mut text)
                .expect("gunzip");
            assert_eq!(text, std::fs::read_to_string(&unzipped).expect("read"));
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn read_parquet(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        reader.map(|batch| batch.expect("batch")).collect()
    }

    #[test]
    fn parquet_schema_values_and_row_groups() {
        let dir = temp_dir("parquet");
        let path = dir.join("events.parquet");
        let mut records = Vec::new();
        for i in 0..25 {
            let mut record = if i % 5 == 4 { conversion() } else { click() };
            record.event_id = format!("e-{i}");
            records.push(record);
        }
        let options = WriteOptions {
            row_group_rows: 10,
            ..WriteOptions::default()
        };
        assert_eq!(write_file(&path, &records, &options).expect("write"), 25);

        let metadata = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
            .expect("parquet")
            .metadata()
            .clone();
        assert_eq!(metadata.num_row_groups(), 3);

        let batches = read_parquet(&path);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 25);
        let batch =
            arrow::compute::concat_batches(&event_arrow_schema(), &batches).expect("concat");
        assert_eq!(batch.schema(), event_arrow_schema());
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<StringArray>())
                .cloned()
                .expect(name)
        };
        let decimal = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<Decimal128Array>())
                .cloned()
                .expect(name)
        };
        let ts = batch
            .column_by_name("ts")
            .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
            .cloned()
            .expect("ts");
        assert_eq!(text("event_id").value(7), "e-7");
        assert_eq!(text("user_agent").value(0), click().user_agent);
        assert_eq!(ts.value(0), click().ts);
        assert_eq!(decimal("cost").value(0), 1_250_001);
        assert!(decimal("revenue").is_null(0));
        assert!(text("campaign_id").is_null(4));
        assert!(decimal("cost").is_null(4));
        assert_eq!(decimal("revenue").value(4), 42_000_000);
        assert_eq!(text("order_id").value(4), "o-9");
        assert!(text("order_id").is_null(0));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn partitions_by_date_and_reopens_closed_dates_as_new_parts() {
        let dir = temp_dir("partitions");
        let options = WriteOptions {
            max_open_partitions: 2,
            ..WriteOptions::default()
        };
        let mut writer = PartitionedWriter::new(&dir, FileFormat::Jsonl, options);
        let mut day = |offset: i64, id: &str| {
            let mut record = click();
            record.ts = NOV_1 + offset * DAY_MS + 5;
            record.event_id = id.into();
            writer.write(&record).expect("write");
        };
        day(0, "a");
        day(1, "b");
        day(0, "c");
        day(2, "d"); // closes day 1, the least recently written
        day(1, "e"); // day 1 again: a new part
        day(-1, "f"); // before the epoch day of NOV_1; closes day 0
        assert_eq!(writer.rows(), 6);
        let files = writer.finish().expect("finish");
        let summary: Vec<(String, u32, u64)> = files
            .iter()
            .map(|file| (file.date.clone(), file.part, file.rows))
            .collect();
        assert_eq!(
            summary,
            [
                ("2026-10-31".to_owned(), 0, 1),
                ("2026-11-01".to_owned(), 0, 2),
                ("2026-11-02".to_owned(), 0, 1),
                ("2026-11-02".to_owned(), 1, 1),
                ("2026-11-03".to_owned(), 0, 1),
            ]
        );
        let ids = |path: &Path| -> Vec<String> {
            BufReader::new(File::open(path).expect("open"))
                .lines()
                .map(|line| {
                    let value: serde_json::Value =
                        serde_json::from_str(&line.expect("line")).expect("json");
                    value["event_id"].as_str().unwrap_or_default().to_owned()
                })
                .collect()
        };
        assert_eq!(ids(&files[1].path), ["a", "c"]);
        assert_eq!(ids(&files[3].path), ["e"]);
        assert_eq!(
            files[3].path,
            dir.join("dt=2026-11-02").join("part-00001.jsonl")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn partitioned_parquet_files_are_complete() {
        let dir = temp_dir("partitioned-parquet");
        let mut writer = PartitionedWriter::new(&dir, FileFormat::Parquet, WriteOptions::default());
        for i in 0..1_000 {
            let mut record = click();
            record.ts = NOV_1 + i * 600_000;
            record.event_id = format!("e-{i}");
            writer.write(&record).expect("write");
        }
        let files = writer.finish().expect("finish");
        assert_eq!(files.len(), 7);
        let mut total = 0;
        for file in &files {
            let rows: usize = read_parquet(&file.path)
                .iter()
                .map(RecordBatch::num_rows)
                .sum();
            assert_eq!(u64::try_from(rows).unwrap_or(0), file.rows);
            total += file.rows;
        }
        assert_eq!(total, 1_000);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
