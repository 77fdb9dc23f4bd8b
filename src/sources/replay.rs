//! Replaying a log in event-time order: every record of a [`WorkPlan`] is
//! read once, sorted by event time, and released to the workers as fast as
//! possible or at a chosen speed-up of real time.
//!
//! Workers take the sorted records in turn (worker `i` of `n` takes records
//! `i`, `i + n`, …), so all of them move through event time together and the
//! pipeline's frontier advances as it would on a live stream.
//!
//! ```
//! use std::sync::Arc;
//! use adflow::parsing::EventValidator;
//! use adflow::sources::replay::Replay;
//! use adflow::sources::{discover, Progress, RecordSource, WorkPlan};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("events.jsonl");
//! std::fs::write(&path, concat!(
//!     r#"{"event_id":"late","kind":"click","ts":"2026-11-01T10:00:09Z","user_id":"u"}"#, "\n",
//!     r#"{"event_id":"early","kind":"click","ts":"2026-11-01T10:00:01Z","user_id":"u"}"#, "\n",
//! ))?;
//! let plan = WorkPlan::new(discover(&[path.to_string_lossy()])?);
//! let replay = Replay::load(&plan, &EventValidator::default(), Arc::new(Progress::default()));
//! assert_eq!(replay.len(), 2);
//! let mut source = replay.source(0, 1);
//! let mut out = Vec::new();
//! while source.read_batch(&mut out, 10) {}
//! let order: Vec<_> = out.iter().map(|r| r.as_ref().map(|e| e.ts)).collect();
//! assert!(order[0] < order[1]);
//! # Ok(()) }
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Parsed, Progress, RecordSource, UnitReader, WorkPlan};
use crate::parsing::EventValidator;
use crate::timestamp::Millis;

/// Records read per call while loading.
const LOAD_BATCH: usize = 8192;

/// The longest a source sleeps before handing control back to its worker.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// A whole log in memory, in event-time order; see the module docs.
#[derive(Clone, Debug)]
pub struct Replay {
    records: Arc<Vec<Parsed>>,
    first_ts: Millis,
    speedup: Option<f64>,
    started: Arc<OnceLock<Instant>>,
    progress: Arc<Progress>,
}

impl Replay {
    /// Reads every unit of `plan` (each validated by a copy of `validator`)
    /// and sorts the records by event time; records of equal time keep
    /// their order in the plan. Dead letters come first, so that they are
    /// emitted before any event. `progress` counts records as they are
    /// released, not as they are loaded.
    pub fn load(plan: &WorkPlan, validator: &EventValidator, progress: Arc<Progress>) -> Replay {
        let loading = Arc::new(Progress::default());
        let mut records = Vec::new();
        for (unit, weight) in plan.assignment(0, 1) {
            let mut reader =
                UnitReader::open(plan, unit, weight, validator.clone(), Arc::clone(&loading));
            while reader.read_batch(&mut records, LOAD_BATCH) {}
        }
        records.sort_by_key(|record| record.as_ref().map_or(Millis::MIN, |event| event.ts));
        let first_ts = records
            .iter()
            .find_map(|record| record.as_ref().ok().map(|event| event.ts))
            .unwrap_or(0);
        Replay {
            records: Arc::new(records),
            first_ts,
            speedup: None,
            started: Arc::default(),
            progress,
        }
    }

    /// Releases an event at `ts` once `(ts - first event time) / speedup` of
    /// wall time has passed since the first worker started reading; `None`
    /// (the default) releases everything as fast as the pipeline takes it.
    pub fn speedup(mut self, speedup: Option<f64>) -> Replay {
        self.speedup = speedup.filter(|factor| factor.is_finite() && *factor > 0.0);
        self
    }

    /// Records in the log.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The time of the earliest event, from which a speed-up is measured.
    pub fn first_ts(&self) -> Millis {
        self.first_ts
    }

    /// The records worker `index` of `peers` releases.
    pub fn source(&self, index: usize, peers: usize) -> ReplaySource {
        ReplaySource {
            replay: self.clone(),
            next: index,
            stride: peers.max(1),
        }
    }
}

/// One worker's share of a [`Replay`].
pub struct ReplaySource {
    replay: Replay,
    next: usize,
    stride: usize,
}

impl ReplaySource {
    /// When the record at `position` is due, or `None` if it is due now.
    fn wait_for(&self, position: usize) -> Option<Duration> {
        let speedup = self.replay.speedup?;
        let ts = self.replay.records.get(position)?.as_ref().ok()?.ts;
        let offset = (ts - self.replay.first_ts).max(0) as f64 / speedup;
        let due = Duration::from_secs_f64(offset / 1_000.0);
        let started = *self.replay.started.get_or_init(Instant::now);
        due.checked_sub(started.elapsed())
            .filter(|wait| !wait.is_zero())
    }
}

impl RecordSource for ReplaySource {
    fn read_batch(&mut self, out: &mut Vec<Parsed>, max: usize) -> bool {
        let records = &self.replay.records;
        let mut taken = 0u64;
        while taken < max as u64 && self.next < records.len() {
            if let Some(wait) = self.wait_for(self.next) {
                if taken == 0 {
                    std::thread::sleep(wait.min(MAX_WAIT));
                }
                break;
            }
            out.push(records[self.next].clone());
            self.next += self.stride;
            taken += 1;
        }
        self.replay.progress.add_records(taken);
        self.next < records.len()
    }

    /// None: every process parsed the whole log, and remembered its names,
    /// before the run.
    fn take_new_names(&mut self, _out: &mut Vec<(crate::event::Id, String)>) {}
}
