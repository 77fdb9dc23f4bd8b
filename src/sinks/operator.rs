//! The sink operator: [`SinkExt`] on `VecCollection`, and the [`SinkHandle`]
//! through which it reports.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use differential_dataflow::collection::VecCollection;
use differential_dataflow::consolidation::consolidate;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::ProbeHandle;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use timely::scheduling::SyncActivator;

use super::output::Output;
use super::{limit_length, Column, OutputRecord, SinkError, SinkMode, SinkSpec, Value};

/// What a sink did: filled in by the writing worker as it goes, final once
/// [`SinkReport::finished`].
#[derive(Clone, Debug, Default)]
pub struct SinkReport {
    /// The sink's name ([`SinkSpec::name`]).
    pub name: String,
    /// Rows written so far (table sinks count every row, shown or not).
    pub rows: u64,
    /// The file written, once complete; `None` for stdout, before the end,
    /// or if writing failed.
    pub path: Option<PathBuf>,
    /// Everything that went wrong, in order.
    pub errors: Vec<SinkError>,
    /// Every sink operator attached to the handle has seen its input end.
    pub finished: bool,
}

impl SinkReport {
    /// Finished without errors.
    pub fn is_ok(&self) -> bool {
        self.finished && self.errors.is_empty()
    }
}

#[derive(Debug, Default)]
struct State {
    report: SinkReport,
    /// Sink operators attached to this handle, and how many have closed.
    attached: usize,
    closed: usize,
}

/// A shared view of one sink's progress: rows, path, errors.
///
/// Cheap to clone and `Send + Sync`, so it can be returned from a timely
/// worker closure or created outside `timely::execute` and passed to every
/// worker's [`SinkExt::sink_core`]. Only worker 0 writes, so only worker 0's
/// sink records rows, paths and errors; the other workers' sinks only mark
/// themselves closed.
#[derive(Clone, Debug, Default)]
pub struct SinkHandle {
    state: Arc<Mutex<State>>,
}

impl SinkHandle {
    /// A handle for a sink named `name`, with nothing attached yet.
    pub fn new(name: impl Into<String>) -> SinkHandle {
        let handle = SinkHandle::default();
        handle.lock().report.name = name.into();
        handle
    }

    /// A copy of the current report.
    pub fn report(&self) -> SinkReport {
        self.lock().report.clone()
    }

    /// Whether every sink attached to this handle has finished.
    pub fn is_finished(&self) -> bool {
        self.lock().report.finished
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a usable report.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn attach(&self) {
        let mut state = self.lock();
        state.attached += 1;
        state.report.finished = false;
    }

    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed += 1;
        state.report.finished = state.closed >= state.attached;
    }

    pub(crate) fn record(&self, error: SinkError) {
        self.lock().report.errors.push(error);
    }

    pub(crate) fn set_rows(&self, rows: u64) {
        self.lock().report.rows = rows;
    }

    /// Counts `rows` more, for sinks that write from several workers.
    pub(crate) fn add_rows(&self, rows: u64) {
        self.lock().report.rows += rows;
    }

    fn set_path(&self, path: Option<PathBuf>) {
        self.lock().report.path = path;
    }
}

/// Writes a collection's output as a [`SinkSpec`] says.
///
/// Every update is exchanged to worker 0, which alone writes
/// `dir/<name>.<ext>` (or stdout); other workers write nothing. The sink
/// attaches `probe` after itself: once the probe has passed a time `t`,
/// every update at a time before `t` has been written and flushed
/// ([`SinkMode::Changelog`]) or accumulated ([`SinkMode::Snapshot`]); once the
/// probe is done, the output is complete. Errors are recorded in the
/// returned [`SinkHandle`], never raised.
///
/// A changelog's `time` column is the dataflow time as `u64`, hence the
/// `Into<u64>` bound; the pipeline's time is `u64`.
pub trait SinkExt<'scope, T: Timestamp, D> {
    /// Sinks the collection with the operator name `Sink: <spec.name>`.
    fn sink(self, spec: SinkSpec, probe: &ProbeHandle<T>) -> SinkHandle;
    /// Sinks the collection with the operator name `name`.
    fn sink_named(self, name: &str, spec: SinkSpec, probe: &ProbeHandle<T>) -> SinkHandle;
    /// Sinks the collection, reporting into `handle` (which may be shared by
    /// every worker's sink of the same collection); returns `handle`.
    fn sink_core(
        self,
        name: &str,
        spec: SinkSpec,
        probe: &ProbeHandle<T>,
        handle: SinkHandle,
    ) -> SinkHandle;
}

impl<'scope, T, D> SinkExt<'scope, T, D> for VecCollection<'scope, T, D, isize>
where
    T: Timestamp + TotalOrder + Into<u64>,
    D: OutputRecord,
{
    fn sink(self, spec: SinkSpec, probe: &ProbeHandle<T>) -> SinkHandle {
        let name = format!("Sink: {}", spec.name);
        self.sink_named(&name, spec, probe)
    }

    fn sink_named(self, name: &str, spec: SinkSpec, probe: &ProbeHandle<T>) -> SinkHandle {
        let handle = SinkHandle::new(spec.name.clone());
        self.sink_core(name, spec, probe, handle)
    }

    fn sink_core(
        self,
        name: &str,
        spec: SinkSpec,
        probe: &ProbeHandle<T>,
        handle: SinkHandle,
    ) -> SinkHandle {
        handle.attach();
        let writes = self.scope().index() == 0;
        let mut core = SinkCore::<T, D>::new(spec, writes, handle.clone());
        let to_worker_zero = Exchange::new(|_update: &(D, T, isize)| 0u64);
        let scope = self.scope();
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                to_worker_zero,
                name,
                move |capability, info| {
                    let mut held: Option<Capability<T>> = Some(capability);
                    let activator = scope.worker().sync_activator_for(info.address.to_vec());
                    move |(input, frontier), _output| {
                        input.for_each(|_stamp, updates| core.absorb(updates));
                        match frontier.frontier().as_option() {
                            Some(time) => {
                                core.advance(Some(time));
                                // Hold the output at the input frontier so that the probe
                                // passes a time only after this operator has handled it.
                                if let Some(held) = held.as_mut() {
                                    if held.time().less_equal(time) {
                                        held.downgrade(time);
                                    }
                                }
                            }
                            None => {
                                core.close(&activator);
                                // The probe is done only once the output is complete.
                                if core.written() {
                                    held = None;
                                }
                            }
                        }
                    }
                },
            )
            .probe_with(probe);
        handle
    }
}

/// Sorts consolidated updates into the order sinks write them
/// ([`super::compare_rows`] of their rendered rows): a record's `Ord`
/// follows its ids' hashes, its rendered columns the names a reader knows.
fn sort_as_written<D: OutputRecord>(updates: &mut Vec<(D, isize)>) {
    super::sort_rows_by(updates, |(record, _)| Cow::Owned(record.values()));
}

/// Fewest consolidated snapshot entries assumed when deciding to
/// consolidate, so that small inputs are not sorted on every batch.
const MIN_SETTLED: usize = 1 << 12;

/// The state of one worker's sink operator.
struct SinkCore<T, D> {
    spec: SinkSpec,
    columns: Vec<Column>,
    /// Whether this worker writes (worker 0).
    writes: bool,
    handle: SinkHandle,
    /// Snapshot mode: the updates received, consolidated (sorted by record,
    /// one entry per record, no zeros) up to `settled`. Appending and
    /// consolidating now and then costs far less than a map update per
    /// record, and the output needs them sorted anyway.
    contents: Vec<(D, isize)>,
    settled: usize,
    /// Changelog mode: updates by time, not yet final.
    changes: BTreeMap<T, Vec<(D, isize)>>,
    /// Changelog mode: the open output.
    output: Option<Output>,
    /// Snapshot mode, once the input has ended: the thread writing the
    /// file.
    writer: Option<Writer>,
    /// An output error ended writing; later updates are dropped.
    failed: bool,
    closed: bool,
}

impl<T, D> SinkCore<T, D>
where
    T: Timestamp + TotalOrder + Into<u64>,
    D: OutputRecord,
{
    fn new(spec: SinkSpec, writes: bool, handle: SinkHandle) -> Self {
        SinkCore {
            columns: spec.columns::<D>(),
            spec,
            writes,
            handle,
            contents: Vec::new(),
            settled: 0,
            changes: BTreeMap::new(),
            output: None,
            writer: None,
            failed: false,
            closed: false,
        }
    }

    fn absorb(&mut self, updates: &mut Vec<(D, T, isize)>) {
        if self.failed {
            updates.clear();
            return;
        }
        match self.spec.mode {
            SinkMode::Snapshot => {
                self.contents.extend(
                    updates
                        .drain(..)
                        .map(|(record, _time, diff)| (record, diff)),
                );
                // Consolidating once the unconsolidated tail is as long as
                // the consolidated head keeps memory within about twice the
                // contents and sorts each update a bounded number of times.
                if self.contents.len() >= 2 * self.settled.max(MIN_SETTLED) {
                    self.settle();
                }
            }
            SinkMode::Changelog => {
                for (record, time, diff) in updates.drain(..) {
                    self.changes.entry(time).or_default().push((record, diff));
                }
            }
        }
    }

    /// Consolidates the snapshot contents.
    fn settle(&mut self) {
        consolidate(&mut self.contents);
        self.settled = self.contents.len();
    }

    /// Writes the changelog for every time not in advance of `frontier`
    /// (`None`: all of them).
    fn advance(&mut self, frontier: Option<&T>) {
        if self.spec.mode != SinkMode::Changelog || self.failed {
            return;
        }
        let ready = match frontier {
            Some(time) => {
                let later = self.changes.split_off(time);
                std::mem::replace(&mut self.changes, later)
            }
            None => std::mem::take(&mut self.changes),
        };
        if ready.is_empty() {
            return;
        }
        if let Err(error) = self.write_changes(ready) {
            self.fail(error);
        }
    }

    fn write_changes(&mut self, ready: BTreeMap<T, Vec<(D, isize)>>) -> Result<(), SinkError> {
        if !self.writes {
            return Ok(());
        }
        let mut output = match self.output.take() {
            Some(output) => output,
            None => Output::open(&self.spec, self.columns.clone(), false)?,
        };
        let written = self.write_changes_to(&mut output, ready);
        self.handle.set_rows(output.rows());
        self.output = Some(output);
        written
    }

    fn write_changes_to(
        &self,
        output: &mut Output,
        ready: BTreeMap<T, Vec<(D, isize)>>,
    ) -> Result<(), SinkError> {
        for (time, mut updates) in ready {
            let time: u64 = time.into();
            let time_value = match i64::try_from(time) {
                Ok(time) => Value::I64(time),
                Err(_) => {
                    self.handle.record(SinkError::TimeOutOfRange {
                        sink: self.spec.name.clone(),
                        time,
                    });
                    Value::Null
                }
            };
            consolidate(&mut updates);
            sort_as_written(&mut updates);
            for (record, diff) in updates {
                let mut row = record.values();
                row.push(time_value.clone());
                let diff =
                    i64::try_from(diff).unwrap_or(if diff < 0 { i64::MIN } else { i64::MAX });
                row.push(Value::I64(diff));
                output.write(&row)?;
            }
        }
        output.flush()
    }

    /// The input has ended: writes what remains and finishes the output.
    ///
    /// A snapshot to a file is written on a thread of its own, which
    /// activates the operator through `activator` when done: the writing
    /// worker holds every sink's contents, and writing them one after the
    /// other on it while the other workers idled was the last several
    /// seconds of a backfill (docs/benchmarks.md). [`SinkCore::written`]
    /// tells when the thread is done.
    fn close(&mut self, activator: &SyncActivator) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.writes && !self.failed {
            let result = match self.spec.mode {
                SinkMode::Snapshot if self.spec.dir.is_some() => {
                    self.write_snapshot_on_a_thread(activator);
                    return;
                }
                SinkMode::Snapshot => self.take_snapshot().write(),
                SinkMode::Changelog => self.finish_changelog(),
            };
            if let Err(error) = result {
                self.fail(error);
            }
        }
        self.contents = Vec::new();
        self.settled = 0;
        self.changes.clear();
        self.handle.close();
    }

    /// What a snapshot sink writes at the end, taken out of the core.
    fn take_snapshot(&mut self) -> Snapshot<D> {
        self.settled = 0;
        Snapshot {
            spec: self.spec.clone(),
            columns: self.columns.clone(),
            handle: self.handle.clone(),
            contents: std::mem::take(&mut self.contents),
        }
    }

    /// Moves the contents to a thread that writes them, records any error
    /// and closes the handle. Writes them here if no thread can start.
    fn write_snapshot_on_a_thread(&mut self, activator: &SyncActivator) {
        let finished = Finished {
            flag: Arc::new(AtomicBool::new(false)),
            activator: activator.clone(),
        };
        let flag = Arc::clone(&finished.flag);
        // Sent once the thread has started, so that the contents stay here
        // if it does not.
        let (send, receive) = mpsc::channel::<Snapshot<D>>();
        let spawned = std::thread::Builder::new()
            .name(format!("sink {}", self.spec.name))
            .spawn(move || {
                // Dropped last, and also if writing panics.
                let _finished = finished;
                if let Ok(snapshot) = receive.recv() {
                    snapshot.write_and_close();
                }
            });
        let snapshot = self.take_snapshot();
        match spawned {
            Ok(thread) => {
                // The thread waits for it, so it cannot have gone yet.
                if let Err(mpsc::SendError(snapshot)) = send.send(snapshot) {
                    snapshot.write_and_close();
                }
                self.writer = Some(Writer { thread, flag });
            }
            Err(_) => snapshot.write_and_close(),
        }
    }

    /// Whether the output is complete: the input has ended and no thread
    /// is still writing. Reaps a finished thread, and records one that
    /// panicked as an error.
    fn written(&mut self) -> bool {
        let done = |writer: &mut Writer| writer.flag.load(Ordering::Acquire);
        if let Some(writer) = self.writer.take_if(done) {
            // The thread is past writing; this waits for it to exit.
            if writer.thread.join().is_err() {
                self.handle.record(SinkError::WriterPanicked {
                    sink: self.spec.name.clone(),
                });
                self.handle.close();
            }
        }
        self.closed && self.writer.is_none()
    }

    fn finish_changelog(&mut self) -> Result<(), SinkError> {
        self.advance(None);
        if self.failed {
            return Ok(());
        }
        let output = match self.output.take() {
            Some(output) => output,
            None => Output::open(&self.spec, self.columns.clone(), false)?,
        };
        let (path, rows) = output.finish()?;
        self.handle.set_rows(rows);
        self.handle.set_path(path);
        Ok(())
    }

    /// Records `error` and stops writing (a partial changelog file is left).
    fn fail(&mut self, error: SinkError) {
        self.handle.record(error);
        self.failed = true;
        self.output = None;
        self.contents = Vec::new();
        self.settled = 0;
        self.changes.clear();
    }
}

/// The final contents of a snapshot sink and what it needs to write them.
struct Snapshot<D> {
    spec: SinkSpec,
    columns: Vec<Column>,
    handle: SinkHandle,
    /// The updates received, consolidated up to some point.
    contents: Vec<(D, isize)>,
}

impl<D: OutputRecord> Snapshot<D> {
    /// Writes the contents, records any error, and closes the handle.
    fn write_and_close(self) {
        let handle = self.handle.clone();
        if let Err(error) = self.write() {
            handle.record(error);
        }
        handle.close();
    }

    /// Consolidates, sorts and writes the contents; a record with a
    /// negative multiplicity is reported and left out.
    fn write(self) -> Result<(), SinkError> {
        let Snapshot {
            spec,
            columns,
            handle,
            mut contents,
        } = self;
        let mut output = Output::open(&spec, columns, true)?;
        consolidate(&mut contents);
        contents.retain(|(record, count)| {
            if *count < 0 {
                handle.record(SinkError::NegativeMultiplicity {
                    sink: spec.name.clone(),
                    record: limit_length(&format!("{record:?}"), 256),
                    multiplicity: *count,
                });
            }
            *count >= 0
        });
        sort_as_written(&mut contents);
        for (record, count) in contents {
            let row = record.values();
            for _ in 0..count {
                output.write(&row)?;
            }
        }
        handle.set_rows(output.rows());
        let (path, rows) = output.finish()?;
        handle.set_rows(rows);
        handle.set_path(path);
        Ok(())
    }
}

/// A thread writing a snapshot, and whether it is done.
struct Writer {
    thread: JoinHandle<()>,
    flag: Arc<AtomicBool>,
}

/// Marks a writing thread done and activates its operator when dropped,
/// which happens whether writing returns or panics. `JoinHandle::is_finished`
/// would not do: the operator could run after the activation but before the
/// thread has exited, and then never be activated again.
struct Finished {
    flag: Arc<AtomicBool>,
    activator: SyncActivator,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Release);
        // Fails only if the dataflow is gone; then no one waits.
        let _ = self.activator.activate();
    }
}
