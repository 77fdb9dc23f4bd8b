//! The pipeline builder: read sources on every timely worker, stamp event
//! time, advance a watermark, and hand the event and dead-letter
//! collections to the caller's dataflow.
//!
//! ```
//! use adflow::prelude::*;
//! use differential_dataflow::input::Input;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("events.jsonl");
//! std::fs::write(&path, concat!(
//!     r#"{"event_id":"e1","kind":"impression","ts":"2026-11-01T10:00:00Z","user_id":"u","campaign_id":"c","ad_id":"a"}"#, "\n",
//!     r#"{"event_id":"e2","kind":"click","ts":"2026-11-01T10:00:05Z","user_id":"u","campaign_id":"c","ad_id":"a"}"#, "\n",
//!     "not json\n",
//! ))?;
//! let inputs = adflow::sources::discover(&[path.to_string_lossy()])?;
//! let summary = Pipeline::new(inputs)
//!     .workers(2)
//!     .run(|_scope, streams| {
//!         streams.events.probe_with(&streams.probe);
//!     })?;
//! assert_eq!(summary.events.get(EventKind::Impression), 1);
//! assert_eq!(summary.events.get(EventKind::Click), 1);
//! assert_eq!(summary.dead_letters.get(Reason::MalformedJson), 1);
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::collection::VecCollection;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline as Pipelined;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Input as TimelyInput;
use timely::dataflow::{InputHandle, ProbeHandle, Scope};

use crate::compaction;
use crate::dead_letter::{DeadLetter, Position, Reason, ReasonCounts};
use crate::event::{Event, EventKind, Id};
use crate::parsing::{EventValidator, DEFAULT_MAX_CLOCK_SKEW};
use crate::profile::{OperatorTime, WorkerProfile};
use crate::sources::replay::Replay;
use crate::sources::{FileSource, InputFile, Progress, RecordSource, SourceError, WorkPlan};
use crate::timestamp::{Millis, HOUR_MS, SECOND_MS};

/// Dataflow time: event time in milliseconds, rounded down to the tick
/// (or the input's frontier when the event was read: [`Stamping`]).
pub type Time = u64;

/// Records read between two looks at the watermark and the dataflow.
const READ_BATCH: usize = 4096;

/// How event time drives the dataflow's clock (see DESIGN.md "Time").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeConfig {
    /// Granularity of dataflow time: event times are rounded down to a
    /// multiple of it. Coarser ticks mean fewer distinct times to process.
    pub tick: Millis,
    /// How far the watermark trails the largest event time a worker has
    /// read. Times before the watermark are final. `None` holds the frontier
    /// until the input ends.
    pub allowed_lateness: Option<Millis>,
    /// An event older than the watermark minus this is dead-lettered as
    /// `late`; a younger late event is admitted at the frontier and its
    /// effects appear as corrections. `None` admits every event.
    pub horizon: Option<Millis>,
    /// Timestamps further than this from the stream's reference time are
    /// dead-lettered as `timestamp_out_of_range`.
    pub max_clock_skew: Millis,
    /// The reference for the skew check: `None` takes the median of each
    /// source's first [`crate::parsing::REFERENCE_SAMPLE`] event times.
    pub reference: Option<Millis>,
    /// Which dataflow time an event on time enters at.
    #[serde(default)]
    pub stamping: Stamping,
}

/// Which dataflow time an event that is not late enters at.
///
/// Both give the same final outputs and the same completeness: once the
/// inputs pass a time `t`, every event with a tick before `t` that was not
/// late is in every result at times before `t`. They differ in how many
/// distinct times the dataflow handles, and in the times a raw-diff
/// changelog shows. `docs/architecture.md` ("Time") explains the choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamping {
    /// At its own tick (event time rounded down): a changelog's times are
    /// event times, and the dataflow handles every tick a read spans as a
    /// distinct time. Backfills and replays.
    #[default]
    EventTick,
    /// At the inputs' frontier when it is read: one dataflow time per
    /// advance of the watermark, however many ticks the read spans, so a
    /// stream that falls behind catches up in fewer, larger steps; and an
    /// event's effects are final at the next advance instead of when the
    /// watermark passes its own tick. Streams.
    Frontier,
}

impl FromStr for Stamping {
    type Err = String;

    /// `event_tick` or `frontier` (also with `-`).
    fn from_str(text: &str) -> Result<Stamping, String> {
        match text {
            "event_tick" | "event-tick" => Ok(Stamping::EventTick),
            "frontier" => Ok(Stamping::Frontier),
            other => Err(format!("expected event_tick or frontier, not {other:?}")),
        }
    }
}

impl TimeConfig {
    /// Backfill: hourly ticks, a one-hour watermark lag so results finalise
    /// (and state is freed) as the files are read, and no horizon: every
    /// event counts, however late in the files it appears.
    pub fn backfill() -> TimeConfig {
        TimeConfig {
            tick: HOUR_MS,
            allowed_lateness: Some(HOUR_MS),
            horizon: None,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            reference: None,
            stamping: Stamping::EventTick,
        }
    }

    /// Stream: one-second ticks, ten seconds of allowed lateness, a
    /// one-day horizon beyond which late events are dead-lettered, and
    /// events stamped at the frontier ([`Stamping::Frontier`]).
    pub fn stream() -> TimeConfig {
        TimeConfig {
            tick: SECOND_MS,
            allowed_lateness: Some(10 * SECOND_MS),
            horizon: Some(24 * HOUR_MS),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            reference: None,
            stamping: Stamping::Frontier,
        }
    }

    /// The tick of an event time: event time rounded down to a multiple of
    /// the tick. An event on time enters at it under [`Stamping::EventTick`].
    pub fn stamp(&self, ts: Millis) -> Time {
        let tick = self.tick.max(1);
        Time::try_from(ts - ts.rem_euclid(tick)).unwrap_or(0)
    }
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig::backfill()
    }
}

/// What the pipeline hands to the dataflow the caller builds.
pub struct Streams<'scope> {
    /// Valid events, each at its tick or at the frontier it was read at
    /// ([`Stamping`]); late ones at the frontier.
    pub events: VecCollection<'scope, Time, Event>,
    /// Records that could not become events.
    pub dead_letters: VecCollection<'scope, Time, DeadLetter>,
    /// Attach outputs to this probe (`probe_with`) so the pipeline paces
    /// reading to what the dataflow has processed.
    pub probe: ProbeHandle<Time>,
}

/// The inputs a source feeds a dataflow through, and the probe the
/// caller attaches its outputs to.
pub(crate) struct Inputs {
    pub(crate) events: InputSession<Time, Event, isize>,
    pub(crate) dead_letters: InputSession<Time, DeadLetter, isize>,
    /// Campaign and ad names new to this worker's source, sent before the
    /// events that carry them ([`crate::names`]).
    names: InputHandle<Time, CapacityContainerBuilder<Vec<(Id, String)>>>,
    pub(crate) probe: ProbeHandle<Time>,
}

impl Inputs {
    /// Sends `names` (a source's [`crate::sources::RecordSource::take_new_names`])
    /// at the inputs' current time, and empties it.
    pub(crate) fn send_names(&mut self, names: &mut Vec<(Id, String)>) {
        if !names.is_empty() {
            self.names.send_batch(names);
            // `send_batch` leaves the buffer in no defined state.
            names.clear();
        }
    }

    /// Advances every input to `time` and flushes what was sent.
    pub(crate) fn advance_to(&mut self, time: Time) {
        self.events.advance_to(time);
        self.dead_letters.advance_to(time);
        self.names.advance_to(time);
        self.events.flush();
        self.dead_letters.flush();
        self.names.flush();
    }
}

impl<'scope> Streams<'scope> {
    /// New event and dead-letter inputs in `scope`: the source's ends and
    /// the caller's.
    ///
    /// The events' frontier also waits for every worker to have remembered
    /// the names sent before them, so that in a cluster every process
    /// renders an id the same way ([`crate::names`]).
    pub(crate) fn new(scope: Scope<'scope, Time>) -> (Inputs, Streams<'scope>) {
        let (events_in, events) = scope.new_collection::<Event, isize>();
        let (dead_in, dead_letters) = scope.new_collection::<DeadLetter, isize>();
        let (names_in, names) = scope.new_input::<Vec<(Id, String)>>();
        let remembered = names
            .broadcast()
            .unary::<CapacityContainerBuilder<Vec<(Event, Time, isize)>>, _, _, _>(
                Pipelined,
                "Names: remember",
                |_capability, _info| {
                    |input, _output| {
                        input.for_each(|_time, names| {
                            for (id, text) in names.drain(..) {
                                crate::names::remember(id, &text);
                            }
                        });
                    }
                },
            )
            .as_collection();
        let probe = ProbeHandle::new();
        let streams = Streams {
            events: events.concat(remembered),
            dead_letters,
            probe: probe.clone(),
        };
        let inputs = Inputs {
            events: events_in,
            dead_letters: dead_in,
            names: names_in,
            probe,
        };
        (inputs, streams)
    }
}

/// Events counted per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts(pub [u64; 4]);

impl KindCounts {
    /// Counts one event.
    pub fn add(&mut self, kind: EventKind) {
        self.0[kind_index(kind)] += 1;
    }

    /// The count of one kind.
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind_index(kind)]
    }

    /// All events.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &KindCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

fn kind_index(kind: EventKind) -> usize {
    match kind {
        EventKind::Impression => 0,
        EventKind::Click => 1,
        EventKind::Conversion => 2,
        EventKind::PageView => 3,
    }
}

/// What a run read, summed over the workers of this process (and, for
/// process 0 of a cluster, over every process in [`RunSummary::cluster`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Valid events admitted into the dataflow, per kind.
    pub events: KindCounts,
    /// Dead letters per reason (including events dropped as `late`).
    pub dead_letters: ReasonCounts,
    /// Events that arrived behind the frontier and were admitted as corrections.
    pub admitted_late: u64,
    /// Timely workers in this process.
    pub workers: usize,
    /// Input bytes on disk.
    pub input_bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time per operator, longest first, when [`Pipeline::profile`] was set.
    pub operators: Vec<OperatorTime>,
    /// In process 0 of a cluster of several processes: the whole cluster's
    /// counts, gathered from every worker (the fields above are this
    /// process's share). `None` in a single process and in other processes.
    pub cluster: Option<Box<RunSummary>>,
}

impl RunSummary {
    /// Records read: events plus dead letters.
    pub fn records(&self) -> u64 {
        self.events.total() + self.dead_letters.total()
    }

    /// Records read per second of wall time.
    pub fn records_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.records() as f64 / seconds
        } else {
            0.0
        }
    }

    pub(crate) fn merge(&mut self, other: &RunSummary) {
        self.events.merge(&other.events);
        self.dead_letters.merge(&other.dead_letters);
        self.admitted_late += other.admitted_late;
        crate::profile::merge(&mut self.operators, other.operators.clone());
    }
}

/// Why a pipeline could not run. Bad records are dead letters, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Inputs could not be discovered.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Timely could not start (bad cluster configuration, unreachable peers).
    #[error("timely: {0}")]
    Timely(String),
    /// A worker thread panicked.
    #[error("worker failed: {0}")]
    Worker(String),
}

/// Makes the record source of worker `index` of `peers`, given the time
/// configuration (whose clock-skew settings validate events).
type SourceFactory = dyn Fn(usize, usize, &TimeConfig) -> Box<dyn RecordSource> + Send + Sync;

/// Builds and runs a pipeline over file inputs, a replayed log, or any
/// other [`RecordSource`].
pub struct Pipeline {
    sources: Arc<SourceFactory>,
    input_bytes: u64,
    time: TimeConfig,
    timely: timely::Config,
    progress: Arc<Progress>,
    profile: bool,
    read_ahead: usize,
}

/// Records a worker may read past the watermark the dataflow last caught up
/// with, before it waits ([`Pipeline::read_ahead`]).
pub const DEFAULT_READ_AHEAD: usize = 1 << 20;

impl Pipeline {
    /// A pipeline over these files, with backfill time and one worker.
    /// Each worker reads its share of the files' [`WorkPlan`].
    pub fn new(inputs: Vec<InputFile>) -> Pipeline {
        let plan = Arc::new(WorkPlan::new(inputs));
        let input_bytes = plan.total_bytes();
        let progress = Arc::new(Progress::default());
        progress
            .bytes_total
            .store(input_bytes, std::sync::atomic::Ordering::Relaxed);
        let worker_progress = Arc::clone(&progress);
        let mut pipeline = Pipeline::from_sources(progress, move |index, peers, time| {
            let validator = EventValidator::new(time.reference, time.max_clock_skew);
            Box::new(FileSource::new(
                Arc::clone(&plan),
                index,
                peers,
                validator,
                Arc::clone(&worker_progress),
            ))
        });
        pipeline.input_bytes = input_bytes;
        pipeline
    }

    /// A pipeline replaying a log in event-time order, with stream time
    /// (one-second ticks, a watermark, a horizon) and one worker.
    pub fn replay(replay: Replay, progress: Arc<Progress>) -> Pipeline {
        Pipeline::from_sources(progress, move |index, peers, _time| {
            Box::new(replay.source(index, peers))
        })
        .time(TimeConfig::stream())
    }

    /// A pipeline over any sources: `sources(index, peers, time)` makes the
    /// source of worker `index` of `peers`. `progress` is what
    /// [`Pipeline::progress`] returns; the sources update it.
    pub fn from_sources<F>(progress: Arc<Progress>, sources: F) -> Pipeline
    where
        F: Fn(usize, usize, &TimeConfig) -> Box<dyn RecordSource> + Send + Sync + 'static,
    {
        Pipeline {
            sources: Arc::new(sources),
            input_bytes: 0,
            time: TimeConfig::backfill(),
            timely: timely::Config::thread(),
            progress,
            profile: false,
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }

    /// Sets how event time drives the clock.
    pub fn time(mut self, time: TimeConfig) -> Pipeline {
        self.time = time;
        self
    }

    /// Runs on `workers` threads in this process.
    pub fn workers(mut self, workers: usize) -> Pipeline {
        self.timely = timely::Config::process(workers.max(1));
        self
    }

    /// Runs with an explicit timely configuration (threads, processes, hosts).
    pub fn timely_config(mut self, config: timely::Config) -> Pipeline {
        self.timely = config;
        self
    }

    /// Records the time spent in each operator into [`RunSummary::operators`],
    /// with the names of the operators that feed each one.
    ///
    /// ```
    /// use adflow::pipeline::Pipeline;
    /// use adflow::sources::discover;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let line = r#"{"event_id":"e1","kind":"click","ts":"2026-11-01T10:00:00Z",
    ///     "user_id":"u1","campaign_id":"c1","ad_id":"a1"}"#;
    /// std::fs::write(dir.path().join("events.jsonl"), line.replace('\n', "")).unwrap();
    /// let inputs = discover(&[dir.path().to_string_lossy()]).unwrap();
    /// let summary = Pipeline::new(inputs)
    ///     .profile(true)
    ///     .run(|_scope, streams| {
    ///         let by_user = |name: &str| {
    ///             streams.events.clone().map(|event| (event.user_id, event.ts)).arrange_by_key_named(name)
    ///         };
    ///         by_user("Times by user")
    ///             .join_core(by_user("Times by user, again"), |_, a, b| Some((*a, *b)))
    ///             .probe_with(&streams.probe);
    ///     })
    ///     .unwrap();
    /// let join = summary.operators.iter().find(|op| op.name == "Join").unwrap();
    /// assert!(join.inputs.contains(&"Times by user".to_owned()));
    /// assert!(join.inputs.contains(&"Times by user, again".to_owned()));
    /// ```
    pub fn profile(mut self, enabled: bool) -> Pipeline {
        self.profile = enabled;
        self
    }

    /// How many records a worker may read beyond the point where the
    /// dataflow last caught up with its watermark before it waits for the
    /// dataflow (default [`DEFAULT_READ_AHEAD`]). Read-ahead lets workers
    /// whose units lie hours of event time apart all keep reading (the
    /// frontier follows the worker furthest behind); it costs memory for
    /// the records waiting at times the frontier has not reached: up to
    /// about twice `records` per worker, at roughly 200 bytes each. 0
    /// paces at every batch.
    pub fn read_ahead(mut self, records: usize) -> Pipeline {
        self.read_ahead = records;
        self
    }

    /// Counters to poll for a progress display while `run` executes.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Builds the caller's dataflow on every worker, reads all inputs
    /// through it, and returns once every worker has drained its dataflow.
    pub fn run<F>(self, build: F) -> Result<RunSummary, PipelineError>
    where
        F: for<'scope> Fn(Scope<'scope, Time>, Streams<'scope>) + Send + Sync + 'static,
    {
        let started = Instant::now();
        let Pipeline {
            sources,
            input_bytes,
            time,
            mut timely,
            progress: _,
            profile,
            read_ahead: max_read_ahead,
        } = self;
        // Merges in progress are finished while a worker waits for input.
        compaction::install(&mut timely.worker, compaction::IDLE_MERGE_EFFORT);
        let guards = timely::execute(timely, move |worker| {
            let recording = profile.then(|| WorkerProfile::install(worker));
            let mut inputs = worker.dataflow::<Time, _, _>(|scope| {
                let (inputs, streams) = Streams::new(scope);
                build(scope, streams);
                inputs
            });
            let probe = inputs.probe.clone();
            let mut names = Vec::new();
            let mut summary = RunSummary::default();
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut clock = EventClock::new(time);
            let mut paced_to: Time = 0;
            let mut read_ahead = 0usize;
            let mut source = sources(worker.index(), worker.peers(), &time);
            loop {
                let more = source.read_batch(&mut batch, READ_BATCH);
                // Before the events: sent at the inputs' time, no later than theirs.
                source.take_new_names(&mut names);
                inputs.send_names(&mut names);
                read_ahead += batch.len();
                for parsed in batch.drain(..) {
                    match parsed {
                        Ok(event) => match clock.admit(event.ts) {
                            Admission::OnTime(at) => {
                                inputs.events.update_at(event, at, 1);
                                summary.events.add(event.kind);
                            }
                            Admission::Correction(at) => {
                                inputs.events.update_at(event, at, 1);
                                summary.events.add(event.kind);
                                summary.admitted_late += 1;
                            }
                            Admission::Late => {
                                summary.dead_letters.add(Reason::Late);
                                let frontier = clock.frontier();
                                inputs.dead_letters.update_at(
                                    late_letter("pipeline", Position::Source, &event, frontier),
                                    frontier,
                                    1,
                                );
                            }
                        },
                        Err(dead) => {
                            summary.dead_letters.add(dead.reason);
                            inputs.dead_letters.update_at(dead, clock.frontier(), 1);
                        }
                    }
                }
                if let Some(watermark) = clock.advance() {
                    inputs.advance_to(watermark);
                }
                // Pacing: once the dataflow has caught up with the watermark
                // this worker had, it may read `max_read_ahead` records past
                // it before it waits. Workers read different units (row
                // groups, files) that can be hours of event time apart,
                // and the least of their watermarks holds the frontier: a
                // worker ahead that waited at every tick would leave its
                // core idle while the other reads its unit.
                if !probe.less_than(&paced_to) {
                    read_ahead = 0;
                    paced_to = clock.frontier();
                } else if read_ahead >= max_read_ahead {
                    worker.step_while(|| probe.less_than(&paced_to));
                    read_ahead = 0;
                    paced_to = clock.frontier();
                }
                worker.step();
                if !more {
                    break;
                }
            }
            drop(inputs);
            while worker.step_or_park(None) {}
            if let Some(recording) = recording {
                summary.operators = recording.finish(worker);
            }
            summary.cluster = gather_at_worker_zero(worker, &summary, || false);
            summary
        })
        .map_err(PipelineError::Timely)?;
        let mut total = RunSummary {
            input_bytes,
            ..RunSummary::default()
        };
        let mut cluster = None;
        for result in guards.join() {
            let mut summary = result.map_err(PipelineError::Worker)?;
            cluster = cluster.or_else(|| summary.cluster.take());
            total.merge(&summary);
            total.workers += 1;
        }
        total.elapsed = started.elapsed();
        total.cluster = cluster
            .filter(|cluster| cluster.workers > total.workers)
            .map(|mut cluster| {
                cluster.input_bytes = input_bytes;
                cluster.elapsed = total.elapsed;
                cluster
            });
        Ok(total)
    }
}

/// Sends every worker's summary to worker 0 of the cluster, which returns
/// their sum (with `workers` = the cluster's workers); other workers return
/// `None`, and so does worker 0 if it stops waiting because `gone` says a
/// peer will never send its summary.
pub(crate) fn gather_at_worker_zero(
    worker: &mut timely::worker::Worker,
    summary: &RunSummary,
    gone: impl Fn() -> bool,
) -> Option<Box<RunSummary>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

    let gathered = Rc::new(RefCell::new(Vec::<RunSummary>::new()));
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<RunSummary>>();
        let sink = Rc::clone(&gathered);
        let (probe, _) = stream
            .exchange(|_| 0)
            .inspect(move |summary: &RunSummary| sink.borrow_mut().push(summary.clone()))
            .probe();
        (input, probe)
    });
    let mut mine = summary.clone();
    mine.operators.clear();
    input.send(mine);
    drop(input);
    while !probe.done() {
        if gone() {
            return None;
        }
        worker.step_or_park(Some(std::time::Duration::from_millis(1)));
    }
    let gathered = gathered.take();
    (worker.index() == 0).then(|| {
        let mut total = RunSummary::default();
        for summary in &gathered {
            total.merge(summary);
            total.input_bytes += summary.input_bytes;
            total.workers += 1;
        }
        Box::new(total)
    })
}

/// A timely configuration from the standard cluster flags: `workers`
/// threads per process, `processes` processes of which this is number
/// `process`, addresses in `hostfile` (one `host:port` per line) when
/// there is more than one process.
pub fn cluster_config(
    workers: usize,
    processes: usize,
    process: usize,
    hostfile: Option<&std::path::Path>,
) -> Result<timely::Config, PipelineError> {
    let mut args = vec![
        "-w".to_owned(),
        workers.max(1).to_string(),
        "-n".to_owned(),
        processes.max(1).to_string(),
        "-p".to_owned(),
        process.to_string(),
    ];
    if let Some(hostfile) = hostfile {
        args.push("-h".to_owned());
        args.push(hostfile.display().to_string());
    }
    timely::Config::from_args(args.into_iter()).map_err(PipelineError::Timely)
}

/// Where an event enters the dataflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// At its own tick, or at the frontier ([`Stamping`]): at or after
    /// the frontier either way.
    OnTime(Time),
    /// Behind the frontier but within the horizon: at the frontier, so its
    /// effects arrive as corrections.
    Correction(Time),
    /// Beyond the horizon: dead-lettered as `late`.
    Late,
}

/// One input's view of event time: the largest event time read, the
/// watermark trailing it, and the frontier the input has advanced to.
///
/// The pipeline, the Kafka source and the operators' test harness all admit
/// events through this one type, so they agree on what is late.
///
/// ```
/// use adflow::pipeline::{Admission, EventClock, Stamping, TimeConfig};
/// let mut clock = EventClock::new(TimeConfig { tick: 10, allowed_lateness: Some(20), horizon: Some(100), stamping: Stamping::EventTick, ..TimeConfig::stream() });
/// assert_eq!(clock.admit(1_005), Admission::OnTime(1_000));
/// assert_eq!(clock.advance(), Some(980));
/// assert_eq!(clock.admit(975), Admission::Correction(980));
/// assert_eq!(clock.admit(870), Admission::Late);
///
/// // Stamped at the frontier, an event on time enters at the frontier too.
/// let mut clock = EventClock::new(TimeConfig { tick: 10, allowed_lateness: Some(20), stamping: Stamping::Frontier, ..TimeConfig::stream() });
/// assert_eq!(clock.admit(1_005), Admission::OnTime(0));
/// assert_eq!(clock.advance(), Some(980));
/// assert_eq!(clock.admit(1_017), Admission::OnTime(980));
/// assert_eq!(clock.admit(975), Admission::Correction(980));
/// ```
#[derive(Clone, Debug)]
pub struct EventClock {
    config: TimeConfig,
    frontier: Time,
    max_seen: Option<Millis>,
}

impl EventClock {
    /// A clock at time zero.
    pub fn new(config: TimeConfig) -> EventClock {
        EventClock {
            config,
            frontier: 0,
            max_seen: None,
        }
    }

    /// The time inputs are at: nothing will be admitted before it.
    pub fn frontier(&self) -> Time {
        self.frontier
    }

    /// Decides where an event with time `ts` enters, and notes its time.
    pub fn admit(&mut self, ts: Millis) -> Admission {
        let stamped = self.config.stamp(ts);
        if stamped >= self.frontier {
            self.max_seen = Some(self.max_seen.map_or(ts, |max| max.max(ts)));
            return Admission::OnTime(match self.config.stamping {
                Stamping::EventTick => stamped,
                Stamping::Frontier => self.frontier,
            });
        }
        let frontier = Millis::try_from(self.frontier).unwrap_or(Millis::MAX);
        match self.config.horizon {
            Some(horizon) if ts < frontier.saturating_sub(horizon) => Admission::Late,
            _ => Admission::Correction(self.frontier),
        }
    }

    /// Moves the frontier up to the watermark if it has passed it; returns
    /// the new frontier when it moved.
    pub fn advance(&mut self) -> Option<Time> {
        let max_seen = self.max_seen?;
        self.advance_from(max_seen)
    }

    /// Moves the frontier up to the watermark that trails `event_time`
    /// rather than the largest event time admitted: a source that reads
    /// several partitions passes the least of their largest event times, so
    /// that one partition running ahead does not make the others late.
    /// Returns the new frontier when it moved.
    pub fn advance_from(&mut self, event_time: Millis) -> Option<Time> {
        let lateness = self.config.allowed_lateness?;
        let watermark = self.config.stamp(event_time.saturating_sub(lateness));
        (watermark > self.frontier).then(|| {
            self.frontier = watermark;
            watermark
        })
    }
}

/// The dead letter of an event read at `position` of `source` and found
/// beyond the horizon of `frontier`.
pub(crate) fn late_letter(
    source: &str,
    position: Position,
    event: &Event,
    frontier: Time,
) -> DeadLetter {
    DeadLetter::new(
        source,
        position,
        Reason::Late,
        format!(
            "event time {} is beyond the horizon of frontier {frontier}",
            event.ts
        ),
        format!("{event:?}").as_bytes(),
    )
}
