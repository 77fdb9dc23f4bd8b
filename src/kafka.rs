//! Kafka: read JSON events from a topic and maintain every output
//! collection as a changelog topic, restartable without loss or double
//! counting.
//!
//! [`KafkaPipeline`] is the streaming twin of
//! [`Pipeline`](crate::pipeline::Pipeline): it spreads the input topic's
//! partitions over the timely workers (partition `p` goes to worker
//! `p % workers`; in a cluster of several processes, of all the cluster's
//! workers: [`KafkaPipeline::timely_config`]), parses each message with
//! the same validator as the file sources (a message that is not a valid
//! event becomes a [`DeadLetter`](crate::dead_letter::DeadLetter) at its
//! partition and offset), admits events through the same
//! [`EventClock`], and hands the caller the
//! same [`Streams`]. Outputs go to topics through [`KafkaOutputs::sink`],
//! as upsert changelogs or raw diffs ([`ChangelogMode`]).
//!
//! The watermark trails the least of the largest event times of the
//! partitions, leaving out partitions that delivered nothing for
//! [`KafkaSourceConfig::idle_timeout`], so an idle partition does not
//! stall results. Once all of a worker's partitions are idle, the
//! watermark may trail the largest event time they delivered if they have
//! been read to their end, or else the least of the largest event times
//! of those that have not; and at least the basis of the other workers.
//!
//! Delivery: every worker produces the sinks' keys it owns through one
//! producer, flushed once per frontier advance for all of its sinks; a
//! worker commits its partitions' offsets (to the consumer group) only once
//! every worker's sinks have produced, and the broker acknowledged, every
//! result of the messages before them. A restart replays the input
//! from where the group first started (recorded in the commit metadata)
//! up to the committed offsets while the sinks only rebuild their state,
//! then each sink produces the difference between its state and what its
//! topic holds, and carries on. `docs/operations.md` explains the design.
//!
//! ```no_run
//! use adflow::kafka::{ChangelogMode, KafkaPipeline, KafkaSourceConfig};
//! use adflow::pipeline::TimeConfig;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = KafkaSourceConfig::new("localhost:9092", "events", "adflow");
//! let summary = KafkaPipeline::new(source)
//!     .time(TimeConfig::stream())
//!     .workers(2)
//!     .run(|_scope, streams, outputs| {
//!         outputs.sink(streams.dead_letters, "events-dlq", ChangelogMode::Upsert, &streams.probe);
//!         streams.events.probe_with(&streams.probe);
//!     })?;
//! println!("{} events", summary.run.events.total());
//! # Ok(()) }
//! ```

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use differential_dataflow::collection::VecCollection;
use rdkafka::config::ClientConfig;
use timely::dataflow::{ProbeHandle, Scope};

use crate::compaction;
use crate::dead_letter::Reason;
use crate::parsing::EventValidator;
use crate::pipeline::{
    gather_at_worker_zero, late_letter, Admission, EventClock, RunSummary, Streams, Time,
    TimeConfig,
};
use crate::profile::WorkerProfile;
use crate::sinks::{NamedOutputs, OutputRecord, SinkHandle};
use crate::timestamp::{parse_rfc3339, Millis};

mod resume;
mod sink;
mod source;
mod topic;

pub use sink::ChangelogMode;
pub use topic::{compacted, produce_events, read_topic, MessageProducer, TopicMessage};

use resume::{Gossip, Resume, WorkerResume};
use sink::{sink_to_topic, SharedProducer, SinkTarget};
use source::{Basis, Polled, WorkerSource};

/// Messages read between two looks at the watermark and the dataflow.
const READ_BATCH: usize = 4096;

/// How long a worker with nothing to read waits for a message.
const POLL_WAIT: Duration = Duration::from_millis(2);

/// How long a worker waiting for the others parks between looks at its
/// [`Shutdown`] (an abort of this process sends it no message).
const IDLE_STEP: Duration = Duration::from_millis(10);

/// Why the Kafka pipeline could not run. Bad messages are dead letters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// librdkafka refused a request.
    #[error("{context}: {source}")]
    Client {
        /// What was being done.
        context: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The input topic does not exist or has no partitions.
    #[error("topic {0} does not exist or has no partitions")]
    NoPartitions(String),
    /// An event could not be encoded as JSON.
    #[error("encoding an event: {0}")]
    Encode(String),
    /// The broker refused messages.
    #[error("{failed} messages not delivered, the first because: {first}")]
    Undelivered {
        /// How many.
        failed: u64,
        /// The first refusal.
        first: String,
    },
    /// A request did not complete in time.
    #[error("timed out {0}")]
    Timeout(String),
    /// Timely could not start.
    #[error("timely: {0}")]
    Timely(String),
    /// A worker thread panicked or could not open its partitions, or (in
    /// a cluster) a worker of another process failed or was aborted.
    #[error("worker failed: {0}")]
    Worker(String),
}

impl KafkaError {
    /// Wraps a client error with what was being done, for `map_err`.
    pub(crate) fn client(
        context: &'static str,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
        move |source| KafkaError::Client { context, source }
    }
}

/// Where a consumer group that has never committed starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained message of each partition.
    #[default]
    Earliest,
    /// Only messages produced after the start.
    Latest,
    /// The first message of each partition whose Kafka timestamp is at or
    /// after this instant (epoch milliseconds).
    Timestamp(Millis),
}

impl FromStr for StartFrom {
    type Err = String;

    /// `earliest`, `latest`, an RFC 3339 instant or epoch milliseconds.
    fn from_str(text: &str) -> Result<StartFrom, String> {
        match text {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => other
                .parse::<Millis>()
                .ok()
                .or_else(|| parse_rfc3339(other))
                .map(StartFrom::Timestamp)
                .ok_or_else(|| {
                    format!(
                        "expected earliest, latest, an RFC 3339 time or epoch ms, not {other:?}"
                    )
                }),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::Earliest => f.write_str("earliest"),
            StartFrom::Latest => f.write_str("latest"),
            StartFrom::Timestamp(ms) => write!(f, "{ms}"),
        }
    }
}

/// Where and how to read the input topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// The topic of JSON events (docs/schema.md), one event per message.
    pub topic: String,
    /// The consumer group that commits offsets.
    pub group: String,
    /// Where a group that has never committed starts.
    pub start: StartFrom,
    /// A partition that delivers nothing for this long no longer holds the
    /// watermark back; it counts again with its next message. Once every
    /// partition of a worker is idle, those read to their end stop holding
    /// it back too (the watermark may trail the largest event time read),
    /// so a message older than that arrives as a correction, or as a dead
    /// letter beyond the horizon. Zero: the least of the partitions never
    /// holds the watermark back.
    pub idle_timeout: Duration,
    /// Stop once every partition has reached its end (bounded runs and
    /// tests); otherwise run until [`Shutdown::stop`].
    pub stop_at_end: bool,
    /// Extra librdkafka settings for every client (e.g. `security.protocol`).
    pub client: BTreeMap<String, String>,
}

impl KafkaSourceConfig {
    /// Reads `topic` from `brokers` as consumer group `group`, from the
    /// earliest offset, with a five-second idle timeout, until stopped.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        group: impl Into<String>,
    ) -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            group: group.into(),
            start: StartFrom::Earliest,
            idle_timeout: Duration::from_secs(5),
            stop_at_end: false,
            client: BTreeMap::new(),
        }
    }
}

/// The librdkafka configuration every adflow client starts from:
/// `bootstrap.servers` and the extra settings in `client`. The one place
/// that creates a `ClientConfig` (clippy.toml), so every client of a run
/// gets the same security and timeout settings.
pub fn client_config(brokers: &str, client: &BTreeMap<String, String>) -> ClientConfig {
    #[allow(clippy::disallowed_methods)]
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in client {
        config.set(key, value);
    }
    config
}

/// Stops a running [`KafkaPipeline`] from another thread.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    state: Arc<AtomicU8>,
}

// The state starts at 0, running.
const FINISHING: u8 = 1;
const STOPPING: u8 = 2;
const ABORTING: u8 = 3;

impl Shutdown {
    /// Read on until every partition has reached its end, then stop as
    /// [`Shutdown::stop`] does (for a feed that has finished).
    pub fn finish(&self) {
        self.state.fetch_max(FINISHING, Ordering::SeqCst);
    }

    /// Stop reading, finish the results of what was read, commit, return.
    pub fn stop(&self) {
        self.state.fetch_max(STOPPING, Ordering::SeqCst);
    }

    /// Stop at once, as a crash would: no draining, no flushing, no
    /// commit. What the sinks had not flushed is lost; a restart recovers it.
    pub fn abort(&self) {
        self.state.store(ABORTING, Ordering::SeqCst);
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }
}

/// Attaches output collections to topics, inside the dataflow that
/// [`KafkaPipeline::run`] builds.
pub struct KafkaOutputs {
    target: SinkTarget,
    handles: Arc<Mutex<BTreeMap<String, SinkHandle>>>,
    /// This worker's producer, shared by its sinks; made by the first sink.
    producer: OnceCell<Result<Rc<SharedProducer>, String>>,
    /// Without a Kafka sink: the last checkpoint, acknowledged at once.
    unsent: Cell<Option<Time>>,
}

impl KafkaOutputs {
    /// Maintains `collection` in `topic` as `mode` says, keyed by the
    /// record's [`OutputRecord::key_columns`]. The sink attaches `probe`
    /// after itself: once the probe passes a time, the broker has
    /// acknowledged every message for the times before it. Errors are
    /// recorded in the returned handle (shared by every worker).
    pub fn sink<'scope, D: OutputRecord>(
        &self,
        collection: VecCollection<'scope, Time, D>,
        topic: &str,
        mode: ChangelogMode,
        probe: &ProbeHandle<Time>,
    ) -> SinkHandle {
        let handle = self
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_insert_with(|| SinkHandle::new(topic))
            .clone();
        let producer = self
            .producer
            .get_or_init(|| {
                SharedProducer::new(&self.target)
                    .map(Rc::new)
                    .map_err(|error| error.to_string())
            })
            .clone();
        sink_to_topic(
            collection,
            topic,
            mode,
            &self.target,
            producer,
            probe,
            handle,
        )
    }

    /// Notes that this worker's sinks have sent every result before `time`.
    fn checkpoint(&self, time: Time) {
        match self.producer.get() {
            Some(Ok(producer)) => producer.checkpoint(time),
            // No Kafka sink: nothing to wait for.
            _ => self.unsent.set(Some(time)),
        }
    }

    /// The latest checkpoint whose messages the broker has all acknowledged
    /// since the last call, without waiting.
    fn acknowledged(&self) -> Option<Time> {
        match self.producer.get() {
            Some(Ok(producer)) => producer.acknowledged(),
            _ => self.unsent.take(),
        }
    }

    /// Waits until the broker has acknowledged every message this worker's
    /// sinks have produced.
    fn flush(&self) {
        if let Some(Ok(producer)) = self.producer.get() {
            producer.flush();
        }
    }

    /// The named outputs of a pipeline definition (e.g. adflow-operators'
    /// `Analytics::emit`) as topics `<prefix><name>`, each in `mode`.
    pub fn topics<'a>(
        &'a self,
        prefix: &str,
        mode: ChangelogMode,
        probe: &'a ProbeHandle<Time>,
    ) -> TopicSet<'a> {
        TopicSet {
            outputs: self,
            prefix: prefix.to_owned(),
            mode,
            probe,
        }
    }
}

/// Named outputs as topics: see [`KafkaOutputs::topics`].
pub struct TopicSet<'a> {
    outputs: &'a KafkaOutputs,
    prefix: String,
    mode: ChangelogMode,
    probe: &'a ProbeHandle<Time>,
}

impl<'scope> NamedOutputs<'scope> for TopicSet<'_> {
    fn output<D: OutputRecord>(&mut self, name: &str, collection: VecCollection<'scope, Time, D>) {
        let topic = format!("{}{name}", self.prefix);
        self.outputs.sink(collection, &topic, self.mode, self.probe);
    }
}

/// What a Kafka run did.
#[derive(Clone, Debug, Default)]
pub struct KafkaSummary {
    /// Events and dead letters read, as for file pipelines (`input_bytes`
    /// counts message payloads; in process 0 of a cluster,
    /// [`RunSummary::cluster`] holds the whole cluster's counts).
    pub run: RunSummary,
    /// Offset commits made, over this process's workers.
    pub commits: u64,
    /// Consumer and commit errors that were not about one message.
    pub errors: Vec<String>,
    /// Every sink's report, by topic (in a cluster: of this process's
    /// workers; [`RunSummary::cluster`] has the cluster's counts).
    pub sinks: BTreeMap<String, crate::sinks::SinkReport>,
    /// Whether the run was aborted ([`Shutdown::abort`]).
    pub aborted: bool,
}

/// Builds and runs a pipeline over a Kafka topic.
pub struct KafkaPipeline {
    source: KafkaSourceConfig,
    time: TimeConfig,
    timely: timely::Config,
    shutdown: Shutdown,
    on_progress: Option<Arc<dyn Fn(Time) + Send + Sync>>,
    profile: bool,
}

impl KafkaPipeline {
    /// A pipeline over `source`, with stream time and one worker.
    pub fn new(source: KafkaSourceConfig) -> KafkaPipeline {
        KafkaPipeline {
            source,
            time: TimeConfig::stream(),
            timely: timely::Config::process(1),
            shutdown: Shutdown::default(),
            on_progress: None,
            profile: false,
        }
    }

    /// Calls `progress(t)` (on worker 0's thread, so in process 0 of a
    /// cluster) each time the results emitted by every worker pass a new
    /// time `t`: every result for the times before `t` has been produced
    /// and acknowledged by the broker. For lag monitoring and latency
    /// measurements.
    pub fn on_progress(mut self, progress: impl Fn(Time) + Send + Sync + 'static) -> KafkaPipeline {
        self.on_progress = Some(Arc::new(progress));
        self
    }

    /// Records the time spent in each operator into the summary's
    /// [`RunSummary::operators`] (as
    /// [`Pipeline::profile`](crate::pipeline::Pipeline::profile) does).
    pub fn profile(mut self, enabled: bool) -> KafkaPipeline {
        self.profile = enabled;
        self
    }

    /// Sets how event time drives the clock.
    pub fn time(mut self, time: TimeConfig) -> KafkaPipeline {
        self.time = time;
        self
    }

    /// Runs on `workers` threads. Partitions are spread over them; a worker
    /// without partitions follows the others' watermark.
    pub fn workers(mut self, workers: usize) -> KafkaPipeline {
        self.timely = timely::Config::process(workers.max(1));
        self
    }

    /// Runs as one process of a timely cluster
    /// ([`cluster_config`](crate::pipeline::cluster_config)): every process
    /// runs the same pipeline over the same topic and group, and partition
    /// `p` goes to worker `p % W` of the cluster's `W` workers. The workers
    /// tell each other when replay is over and which results are emitted,
    /// so offsets are committed and topics reconciled as in one process. A
    /// stop or finish ([`Shutdown`]) asked of one process applies to the
    /// whole cluster. An abort is a crash of this process; the others learn
    /// of it, stop as well (their runs fail) and the cluster must be
    /// restarted, as after any crash of one of its processes.
    pub fn timely_config(mut self, config: timely::Config) -> KafkaPipeline {
        self.timely = config;
        self
    }

    /// A handle to stop the run from another thread.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Builds the caller's dataflow on every worker and streams the topic
    /// through it until the input ends ([`KafkaSourceConfig::stop_at_end`])
    /// or [`Shutdown`] says so.
    pub fn run<F>(self, build: F) -> Result<KafkaSummary, KafkaError>
    where
        F: for<'scope> Fn(Scope<'scope, Time>, Streams<'scope>, &KafkaOutputs)
            + Send
            + Sync
            + 'static,
    {
        let started = Instant::now();
        let KafkaPipeline {
            source,
            time,
            timely: mut config,
            shutdown,
            on_progress,
            profile,
        } = self;
        let resume = Arc::new(Resume::default());
        let handles: Arc<Mutex<BTreeMap<String, SinkHandle>>> = Arc::default();
        let worker_handles = Arc::clone(&handles);
        // Merges in progress are finished while a worker waits for messages.
        compaction::install(&mut config.worker, compaction::IDLE_MERGE_EFFORT);
        let guards = timely::execute(config, move |worker| {
            let index = worker.index();
            resume.size(worker.peers());
            let recording = profile.then(|| WorkerProfile::install(worker));
            let outputs = KafkaOutputs {
                target: SinkTarget {
                    brokers: source.brokers.clone(),
                    client: source.client.clone(),
                    resume: WorkerResume::new(&resume, index),
                },
                handles: Arc::clone(&worker_handles),
                producer: OnceCell::new(),
                unsent: Cell::new(None),
            };
            let pipeline = worker.next_dataflow_index();
            let mut inputs = worker.dataflow::<Time, _, _>(|scope| {
                let (inputs, streams) = Streams::new(scope);
                build(scope, streams, &outputs);
                inputs
            });
            let mut gossip = Gossip::install(worker, &resume);
            let probe = inputs.probe.clone();
            let mut names = Vec::new();
            let mut outcome = WorkerOutcome::default();
            let validator = EventValidator::new(time.reference, time.max_clock_skew);
            let mut reader = match WorkerSource::open(&source, validator, index, worker.peers()) {
                Ok(reader) => reader,
                Err(error) => {
                    outcome.failure = Some(error.to_string());
                    gossip.fail_run(worker);
                    abandon_dataflows(worker);
                    return outcome;
                }
            };
            resume.started(index);
            // Called on every turn of every loop the worker waits in: tells
            // the others this worker's status, including a stop or finish
            // asked of this process; and stops at once, as a crash would,
            // or because another worker failed, returning true. An abort is
            // told to the others (they cannot go on without this worker),
            // and the dataflows are dropped, as they would not end.
            let abort = |worker: &mut timely::worker::Worker,
                         gossip: &mut Gossip,
                         outcome: &mut WorkerOutcome| {
                // In this order: a worker of this process marks the run
                // failed only after the abort is asked, so an abort seen
                // through a sibling's mark is seen as an abort here too.
                let failed = resume.run_failed();
                let asked = shutdown.state();
                outcome.aborted = asked == ABORTING;
                outcome.peer_failed = !outcome.aborted && failed;
                resume.shut_down(index, asked.min(STOPPING));
                gossip.tell();
                if outcome.aborted || outcome.peer_failed {
                    gossip.fail_run(worker);
                    abandon_dataflows(worker);
                }
                outcome.aborted || outcome.peer_failed
            };
            let mut clock = EventClock::new(time);
            let mut replaying = true;
            let mut latest_stamp: Option<Time> = None;
            let mut checkpoints: Vec<(Time, Vec<(i32, i64)>)> = Vec::new();
            let mut paced_to: Time = 0;
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut quiet = false;
            let mut reported: Time = 0;
            let mut produced: Time = 0;
            loop {
                if abort(worker, &mut gossip, &mut outcome) {
                    return outcome;
                }
                let stop_at_end = match resume.shutdown() {
                    STOPPING => break,
                    FINISHING => true,
                    _ => source.stop_at_end,
                };
                // Wait for messages only when the last look found none, so a
                // busy stream is never held up by the wait.
                let wait = if quiet { POLL_WAIT } else { Duration::ZERO };
                quiet = reader.poll(READ_BATCH, wait, &mut batch) == 0;
                // Before the events: sent at the inputs' time, no later than theirs.
                reader.take_new_names(&mut names);
                inputs.send_names(&mut names);
                for polled in batch.drain(..) {
                    match polled {
                        Polled::Event(event, position) => {
                            let at = match clock.admit(event.ts) {
                                Admission::OnTime(at) => at,
                                Admission::Correction(at) => {
                                    outcome.summary.admitted_late += 1;
                                    at
                                }
                                Admission::Late => {
                                    outcome.summary.dead_letters.add(Reason::Late);
                                    let frontier = clock.frontier();
                                    let letter =
                                        late_letter(&source.topic, position, &event, frontier);
                                    inputs.dead_letters.update_at(letter, frontier, 1);
                                    continue;
                                }
                            };
                            latest_stamp = Some(latest_stamp.map_or(at, |latest| latest.max(at)));
                            inputs.events.update_at(event, at, 1);
                            outcome.summary.events.add(event.kind);
                        }
                        Polled::Dead(dead) => {
                            outcome.summary.dead_letters.add(dead.reason);
                            inputs.dead_letters.update_at(dead, clock.frontier(), 1);
                        }
                    }
                }
                let bound = read_bound(latest_stamp, &clock);
                if replaying && !reader.replaying() {
                    replaying = false;
                    resume.replay_done(index, bound);
                }
                let basis = match reader.event_time_basis(Instant::now()) {
                    Basis::Active(basis) => {
                        resume.share_basis(index, basis);
                        Some(basis)
                    }
                    Basis::Idle(vouched) => {
                        if let Some(vouched) = vouched {
                            resume.share_basis(index, vouched);
                        }
                        resume.shared_basis()
                    }
                    Basis::Waiting => None,
                };
                if let Some(watermark) = basis.and_then(|basis| clock.advance_from(basis)) {
                    inputs.advance_to(watermark);
                    if !replaying {
                        let positions = reader.positions();
                        if checkpoints
                            .last()
                            .is_none_or(|(_, last)| *last != positions)
                        {
                            checkpoints.push((bound.max(watermark), positions));
                        }
                    }
                    // A crashed or failed peer never releases its
                    // capabilities: stop waiting.
                    worker.step_while(|| {
                        probe.less_than(&paced_to)
                            && shutdown.state() != ABORTING
                            && !resume.run_failed()
                    });
                    paced_to = watermark;
                }
                worker.step();
                // One checkpoint per advance; a time counts as emitted once
                // the broker has acknowledged every message sent before its
                // checkpoint. The worker does not wait for that: it goes on
                // reading and computing while the broker answers.
                // Only once this worker's sinks have reconciled their topics:
                // before, they produce nothing, and a checkpoint acknowledged
                // then would vouch for results the reconciliation has yet to
                // deliver. The first one after covers its messages.
                let passed = probe.with_frontier(|frontier| frontier.first().copied());
                if let Some(time) = passed
                    .filter(|time| *time > produced)
                    .filter(|_| resume.sinks_reconciled(index))
                {
                    produced = time;
                    outputs.checkpoint(time);
                }
                if let Some(time) = outputs.acknowledged() {
                    resume.emitted(index, time);
                }
                if let Some(progress) = on_progress.as_ref().filter(|_| index == 0) {
                    let emitted = resume.emitted_through();
                    if emitted > reported {
                        reported = emitted;
                        progress(emitted);
                    }
                }
                commit_emitted(&reader, &resume, &mut checkpoints, &mut outcome);
                if stop_at_end && quiet && !reader.replaying() && reader.at_end() {
                    break;
                }
            }
            if replaying {
                if reader.replaying() {
                    // Stopped before it had read what the last run
                    // committed: the state is partial, so the topics and
                    // the commits are left as they are.
                    resume.abandon_replay(index);
                } else {
                    resume.replay_done(index, read_bound(latest_stamp, &clock));
                }
            }
            gossip.tell();
            let final_positions = reader.positions();
            drop(inputs);
            // Drains the pipeline's dataflow (the gossip's stays open):
            // every result of what was read is produced.
            while worker.installed_dataflows().contains(&pipeline) {
                if abort(worker, &mut gossip, &mut outcome) {
                    return outcome;
                }
                worker.step_or_park(Some(IDLE_STEP));
            }
            // Once every worker has flushed, every result is emitted.
            outputs.flush();
            resume.emitted(index, Time::MAX);
            gossip.tell();
            // In a cluster the others' last statuses (their sinks
            // reconciled, their results emitted) may still be on their way.
            // Settled once everything is emitted and committable, or once
            // nothing will be committed (a sink failed, or replay was cut
            // short); an abort asked meanwhile, even during the flush, is
            // honoured before committing.
            let settled = || {
                resume.commits_ended()
                    || (resume.emitted_through() == Time::MAX && resume.committable())
            };
            loop {
                if abort(worker, &mut gossip, &mut outcome) {
                    return outcome;
                }
                if settled() {
                    break;
                }
                worker.step_or_park(Some(IDLE_STEP));
            }
            if !final_positions.is_empty() {
                checkpoints.clear();
                checkpoints.push((Time::MAX, final_positions));
                commit_emitted(&reader, &resume, &mut checkpoints, &mut outcome);
            }
            if let Some(recording) = recording {
                outcome.summary.operators = recording.finish(worker);
            }
            outcome.summary.input_bytes = reader.bytes;
            outcome.errors.append(&mut reader.errors);
            // Offsets are committed. An abort now, here or in a peer, only
            // cuts the summary short; it is told as any abort, so that no
            // peer waits for a summary that will not come.
            let gone = || shutdown.state() == ABORTING || resume.run_failed();
            outcome.summary.cluster = gather_at_worker_zero(worker, &outcome.summary, gone);
            if gone() && abort(worker, &mut gossip, &mut outcome) {
                return outcome;
            }
            // The others may still be waiting to hear that this worker is
            // done: its gossip input closes, and the dataflows end once
            // every worker's has (unless a peer failed, which never closes).
            drop(gossip);
            while worker.step_or_park(Some(IDLE_STEP)) {
                if resume.run_failed() {
                    abandon_dataflows(worker);
                }
            }
            outcome
        })
        .map_err(KafkaError::Timely)?;
        let mut summary = KafkaSummary::default();
        let mut cluster = None;
        let mut peer_failed = false;
        for result in guards.join() {
            let mut outcome = result.map_err(KafkaError::Worker)?;
            if let Some(failure) = outcome.failure {
                return Err(KafkaError::Worker(failure));
            }
            peer_failed |= outcome.peer_failed;
            cluster = cluster.or_else(|| outcome.summary.cluster.take());
            summary.run.merge(&outcome.summary);
            summary.run.input_bytes += outcome.summary.input_bytes;
            summary.run.workers += 1;
            summary.commits += outcome.commits;
            summary.errors.extend(outcome.errors);
            summary.aborted |= outcome.aborted;
        }
        if peer_failed {
            return Err(KafkaError::Worker(
                "a worker in another process of the cluster failed or was aborted".to_owned(),
            ));
        }
        summary.run.elapsed = started.elapsed();
        summary.run.cluster = cluster
            .filter(|cluster| cluster.workers > summary.run.workers)
            .map(|mut cluster| {
                cluster.elapsed = summary.run.elapsed;
                cluster
            });
        summary.sinks = handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(topic, handle)| (topic.clone(), handle.report()))
            .collect();
        Ok(summary)
    }
}

/// Everything this worker has read entered the dataflow before this time.
fn read_bound(latest_stamp: Option<Time>, clock: &EventClock) -> Time {
    latest_stamp
        .map_or_else(|| clock.frontier(), |t| t + 1)
        .max(clock.frontier() + 1)
}

/// Drops every dataflow of `worker`, which will not end as they should
/// (the run was aborted, or a peer is gone): otherwise timely would step
/// them, after the worker's closure returns, until they do.
fn abandon_dataflows(worker: &mut timely::worker::Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}

/// What one worker did.
#[derive(Default)]
struct WorkerOutcome {
    summary: RunSummary,
    commits: u64,
    errors: Vec<String>,
    aborted: bool,
    /// This worker could not start.
    failure: Option<String>,
    /// Another worker failed or was aborted, so this one stopped.
    peer_failed: bool,
}

/// Commits the latest checkpoint whose results every sink has emitted: every
/// worker has flushed past its bound and every sink has reconciled.
fn commit_emitted(
    reader: &WorkerSource,
    resume: &Resume,
    checkpoints: &mut Vec<(Time, Vec<(i32, i64)>)>,
    outcome: &mut WorkerOutcome,
) {
    if !resume.committable() {
        return;
    }
    let emitted_through = resume.emitted_through();
    let emitted = checkpoints
        .iter()
        .take_while(|(bound, _)| *bound <= emitted_through)
        .count();
    let Some((_, positions)) = checkpoints.drain(..emitted).next_back() else {
        return;
    };
    match reader.commit(&positions) {
        Ok(()) => outcome.commits += 1,
        Err(error) => outcome.errors.push(error.to_string()),
    }
}
