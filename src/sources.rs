//! Sources: where records come from, separate from how they are encoded.
//!
//! [`files`] discovers JSONL, CSV and Parquet files (paths, directories,
//! globs) and plans how to spread them over timely workers; [`reader`]
//! turns one unit of that plan into events and dead letters, using the
//! format-specific extractors of [`crate::parsing`]. A [`RecordSource`] is
//! what the pipeline pulls each worker's records from: [`FileSource`] reads
//! the worker's share of a plan, [`replay::ReplaySource`] releases a log in
//! event-time order, and the Kafka consumer is a third.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod files;
pub mod reader;
pub mod replay;

pub use crate::write::FileFormat;
pub use files::{discover, InputFile, SourceError, WorkPlan, WorkUnit};
pub use reader::{FileSource, Parsed, UnitReader};

/// One worker's records, pulled a batch at a time by the pipeline.
pub trait RecordSource: Send {
    /// Appends up to about `max` records to `out`; returns `false` once the
    /// source is exhausted (the last records may come with that call). A
    /// source with nothing ready yet may return no records and `true`.
    fn read_batch(&mut self, out: &mut Vec<Parsed>, max: usize) -> bool;

    /// Appends the campaign and ad names first seen in the records read
    /// since the last call ([`crate::parsing::EventValidator::take_new_names`]),
    /// which the pipeline broadcasts to a cluster's other processes before
    /// those records' events. A source that validates records must hand
    /// on its validator's names here. Appending none is right only for a
    /// source whose events every process has parsed before the run (as
    /// [`replay::ReplaySource`]'s are), or in a pipeline of one process;
    /// otherwise a row may show a campaign by name in one process and by
    /// hash in another. There is no default, so that every source says
    /// which it is.
    fn take_new_names(&mut self, out: &mut Vec<(crate::event::Id, String)>);
}

/// Shared counters that a progress display can poll while a pipeline runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of input to read in all (on disk).
    pub bytes_total: AtomicU64,
    /// Bytes of input read so far (on disk, so compressed for gzip).
    pub bytes_done: AtomicU64,
    /// Records (events and dead letters) read so far.
    pub records: AtomicU64,
}

impl Progress {
    /// Adds read bytes.
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds read records.
    pub fn add_records(&self, records: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
    }

    /// (bytes done, bytes total, records) right now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.bytes_done.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
        )
    }
}
