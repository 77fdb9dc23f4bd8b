//! Reading one unit of a [`WorkPlan`] into events and dead letters.
//!
//! Readers are pulled in batches so the pipeline can interleave reading with
//! dataflow work. Memory is bounded whatever the input: a line is never
//! buffered beyond 64 KiB (the rest is skipped and the line dead-lettered),
//! Parquet is read a batch at a time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema};
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaData;

use super::files::{WorkPlan, WorkUnit};
use super::Progress;
use crate::dead_letter::{DeadLetter, Position, Reason};
use crate::event::{Event, Id};
use crate::hashing::PrehashedMap;
use crate::parsing::arrow::BatchFields;
use crate::parsing::csv::CsvHeader;
use crate::parsing::json::parse_json_text;
use crate::parsing::{EventValidator, Field, Rejection};
use crate::schema::MAX_RECORD_BYTES;
use crate::write::FileFormat;

/// What reading one record yields.
pub type Parsed = Result<Event, DeadLetter>;

/// Rows per Arrow batch when reading Parquet.
const PARQUET_BATCH_ROWS: usize = 8192;

/// Reads the units of a [`WorkPlan`] that one worker owns, one after another.
pub struct FileSource {
    plan: Arc<WorkPlan>,
    units: std::vec::IntoIter<(WorkUnit, u64)>,
    current: Option<UnitReader>,
    validator: EventValidator,
    progress: Arc<Progress>,
    /// Names the units read so far saw first, not yet taken, and every
    /// name handed on: each unit's validator starts afresh.
    new_names: Vec<(Id, String)>,
    named: PrehashedMap<Id, ()>,
}

impl FileSource {
    /// The share of `plan` that worker `index` of `peers` reads
    /// ([`WorkPlan::assignment`]), each unit validated by a fresh copy of
    /// `validator`.
    pub fn new(
        plan: Arc<WorkPlan>,
        index: usize,
        peers: usize,
        validator: EventValidator,
        progress: Arc<Progress>,
    ) -> FileSource {
        let units = plan.assignment(index, peers).into_iter();
        FileSource {
            plan,
            units,
            current: None,
            validator,
            progress,
            new_names: Vec::new(),
            named: PrehashedMap::default(),
        }
    }
}

impl super::RecordSource for FileSource {
    fn read_batch(&mut self, out: &mut Vec<Parsed>, max: usize) -> bool {
        let reader = match &mut self.current {
            Some(reader) => reader,
            None => match self.units.next() {
                Some((unit, weight)) => self.current.insert(UnitReader::open(
                    &self.plan,
                    unit,
                    weight,
                    self.validator.clone(),
                    Arc::clone(&self.progress),
                )),
                None => return false,
            },
        };
        let more = reader.read_batch(out, max);
        let mut seen = Vec::new();
        reader.validator.take_new_names(&mut seen);
        let named = &mut self.named;
        self.new_names.extend(
            seen.into_iter()
                .filter(|(id, _)| named.insert(*id, ()).is_none()),
        );
        if !more {
            self.current = None;
            return self.units.len() > 0;
        }
        true
    }

    fn take_new_names(&mut self, out: &mut Vec<(Id, String)>) {
        out.append(&mut self.new_names);
    }
}

/// Reads one work unit.
pub struct UnitReader {
    source: String,
    validator: EventValidator,
    progress: Arc<Progress>,
    state: State,
}

enum State {
    Lines {
        lines: LineReader<Box<dyn BufRead + Send>>,
        buffer: Vec<u8>,
        csv: Option<CsvState>,
    },
    Parquet {
        batches: ParquetRecordBatchReader,
        next_row: u64,
        bytes: u64,
    },
    /// The unit failed to open; its dead letter is emitted once.
    Failed(Option<DeadLetter>),
    Done,
}

struct CsvState {
    header: Option<CsvHeader>,
}

impl UnitReader {
    /// Opens a unit; failures surface as a dead letter from the first batch.
    pub fn open(
        plan: &WorkPlan,
        unit: WorkUnit,
        weight: u64,
        validator: EventValidator,
        progress: Arc<Progress>,
    ) -> UnitReader {
        let (file_index, row_group) = match unit {
            WorkUnit::File { file } => (file, None),
            WorkUnit::RowGroup {
                file,
                row_group,
                first_row,
            } => (file, Some((row_group, first_row))),
        };
        let Some(input) = plan.files.get(file_index) else {
            return UnitReader::failed("?", "unit refers to no file".into(), progress, validator);
        };
        let source = input.path.display().to_string();
        let opened = match input.format {
            FileFormat::Parquet => open_parquet(&input.path, row_group, weight),
            FileFormat::Jsonl | FileFormat::JsonlGz => {
                open_lines(&input.path, input.format.is_gzip(), None, &progress)
            }
            FileFormat::Csv | FileFormat::CsvGz => open_lines(
                &input.path,
                input.format.is_gzip(),
                Some(CsvState { header: None }),
                &progress,
            ),
        };
        match opened {
            Ok(state) => UnitReader {
                source,
                validator,
                progress,
                state,
            },
            Err(message) => UnitReader::failed(&source, message, progress, validator),
        }
    }

    fn failed(
        source: &str,
        message: String,
        progress: Arc<Progress>,
        validator: EventValidator,
    ) -> UnitReader {
        let dead = DeadLetter::new(
            source,
            Position::Source,
            Reason::UnreadableSource,
            message,
            b"",
        );
        UnitReader {
            source: source.to_owned(),
            validator,
            progress,
            state: State::Failed(Some(dead)),
        }
    }

    /// Appends up to about `max` records to `out`; returns `false` once the
    /// unit is exhausted (the last records may come with that call).
    pub fn read_batch(&mut self, out: &mut Vec<Parsed>, max: usize) -> bool {
        let before = out.len();
        let more = self.fill(out, max);
        self.progress
            .add_records(u64::try_from(out.len() - before).unwrap_or(0));
        more
    }

    fn fill(&mut self, out: &mut Vec<Parsed>, max: usize) -> bool {
        match &mut self.state {
            State::Done => false,
            State::Failed(dead) => {
                out.extend(dead.take().map(Err));
                self.state = State::Done;
                false
            }
            State::Lines { lines, buffer, csv } => {
                let target = out.len() + max;
                while out.len() < target {
                    buffer.clear();
                    let line = match lines.next_line(buffer) {
                        Ok(Some(line)) => line,
                        Ok(None) => {
                            self.state = State::Done;
                            return false;
                        }
                        Err(error) => {
                            out.push(Err(DeadLetter::new(
                                &self.source,
                                Position::Line(lines.line + 1),
                                Reason::UnreadableSource,
                                error.to_string(),
                                b"",
                            )));
                            self.state = State::Done;
                            return false;
                        }
                    };
                    let position = Position::Line(line.number);
                    let parsed = match (line.truncated, std::str::from_utf8(buffer)) {
                        (true, _) => Err(Rejection::message(
                            Reason::RecordTooLarge,
                            format!("{} bytes", line.length),
                        )),
                        (false, Err(error)) => {
                            Err(Rejection::message(Reason::InvalidUtf8, error.to_string()))
                        }
                        (false, Ok(text)) => match csv {
                            None => parse_json_text(text, &mut self.validator),
                            Some(CsvState {
                                header: header @ None,
                            }) => match CsvHeader::parse(text) {
                                Ok(parsed) => {
                                    *header = Some(parsed);
                                    continue;
                                }
                                Err(rejection) => Err(Rejection::message(
                                    rejection.reason,
                                    format!("bad header: {}", rejection.detail),
                                )),
                            },
                            Some(CsvState {
                                header: Some(header),
                            }) => {
                                let mut cells = Vec::new();
                                header
                                    .parse_record(text, &mut cells)
                                    .and_then(|raw| self.validator.validate(&raw))
                            }
                        },
                    };
                    out.push(parsed.map_err(|rejection| {
                        DeadLetter::new(
                            &self.source,
                            position,
                            rejection.reason,
                            rejection.detail,
                            buffer,
                        )
                    }));
                }
                true
            }
            State::Parquet {
                batches,
                next_row,
                bytes,
            } => match next_batch(batches) {
                None => {
                    self.progress.add_bytes(*bytes);
                    self.state = State::Done;
                    false
                }
                Some(Err(error)) => {
                    out.push(Err(DeadLetter::new(
                        &self.source,
                        Position::Row(*next_row),
                        Reason::UnreadableSource,
                        error,
                        b"",
                    )));
                    self.progress.add_bytes(*bytes);
                    self.state = State::Done;
                    false
                }
                Some(Ok(batch)) => {
                    let fields = BatchFields::prepare(&batch);
                    for row in 0..fields.num_rows() {
                        let position = Position::Row(*next_row);
                        *next_row += 1;
                        let parsed = fields
                            .row(row)
                            .and_then(|raw| self.validator.validate(&raw));
                        out.push(parsed.map_err(|rejection| DeadLetter {
                            source: self.source.clone(),
                            position,
                            reason: rejection.reason,
                            detail: rejection.detail.into_owned(),
                            excerpt: fields.row_excerpt(row),
                        }));
                    }
                    true
                }
            },
        }
    }
}

/// The next Arrow batch. The parquet decoder has panicked on corrupt pages
/// in the past; a panic here becomes an error (then a dead letter), never a
/// crashed worker.
fn next_batch(
    batches: &mut ParquetRecordBatchReader,
) -> Option<Result<arrow::array::RecordBatch, String>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next())) {
        Ok(next) => next.map(|batch| batch.map_err(|error| error.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            Some(Err(format!("parquet decoder panicked: {message}")))
        }
    }
}

fn open_lines(
    path: &std::path::Path,
    gzip: bool,
    csv: Option<CsvState>,
    progress: &Arc<Progress>,
) -> Result<State, String> {
    let file = File::open(path).map_err(|error| error.to_string())?;
    let counted = CountingReader {
        inner: file,
        progress: Arc::clone(progress),
    };
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(BufReader::new(counted)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, counted))
    };
    Ok(State::Lines {
        lines: LineReader::new(reader),
        buffer: Vec::with_capacity(1024),
        csv,
    })
}

fn open_parquet(
    path: &std::path::Path,
    row_group: Option<(usize, u64)>,
    bytes: u64,
) -> Result<State, String> {
    let file = File::open(path).map_err(|error| error.to_string())?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|error| error.to_string())?;
    let groups: Vec<usize> = match row_group {
        Some((group, _)) => vec![group],
        None => (0..metadata.metadata().num_row_groups()).collect(),
    };
    let metadata = match dictionary_schema(metadata.metadata(), metadata.schema(), &groups) {
        Some(schema) => ArrowReaderMetadata::try_new(
            metadata.metadata().clone(),
            ArrowReaderOptions::new().with_schema(schema),
        )
        .map_err(|error| error.to_string())?,
        None => metadata,
    };
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
        .with_batch_size(PARQUET_BATCH_ROWS);
    let (builder, next_row) = match row_group {
        Some((group, first_row)) => (builder.with_row_groups(vec![group]), first_row),
        None => (builder, 0),
    };
    let batches = builder.build().map_err(|error| error.to_string())?;
    Ok(State::Parquet {
        batches,
        next_row,
        bytes,
    })
}

/// `schema` with the text columns of our fields that are dictionary-encoded
/// in every one of `groups` read as Arrow dictionaries, which keeps the
/// decoder from copying each row's string out of the dictionary and lets
/// parsing hash each distinct value once per batch; `None` if there is no
/// such column. (A column chunk can fall back to plain pages when its
/// dictionary grows too large; the decoder handles that either way.)
fn dictionary_schema(
    metadata: &ParquetMetaData,
    schema: &Schema,
    groups: &[usize],
) -> Option<Arc<Schema>> {
    let columns = metadata.file_metadata().schema_descr().columns();
    let encoded = |name: &str| {
        let Some(column) = columns
            .iter()
            .position(|column| column.path().parts() == [name])
        else {
            return false;
        };
        !groups.is_empty()
            && groups.iter().all(|group| {
                metadata
                    .row_groups()
                    .get(*group)
                    .and_then(|group| group.columns().get(column))
                    .is_some_and(|chunk| chunk.dictionary_page_offset().is_some())
            })
    };
    let mut hinted = false;
    let fields: Vec<ArrowField> = schema
        .fields()
        .iter()
        .map(|field| {
            let ours = Field::from_name(field.name()).is_some();
            if ours && *field.data_type() == DataType::Utf8 && encoded(field.name()) {
                hinted = true;
                let dictionary =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                field.as_ref().clone().with_data_type(dictionary)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    hinted.then(|| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// Counts bytes read from disk into the shared progress.
struct CountingReader<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress.add_bytes(u64::try_from(read).unwrap_or(0));
        Ok(read)
    }
}

/// A line just read.
#[derive(Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// 1-based line number.
    pub number: u64,
    /// Full length in bytes, without the line break.
    pub length: usize,
    /// Whether the line was longer than 64 KiB and only its start was kept.
    pub truncated: bool,
}

/// Splits a byte stream into lines, keeping at most 64 KiB of each.
pub struct LineReader<R> {
    inner: R,
    line: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R) -> LineReader<R> {
        LineReader { inner, line: 0 }
    }

    /// Reads the next line into `buffer` (which the caller cleared), without
    /// its `\n`. `None` at end of input.
    pub fn next_line(&mut self, buffer: &mut Vec<u8>) -> io::Result<Option<LineInfo>> {
        let mut length = 0usize;
        let mut started = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if available.is_empty() {
                if !started {
                    return Ok(None);
                }
                break;
            }
            started = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = newline.unwrap_or(available.len());
            let room = (MAX_RECORD_BYTES + 1).saturating_sub(buffer.len());
            buffer.extend_from_slice(&available[..chunk.min(room)]);
            length += chunk;
            self.inner.consume(chunk + usize::from(newline.is_some()));
            if newline.is_some() {
                break;
            }
        }
        self.line += 1;
        let truncated = length > MAX_RECORD_BYTES;
        if truncated {
            buffer.truncate(MAX_RECORD_BYTES);
        }
        Ok(Some(LineInfo {
            number: self.line,
            length,
            truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;

    use super::*;

    #[test]
    fn dictionary_encoded_text_columns_of_ours_are_read_as_dictionaries() {
        let text = |name: &str| ArrowField::new(name, DataType::Utf8, true);
        let schema = Arc::new(Schema::new(vec![
            text("campaign_id"),
            text("event_id"),
            text("note"),
        ]));
        let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as _;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                column((0..100).map(|n| format!("c{}", n % 3)).collect()),
                column((0..100).map(|n| format!("e{n}")).collect()),
                column((0..100).map(|n| format!("n{}", n % 2)).collect()),
            ],
        )
        .expect("valid batch");
        // Dictionaries for every column but `event_id`, as adgen writes.
        let properties = WriterProperties::builder()
            .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
            .build();
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let mut writer = ArrowWriter::try_new(
            file.reopen().expect("reopen"),
            Arc::clone(&schema),
            Some(properties),
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");

        let types = |path| -> Vec<DataType> {
            let Ok(State::Parquet { mut batches, .. }) = open_parquet(path, Some((0, 0)), 0) else {
                panic!("the file opens");
            };
            let batch = batches.next().expect("a batch").expect("it decodes");
            batch
                .schema()
                .fields()
                .iter()
                .map(|field| field.data_type().clone())
                .collect()
        };
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        // `note` is dictionary-encoded too, but no field of ours.
        assert_eq!(
            types(file.path()),
            vec![dictionary, DataType::Utf8, DataType::Utf8]
        );
    }

    fn lines(input: &[u8]) -> Vec<(u64, usize, bool, usize)> {
        let mut reader = LineReader::new(BufReader::with_capacity(7, input));
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        while let Ok(Some(info)) = reader.next_line(&mut buffer) {
            out.push((info.number, info.length, info.truncated, buffer.len()));
            buffer.clear();
        }
        out
    }

    #[test]
    fn splits_lines_and_caps_long_ones() {
        assert_eq!(
            lines(b"ab\n\ncd"),
            vec![(1, 2, false, 2), (2, 0, false, 0), (3, 2, false, 2)]
        );
        assert_eq!(lines(b"ab\n"), vec![(1, 2, false, 2)]);
        let mut long = vec![b'x'; MAX_RECORD_BYTES + 10];
        long.extend_from_slice(b"\nok");
        assert_eq!(
            lines(&long),
            vec![
                (1, MAX_RECORD_BYTES + 10, true, MAX_RECORD_BYTES),
                (2, 2, false, 2)
            ]
        );
    }
}
