//! The Kafka sink: an output collection as a changelog topic.
//!
//! Every update goes to the worker that owns its message key (by a hash of
//! the key's bytes), so every worker produces, each its own keys, and one
//! key's messages keep their order. Once the input frontier passes a time,
//! the sink applies that time's updates to the state it keeps per key and
//! produces what changed through its worker's [`SharedProducer`]. An upsert
//! sink sends each update with only its key rendered, consolidates a key's
//! updates over every time that became final at once, keeps the records,
//! and renders a key's value as JSON only when it produces it; one of
//! records that hold one row per key ([`OutputRecord::one_row_per_key`])
//! keeps no state once the topic is up to date. A raw-diff sink renders
//! each update where it is. The worker's loop notes a delivery checkpoint
//! per frontier advance, for all of its sinks at once, without waiting for
//! the broker; offsets are committed only once every worker's messages up
//! to a checkpoint past their results are acknowledged
//! ([`Resume::emitted_through`](super::resume::Resume::emitted_through)).
//!
//! On start each worker's sink reads its topic back, keeping the keys it
//! owns, so it knows what an earlier run emitted. While the pipeline replays the input up to the offsets that run
//! committed, the sink only builds state; once replay is over it
//! *reconciles*: it produces exactly the difference between its state and
//! the topic, and from then on every change. So a restart never emits a
//! partial value and never counts an update twice.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use differential_dataflow::collection::VecCollection;
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{Data, ExchangeData};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use xxhash_rust::xxh3::{xxh3_64, Xxh3DefaultBuilder};

use super::resume::WorkerResume;
use super::topic::{compacted, read_topic, MessageProducer};
use super::KafkaError;
use crate::pipeline::Time;
use crate::sinks::{json_keys, push_object, OutputRecord, SinkError, SinkHandle};

/// How a collection's updates become messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangelogMode {
    /// One message per changed key, keyed by the record's key columns
    /// ([`OutputRecord::key_columns`]) as a JSON object, whose value is the
    /// key's current row as a JSON object (a JSON array of rows when the key
    /// holds several, or one row more than once), or a tombstone when the
    /// key no longer holds any. A compacted topic holds the current answer.
    #[default]
    Upsert,
    /// One message per update, keyed as in `Upsert`, whose value is
    /// `{"time":T,"diff":D,"row":{...}}`. Summing `diff` per row over the
    /// whole topic gives the current answer.
    RawDiff,
}

/// How long a flush waits for the broker to acknowledge its messages
/// before it records an error (and reading a topic back, to finish).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a sink that has not reconciled its topic yet looks whether it
/// may, when nothing else wakes it.
const RECONCILE_POLL: Duration = Duration::from_millis(5);

/// A message key (a JSON object) with its hash, which picks the worker
/// that produces it and, leading the key's order, makes sorting a batch of
/// updates compare hashes instead of the long JSON prefix most keys of a
/// topic share (`{"granularity":"hour","bucket":"2026-…`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct MessageKey {
    hash: u64,
    bytes: Vec<u8>,
}

impl MessageKey {
    fn new(bytes: Vec<u8>) -> MessageKey {
        MessageKey {
            hash: xxh3_64(&bytes),
            bytes,
        }
    }

    /// The worker, of `peers`, that produces the messages with this key.
    fn owner(&self, peers: usize) -> usize {
        key_owner(self.hash, peers)
    }
}

/// The worker, of `peers`, that produces the messages whose key hashes to
/// `hash`.
fn key_owner(hash: u64, peers: usize) -> usize {
    if peers <= 1 {
        return 0;
    }
    (hash % peers as u64) as usize
}

/// The one producer every Kafka sink of a worker produces through, so that
/// one flush (one round trip to the broker) per frontier advance
/// acknowledges every topic's messages, instead of one flush per sink.
pub(crate) struct SharedProducer {
    producer: MessageProducer,
    resume: WorkerResume,
    /// Every sink of the worker: its topic, its report, and the messages
    /// it produced since the last checkpoint.
    sinks: RefCell<Vec<(String, SinkHandle, Rc<Cell<u64>>)>>,
    /// Checkpoints whose messages are not all acknowledged yet, oldest first.
    checkpoints: RefCell<VecDeque<Checkpoint>>,
    /// A message was refused: nothing more is produced.
    failed: Cell<bool>,
}

/// Every result before `time` has been sent: as the first `sent` messages,
/// `rows[i]` of them by sink `i`.
struct Checkpoint {
    time: Time,
    sent: u64,
    rows: Vec<u64>,
    /// When it was noted: unanswered for [`DELIVERY_TIMEOUT`] after, the
    /// sinks fail, as a flush that timed out did.
    noted: Instant,
}

impl SharedProducer {
    pub(crate) fn new(target: &SinkTarget) -> Result<SharedProducer, KafkaError> {
        Ok(SharedProducer {
            producer: MessageProducer::new(&target.brokers, &target.client)?,
            resume: target.resume.clone(),
            sinks: RefCell::new(Vec::new()),
            checkpoints: RefCell::new(VecDeque::new()),
            failed: Cell::new(false),
        })
    }

    fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Registers a sink; it counts the messages it produces in the cell.
    fn register(&self, topic: &str, handle: &SinkHandle) -> Rc<Cell<u64>> {
        let unflushed = Rc::new(Cell::new(0));
        self.sinks
            .borrow_mut()
            .push((topic.to_owned(), handle.clone(), Rc::clone(&unflushed)));
        unflushed
    }

    fn send(&self, topic: &str, handle: &SinkHandle, key: &[u8], value: Option<&[u8]>) -> bool {
        if self.failed() {
            return false;
        }
        match self.producer.send(topic, None, Some(key), value) {
            Ok(()) => true,
            Err(error) => {
                self.fail(topic, handle, error.to_string());
                false
            }
        }
    }

    /// Notes that every result before `time` has been sent: once the broker
    /// has acknowledged the messages sent so far,
    /// [`SharedProducer::acknowledged`] returns `time`. The worker goes on
    /// meanwhile; it does not wait for the broker.
    pub(crate) fn checkpoint(&self, time: Time) {
        let rows = self
            .sinks
            .borrow()
            .iter()
            .map(|(_, _, unflushed)| unflushed.replace(0))
            .collect();
        self.checkpoints.borrow_mut().push_back(Checkpoint {
            time,
            sent: self.producer.sent(),
            rows,
            noted: Instant::now(),
        });
    }

    /// Serves delivery reports without waiting; returns the latest
    /// checkpoint whose messages the broker has all acknowledged since the
    /// last call (`None`: none, or a message was refused, which fails the
    /// sinks), and counts their rows in the sinks' reports.
    pub(crate) fn acknowledged(&self) -> Option<Time> {
        if self.failed() {
            return None;
        }
        // Serve reports even with nothing to publish: they hold room in
        // librdkafka's queue until served.
        let answered = self.producer.answered();
        let overdue = self
            .checkpoints
            .borrow()
            .front()
            .filter(|oldest| oldest.sent > answered)
            .filter(|oldest| oldest.noted.elapsed() >= DELIVERY_TIMEOUT)
            .map(|oldest| oldest.rows.clone());
        if let Some(rows) = overdue {
            self.fail_with_rows(
                &rows,
                &format!("messages not acknowledged after {DELIVERY_TIMEOUT:?}"),
            );
            return None;
        }
        self.settle(|checkpoint| checkpoint.sent <= answered)
    }

    /// Waits for the broker to acknowledge every message produced so far,
    /// and counts them in their sinks' reports.
    pub(crate) fn flush(&self) {
        if self.failed() {
            return;
        }
        let time = self
            .checkpoints
            .borrow()
            .back()
            .map_or(Time::MIN, |last| last.time);
        self.checkpoint(time);
        match self.producer.flush(DELIVERY_TIMEOUT) {
            Ok(()) => {
                self.settle(|_| true);
            }
            Err(error) => {
                // Refused or timed out: whatever is pending is not
                // emitted, and no offset may be committed after this.
                let mut rows = vec![0; self.sinks.borrow().len()];
                for checkpoint in self.checkpoints.borrow_mut().drain(..) {
                    for (sum, more) in rows.iter_mut().zip(&checkpoint.rows) {
                        *sum += more;
                    }
                }
                self.fail_with_rows(&rows, &error.to_string());
            }
        }
    }

    /// Fails the sinks that have `rows` at stake, or every sink if none
    /// has: the error is recorded and commits stop either way.
    fn fail_with_rows(&self, rows: &[u64], message: &str) {
        let sinks = self.sinks.borrow();
        let any = rows.iter().any(|rows| *rows > 0);
        for (index, (topic, handle, _)) in sinks.iter().enumerate() {
            if !any || rows.get(index).is_some_and(|rows| *rows > 0) {
                self.fail(topic, handle, message.to_owned());
            }
        }
        if sinks.is_empty() && !self.failed() {
            self.failed.set(true);
            self.resume.sink_failed();
        }
    }

    /// Takes the oldest checkpoints while `answered` holds for them; on a
    /// refused message fails every sink with rows in them.
    fn settle(&self, answered: impl Fn(&Checkpoint) -> bool) -> Option<Time> {
        let sinks = self.sinks.borrow();
        let mut checkpoints = self.checkpoints.borrow_mut();
        let mut latest = None;
        while let Some(checkpoint) = checkpoints.pop_front() {
            if !answered(&checkpoint) {
                checkpoints.push_front(checkpoint);
                break;
            }
            if let Err(error) = self.producer.undelivered() {
                drop(sinks);
                self.fail_with_rows(&checkpoint.rows, &error.to_string());
                return None;
            }
            for ((_, handle, _), rows) in sinks.iter().zip(&checkpoint.rows) {
                handle.add_rows(*rows);
            }
            latest = Some(checkpoint.time);
        }
        latest
    }

    /// Records the failure and stops producing; offsets are no longer
    /// committed, so a restart reconciles the topic.
    fn fail(&self, topic: &str, handle: &SinkHandle, message: String) {
        handle.record(SinkError::Kafka {
            sink: topic.to_owned(),
            message,
        });
        self.failed.set(true);
        self.resume.sink_failed();
    }
}

/// Where a sink produces, shared by every sink of one run.
#[derive(Clone, Debug)]
pub(crate) struct SinkTarget {
    pub(crate) brokers: String,
    pub(crate) client: BTreeMap<String, String>,
    pub(crate) resume: WorkerResume,
}

/// A rendered update: the message key and the row, as JSON objects.
type Rendered = (MessageKey, Vec<u8>);

/// Sinks `collection` to `topic` in `mode` through this worker's
/// `producer` (`Err`: it could not be created), reporting into `handle`,
/// and attaches `probe` after the sink: once the probe passes a time, every
/// update before it has been produced (and once the workers have flushed,
/// acknowledged: [`Resume::emitted_through`](super::resume::Resume::emitted_through)).
pub(crate) fn sink_to_topic<'scope, D: OutputRecord>(
    collection: VecCollection<'scope, Time, D, isize>,
    topic: &str,
    mode: ChangelogMode,
    target: &SinkTarget,
    producer: Result<Rc<SharedProducer>, String>,
    probe: &ProbeHandle<Time>,
    handle: SinkHandle,
) -> SinkHandle {
    handle.attach();
    let peers = collection.scope().peers();
    let owner = Owner {
        index: collection.scope().index(),
        peers,
    };
    target.resume.register_sink();
    let opened = producer.and_then(|producer| {
        TopicWriter::open(topic, mode, target, owner, producer, handle.clone())
            .map_err(|error| error.to_string())
    });
    let core = match opened {
        Ok(writer) => Some(writer),
        Err(message) => {
            handle.record(SinkError::Kafka {
                sink: topic.to_owned(),
                message,
            });
            target.resume.sink_failed();
            None
        }
    };
    let name = format!("Kafka sink: {topic}");
    let written = match mode {
        // Upserts keep the records themselves and render a key's value
        // once, when it is produced: a changed row's retraction needs no
        // rendering, only its key.
        //
        // Every update keeps its own time on the way to its key's owner,
        // which consolidates a key's updates over all the times that
        // became final at once: it sees them all, whichever worker they
        // came from, so a key of one row per key gains at most one row.
        // (Consolidating across times before the exchange would stamp them
        // with the last time each sending worker had ready, which differs
        // between workers: a key's new row and its old row's retraction
        // could then reach the owner in different advances.)
        ChangelogMode::Upsert => {
            let key_keys = key_json_keys::<D>();
            let keyed = collection.map(move |record| {
                let mut key = Vec::new();
                push_object(&mut key, &key_keys, &record.key_values());
                (MessageKey::new(key), record)
            });
            write(
                keyed.inner,
                peers,
                &name,
                core,
                handle.clone(),
                TopicWriter::absorb_upserts,
            )
        }
        ChangelogMode::RawDiff => {
            let row_keys = json_keys(&D::columns());
            let key_keys = key_json_keys::<D>();
            let rendered = render(collection, &format!("{name}: render"), move |record| {
                let values = record.values();
                let mut key = Vec::new();
                push_object(&mut key, &key_keys, &values);
                let mut row = Vec::new();
                push_object(&mut row, &row_keys, &values);
                (MessageKey::new(key), row)
            });
            write(
                rendered,
                peers,
                &name,
                core,
                handle.clone(),
                TopicWriter::absorb_diffs,
            )
        }
    };
    written.probe_with(probe);
    handle
}

/// Hands `updates` (each a message key and what the writer needs of the
/// record) to the worker that owns the key, and there to `core`'s
/// `absorb`; advances `core` with the input frontier.
fn write<'scope, D: OutputRecord, V: ExchangeData>(
    updates: StreamVec<'scope, Time, ((MessageKey, V), Time, isize)>,
    peers: usize,
    name: &str,
    mut core: Option<TopicWriter<D>>,
    closing: SinkHandle,
    absorb: fn(&mut TopicWriter<D>, &mut Vec<((MessageKey, V), Time, isize)>),
) -> StreamVec<'scope, Time, ()> {
    let to_key_owner = Exchange::new(
        move |((key, _), _time, _diff): &((MessageKey, V), Time, isize)| key.owner(peers) as u64,
    );
    let scope = updates.scope();
    updates.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        to_key_owner,
        name,
        move |capability, info| {
            let activator = scope.activator_for(info.address);
            let mut held: Option<Capability<Time>> = Some(capability);
            move |(input, frontier), _output| {
                input.for_each(|_stamp, updates| {
                    if let Some(core) = core.as_mut() {
                        absorb(core, updates);
                    }
                    updates.clear();
                });
                let frontier = frontier.frontier().as_option().copied();
                if let Some(core) = core.as_mut() {
                    core.advance(frontier);
                }
                // Whether it may reconcile depends on what the other
                // workers say (`Resume::reconcile_at`), which in a cluster
                // can arrive after the input's last change: until then the
                // sink looks again shortly, and keeps its capability once
                // the input is done, so that the run does not end before
                // the topic is reconciled.
                if core
                    .as_ref()
                    .is_some_and(TopicWriter::awaits_reconciliation)
                {
                    activator.activate_after(RECONCILE_POLL);
                    if frontier.is_none() {
                        return;
                    }
                }
                // The capability follows the input frontier only after
                // the sink has produced what came before it.
                if follow_frontier(&mut held, frontier) {
                    closing.close();
                }
            }
        },
    )
}

/// Hands on each update of `collection` as `prepare` renders it, on the
/// worker that has it, once its time is final, consolidated per time.
fn render<'scope, D: OutputRecord, O: Data>(
    collection: VecCollection<'scope, Time, D, isize>,
    name: &str,
    prepare: impl Fn(D) -> O + 'static,
) -> StreamVec<'scope, Time, (O, Time, isize)> {
    collection
        .inner
        .unary_frontier(Pipeline, name, move |capability, _info| {
            let mut held: Option<Capability<Time>> = Some(capability);
            let mut pending: BTreeMap<Time, Vec<(D, isize)>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|_stamp, updates| {
                    for (record, time, diff) in updates.drain(..) {
                        pending.entry(time).or_default().push((record, diff));
                    }
                });
                let frontier = frontier.frontier().as_option().copied();
                let ready = take_ready(&mut pending, frontier);
                if let Some(held) = held.as_ref().filter(|_| !ready.is_empty()) {
                    let mut session = output.session(held);
                    for (time, mut updates) in ready {
                        consolidate(&mut updates);
                        for (record, diff) in updates {
                            session.give((prepare(record), time, diff));
                        }
                    }
                }
                follow_frontier(&mut held, frontier);
            }
        })
}

/// Moves `updates` into `pending`, by time.
fn absorb_into<V>(
    pending: &mut BTreeMap<Time, Vec<(V, isize)>>,
    updates: &mut Vec<(V, Time, isize)>,
) {
    for (update, time, diff) in updates.drain(..) {
        pending.entry(time).or_default().push((update, diff));
    }
}

/// The changes of each key in `updates`, which are sorted by key.
fn by_key<D>(
    updates: Vec<((MessageKey, D), isize)>,
) -> impl Iterator<Item = (Vec<u8>, Vec<(D, isize)>)> {
    let mut updates = updates.into_iter().peekable();
    std::iter::from_fn(move || {
        let ((key, record), diff) = updates.next()?;
        let mut changes = vec![(record, diff)];
        while let Some(((_, record), diff)) = updates.next_if(|((next, _), _)| *next == key) {
            changes.push((record, diff));
        }
        Some((key.bytes, changes))
    })
}

/// Removes from `pending` and returns the updates at times before
/// `frontier` (`None`: the input has ended, all of them).
fn take_ready<V>(
    pending: &mut BTreeMap<Time, Vec<V>>,
    frontier: Option<Time>,
) -> BTreeMap<Time, Vec<V>> {
    match frontier {
        Some(time) => {
            let later = pending.split_off(&time);
            std::mem::replace(pending, later)
        }
        None => std::mem::take(pending),
    }
}

/// Moves `held` up to the input `frontier`, or drops it once the input has
/// ended; returns whether it was dropped just now.
fn follow_frontier(held: &mut Option<Capability<Time>>, frontier: Option<Time>) -> bool {
    match (frontier, held.as_mut()) {
        (Some(time), Some(capability)) => {
            if capability.time() < &time {
                capability.downgrade(&time);
            }
            false
        }
        (Some(_), None) => false,
        (None, _) => held.take().is_some(),
    }
}

/// The `"name":` prefixes of `D`'s key columns.
fn key_json_keys<D: OutputRecord>() -> Vec<Vec<u8>> {
    let columns = D::columns();
    json_keys(&columns[..D::key_columns().min(columns.len())])
}

/// Which worker a sink runs on, of how many.
#[derive(Clone, Copy, Debug)]
struct Owner {
    index: usize,
    peers: usize,
}

impl Owner {
    fn owns(&self, key: &[u8]) -> bool {
        key_owner(xxh3_64(key), self.peers) == self.index
    }
}

/// One worker's side of a Kafka sink: the state of the keys it owns, and
/// what the topic holds for them. Keys are JSON objects, and so are rows
/// once rendered.
struct TopicWriter<D> {
    topic: String,
    mode: ChangelogMode,
    handle: SinkHandle,
    resume: WorkerResume,
    producer: Rc<SharedProducer>,
    /// Messages produced since the producer's last checkpoint.
    unflushed: Rc<Cell<u64>>,
    /// The `"name":` prefixes of the columns, to render rows.
    row_keys: Vec<Vec<u8>>,
    /// Upsert: updates not yet final, by time.
    pending_records: BTreeMap<Time, Vec<((MessageKey, D), isize)>>,
    /// Raw diff: rendered updates not yet final, by time.
    pending_rows: BTreeMap<Time, Vec<(Rendered, isize)>>,
    /// Upsert: the records each key holds (consolidated).
    records: KeyMap<Vec<(D, isize)>>,
    /// The topic has been reconciled with the state. From then on every
    /// change is produced as it becomes final, so the topic's contents
    /// below are no longer needed (and are dropped).
    reconciled: bool,
    /// Upsert, until reconciled: the value the topic holds per key.
    topic_values: KeyMap<Vec<u8>>,
    /// Raw diff, until reconciled: the multiplicity of each row, with its key.
    rows: KeyMap<(Vec<u8>, i64)>,
    /// Raw diff, until reconciled: the sum of the topic's diffs per row,
    /// with its key.
    topic_rows: KeyMap<(Vec<u8>, i64)>,
}

/// A map keyed by JSON bytes, with a hasher faster than SipHash on them.
type KeyMap<V> = HashMap<Vec<u8>, V, Xxh3DefaultBuilder>;

/// The value of a raw-diff message, as read back.
#[derive(Deserialize)]
struct RawDiffMessage<'a> {
    #[serde(borrow)]
    row: &'a serde_json::value::RawValue,
    diff: i64,
}

impl<D: OutputRecord> TopicWriter<D> {
    fn open(
        topic: &str,
        mode: ChangelogMode,
        target: &SinkTarget,
        owner: Owner,
        producer: Rc<SharedProducer>,
        handle: SinkHandle,
    ) -> Result<TopicWriter<D>, KafkaError> {
        let mut writer = TopicWriter {
            topic: topic.to_owned(),
            mode,
            handle: handle.clone(),
            resume: target.resume.clone(),
            unflushed: producer.register(topic, &handle),
            producer,
            row_keys: json_keys(&D::columns()),
            pending_records: BTreeMap::new(),
            pending_rows: BTreeMap::new(),
            records: KeyMap::default(),
            reconciled: false,
            topic_values: KeyMap::default(),
            rows: KeyMap::default(),
            topic_rows: KeyMap::default(),
        };
        let mut messages = read_topic(&target.brokers, topic, &target.client, DELIVERY_TIMEOUT)?;
        messages.retain(|message| owner.owns(message.key.as_deref().unwrap_or_default()));
        match mode {
            ChangelogMode::Upsert => {
                writer.topic_values = compacted(&messages).into_iter().collect()
            }
            ChangelogMode::RawDiff => {
                for message in &messages {
                    let parsed = message
                        .value
                        .as_deref()
                        .map(serde_json::from_slice::<RawDiffMessage<'_>>);
                    match parsed {
                        Some(Ok(raw)) => {
                            let key = message.key.clone().unwrap_or_default();
                            let row = raw.row.get().as_bytes();
                            add_row_diff(&mut writer.topic_rows, &key, row, raw.diff);
                        }
                        _ => writer.record(format!(
                            "partition {} offset {} is not a raw diff message",
                            message.partition, message.offset
                        )),
                    }
                }
            }
        }
        Ok(writer)
    }

    /// Whether the topic is still to be reconciled: not yet, the sink has
    /// not failed, and the run still may (then nothing more is produced
    /// and a restart reconciles).
    fn awaits_reconciliation(&self) -> bool {
        !self.reconciled && !self.producer.failed() && !self.resume.never_reconciles()
    }

    fn absorb_upserts(&mut self, updates: &mut Vec<((MessageKey, D), Time, isize)>) {
        absorb_into(&mut self.pending_records, updates);
    }

    fn absorb_diffs(&mut self, updates: &mut Vec<(Rendered, Time, isize)>) {
        absorb_into(&mut self.pending_rows, updates);
    }

    /// Applies, and once reconciled produces, every update before
    /// `frontier` (`None`: all). The worker's loop flushes.
    fn advance(&mut self, frontier: Option<Time>) {
        match self.mode {
            // Upserts: one message per changed key for everything that
            // became final, not one per time. A compacted topic keeps only
            // the last value anyway, and a key that changes every tick would
            // otherwise cost a message per tick.
            ChangelogMode::Upsert => {
                let ready = take_ready(&mut self.pending_records, frontier);
                self.apply_upserts(ready.into_values().flatten().collect());
            }
            ChangelogMode::RawDiff => {
                for (time, updates) in take_ready(&mut self.pending_rows, frontier) {
                    self.apply_diffs(time, updates);
                }
            }
        }
        if !self.reconciled {
            let replayed = self
                .resume
                .reconcile_at()
                .filter(|resume_time| frontier.is_none_or(|frontier| frontier >= *resume_time));
            if let Some(resume_time) = replayed {
                self.reconcile(frontier.unwrap_or(resume_time));
            }
        }
    }

    /// Applies `updates` and, once reconciled, produces the new value of
    /// every key they change. After consolidation a key changes only if its
    /// multiset of rows does, so its new value always differs from the one
    /// last produced.
    fn apply_upserts(&mut self, mut updates: Vec<((MessageKey, D), isize)>) {
        consolidate(&mut updates);
        if self.reconciled && D::one_row_per_key() {
            self.produce_upserts(updates);
            return;
        }
        // Consolidation sorted the updates by key: one lookup per key.
        for (key, changes) in by_key(updates) {
            let records = self.records.entry(key.clone()).or_default();
            records.extend(changes);
            consolidate(records);
            if records.is_empty() {
                self.records.remove(&key);
            }
            if self.reconciled {
                let value = self.value_of(&key);
                self.send(&key, value.as_deref());
            }
        }
    }

    /// Produces the new value of every key that consolidated `updates`
    /// (sorted by key) change, for records of one row per key and a topic
    /// already up to date: the row a key gains, or a tombstone if it gains
    /// none. No rows are kept.
    fn produce_upserts(&mut self, updates: Vec<((MessageKey, D), isize)>) {
        for (key, mut inserted) in by_key(updates) {
            inserted.retain(|(_, diff)| *diff > 0);
            let value = match inserted.as_slice() {
                [] => None,
                [(record, 1)] => {
                    let mut row = Vec::new();
                    push_object(&mut row, &self.row_keys, &record.values());
                    Some(row)
                }
                _ => {
                    // The type's promise is broken: without the key's other
                    // rows its value is unknown, so the error is reported
                    // (the run ends with it) and the key left as it was.
                    let copies: isize = inserted.iter().map(|(_, copies)| copies).sum();
                    self.record(format!(
                        "key {} gained {copies} rows at once, but its records hold one row per key",
                        String::from_utf8_lossy(&key),
                    ));
                    continue;
                }
            };
            self.send(&key, value.as_deref());
        }
    }

    fn apply_diffs(&mut self, time: Time, mut updates: Vec<(Rendered, isize)>) {
        consolidate(&mut updates);
        for ((key, row), diff) in updates {
            let diff = i64::try_from(diff).unwrap_or(i64::MAX);
            if self.reconciled {
                self.produce_diff(&key.bytes, &row, time, diff);
            } else {
                add_row_diff(&mut self.rows, &key.bytes, &row, diff);
            }
        }
    }

    /// Produces the difference between the state and what the topic holds,
    /// then forgets what the topic holds.
    fn reconcile(&mut self, time: Time) {
        match self.mode {
            ChangelogMode::Upsert => {
                let topic_values = std::mem::take(&mut self.topic_values);
                let keys: BTreeSet<&Vec<u8>> =
                    self.records.keys().chain(topic_values.keys()).collect();
                for key in keys {
                    let value = self.value_of(key);
                    if topic_values.get(key) != value.as_ref() {
                        self.send(key, value.as_deref());
                    }
                }
            }
            ChangelogMode::RawDiff => {
                let rows = std::mem::take(&mut self.rows);
                let topic_rows = std::mem::take(&mut self.topic_rows);
                let all: BTreeSet<&Vec<u8>> = rows.keys().chain(topic_rows.keys()).collect();
                for row in all {
                    let (key, wanted) = match (rows.get(row), topic_rows.get(row)) {
                        (Some((key, count)), _) => (key, *count),
                        (None, Some((key, _))) => (key, 0),
                        (None, None) => continue,
                    };
                    let emitted = topic_rows.get(row).map_or(0, |(_, sum)| *sum);
                    if wanted != emitted {
                        self.produce_diff(key, row, time, wanted - emitted);
                    }
                }
            }
        }
        self.reconciled = true;
        if D::one_row_per_key() {
            // From now on a key's new value is the row it gains.
            self.records = KeyMap::default();
        }
        self.resume.sink_reconciled();
    }

    /// The message value for `key`: its row, an array of rows, or `None`
    /// (tombstone) when it holds none.
    fn value_of(&self, key: &[u8]) -> Option<Vec<u8>> {
        let records = self.records.get(key)?;
        let mut rows: Vec<(Vec<u8>, usize)> = Vec::with_capacity(records.len());
        for (record, count) in records {
            let mut row = Vec::new();
            push_object(&mut row, &self.row_keys, &record.values());
            match usize::try_from(*count) {
                Ok(copies) => rows.push((row, copies)),
                Err(_) => self.record(format!(
                    "row {} has multiplicity {count}",
                    String::from_utf8_lossy(&row)
                )),
            }
        }
        match rows.as_mut_slice() {
            [] => None,
            [(row, 1)] => Some(std::mem::take(row)),
            _ => {
                let mut array = vec![b'['];
                let copies = rows
                    .iter()
                    .flat_map(|(row, copies)| std::iter::repeat_n(row, *copies));
                for (index, row) in copies.enumerate() {
                    if index > 0 {
                        array.push(b',');
                    }
                    array.extend_from_slice(row);
                }
                array.push(b']');
                Some(array)
            }
        }
    }

    fn produce_diff(&self, key: &[u8], row: &[u8], time: Time, diff: i64) {
        let mut value = format!("{{\"time\":{time},\"diff\":{diff},\"row\":").into_bytes();
        value.extend_from_slice(row);
        value.push(b'}');
        self.send(key, Some(&value));
    }

    fn send(&self, key: &[u8], value: Option<&[u8]>) {
        if self.producer.send(&self.topic, &self.handle, key, value) {
            self.unflushed.set(self.unflushed.get() + 1);
        }
    }

    fn record(&self, message: String) {
        self.handle.record(SinkError::Kafka {
            sink: self.topic.clone(),
            message,
        });
    }
}

/// Notes `diff` more copies of `row` (keyed by `key`) in `rows`.
fn add_row_diff(rows: &mut KeyMap<(Vec<u8>, i64)>, key: &[u8], row: &[u8], diff: i64) {
    let entry = rows
        .entry(row.to_vec())
        .or_insert_with(|| (key.to_vec(), 0));
    entry.1 += diff;
    if entry.1 == 0 {
        rows.remove(row);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use differential_dataflow::input::Input;
    use rdkafka::mocking::MockCluster;
    use timely::dataflow::ProbeHandle;

    use super::*;
    use crate::counts::HourlyKindCount;
    use crate::event::EventKind;
    use crate::kafka::resume::Resume;

    /// In a cluster, a worker may hear that the others have replayed only
    /// after its sink's input has ended. The sink must still reconcile its
    /// topic then, not let the run finish without producing. Here worker 1
    /// of two is remote: its status is merged in only once worker 0's
    /// input is closed and the dataflow has settled.
    #[test]
    fn a_sink_waits_to_reconcile_when_the_others_replay_after_its_input_ends() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        let resume = Arc::new(Resume::default());
        resume.size(2);
        let remote = Arc::clone(&resume);
        timely::execute(timely::Config::thread(), move |worker| {
            let target = SinkTarget {
                brokers: brokers.clone(),
                client: BTreeMap::new(),
                resume: WorkerResume::new(&resume, 0),
            };
            let probe = ProbeHandle::new();
            let producer = Rc::new(SharedProducer::new(&target).expect("producer"));
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, counts) = scope.new_collection::<HourlyKindCount, isize>();
                let producer = Ok(Rc::clone(&producer));
                let handle = SinkHandle::new("counts");
                sink_to_topic(
                    counts,
                    "counts",
                    ChangelogMode::Upsert,
                    &target,
                    producer,
                    &probe,
                    handle,
                );
                input
            });
            resume.started(0);
            resume.replay_done(0, 1);
            let count = HourlyKindCount {
                hour: 0,
                kind: EventKind::Click,
                count: 3,
            };
            input.update_at(count, 0, 1);
            drop(input);
            for _ in 0..100 {
                worker.step();
            }
            assert!(!probe.done(), "the sink holds on until it reconciles");
            remote.hear_replayed(1, 1);
            while !probe.done() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            producer.flush();
        })
        .expect("timely");
        let messages = read_topic(
            &cluster.bootstrap_servers(),
            "counts",
            &BTreeMap::new(),
            DELIVERY_TIMEOUT,
        )
        .expect("read back");
        assert_eq!(messages.len(), 1, "the count was produced once reconciled");
    }
}
