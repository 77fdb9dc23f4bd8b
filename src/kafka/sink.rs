//! The Kafka sink: an output collection as a changelog topic.
//!
//! Every update is exchanged to worker 0, which alone produces. Once the
//! input frontier passes a time, the sink applies that time's updates to
//! the state it keeps per key, produces what changed, and waits for the
//! broker to acknowledge every message before it lets its frontier (and so
//! the pipeline's offset commits) pass that time.
//!
//! On start the sink reads its topic back, so it knows what an earlier run
//! emitted. While the pipeline replays the input up to the offsets that run
//! committed, the sink only builds state; once replay is over it
//! *reconciles*: it produces exactly the difference between its state and
//! the topic, and from then on every change. So a restart never emits a
//! partial value and never counts an update twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::collection::VecCollection;
use differential_dataflow::consolidation::consolidate;
use serde::Deserialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::ProbeHandle;

use super::resume::Resume;
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

/// How long a sink waits for the broker to acknowledge its messages before
/// it records an error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a sink produces, shared by every sink of one run.
#[derive(Clone, Debug)]
pub(crate) struct SinkTarget {
    pub(crate) brokers: String,
    pub(crate) client: BTreeMap<String, String>,
    pub(crate) resume: Arc<Resume>,
}

/// Sinks `collection` to `topic` in `mode`, reporting into `handle`, and
/// attaches `probe` after the sink: once the probe passes a time, every
/// update before it has been acknowledged by the broker.
pub(crate) fn sink_to_topic<'scope, D: OutputRecord>(
    collection: VecCollection<'scope, Time, D, isize>,
    topic: &str,
    mode: ChangelogMode,
    target: &SinkTarget,
    probe: &ProbeHandle<Time>,
    handle: SinkHandle,
) -> SinkHandle {
    handle.attach();
    let writes = collection.scope().index() == 0;
    let mut core = if writes {
        target.resume.register_sink();
        match TopicWriter::<D>::open(topic, mode, target, handle.clone()) {
            Ok(writer) => Some(writer),
            Err(error) => {
                handle.record(SinkError::Kafka {
                    sink: topic.to_owned(),
                    message: error.to_string(),
                });
                target.resume.sink_failed();
                None
            }
        }
    } else {
        None
    };
    let name = format!("Kafka sink: {topic}");
    let closing = handle.clone();
    let to_worker_zero = Exchange::new(|_update: &(D, Time, isize)| 0u64);
    collection
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            to_worker_zero,
            &name,
            move |capability, _info| {
                let mut held: Option<Capability<Time>> = Some(capability);
                move |(input, frontier), _output| {
                    input.for_each(|_stamp, updates| {
                        if let Some(core) = core.as_mut() {
                            core.absorb(updates);
                        }
                        updates.clear();
                    });
                    let frontier = frontier.frontier().as_option().copied();
                    if let Some(core) = core.as_mut() {
                        core.advance(frontier);
                    }
                    match frontier {
                        // The capability follows the input frontier only after
                        // the sink has produced and flushed what came before it.
                        Some(time) => {
                            if let Some(held) = held.as_mut() {
                                if held.time() < &time {
                                    held.downgrade(&time);
                                }
                            }
                        }
                        None => {
                            if held.take().is_some() {
                                closing.close();
                            }
                        }
                    }
                }
            },
        )
        .probe_with(probe);
    handle
}

/// Worker 0's side of a Kafka sink: the state per key, what the topic
/// holds, and the producer.
struct TopicWriter<D> {
    topic: String,
    mode: ChangelogMode,
    handle: SinkHandle,
    resume: Arc<Resume>,
    producer: MessageProducer,
    /// `"name":` prefixes of every column, and of the key columns.
    row_keys: Vec<Vec<u8>>,
    key_keys: Vec<Vec<u8>>,
    /// Updates not yet final, by time.
    pending: BTreeMap<Time, Vec<(D, isize)>>,
    /// Upsert: the records each key holds (consolidated).
    records: HashMap<Vec<u8>, Vec<(D, isize)>>,
    /// Upsert: the value the topic holds per key.
    topic_values: HashMap<Vec<u8>, Vec<u8>>,
    /// Upsert: the keys whose records changed since values were last produced.
    changed: BTreeSet<Vec<u8>>,
    /// Raw diff: the multiplicity of each row (as JSON), with its key.
    rows: HashMap<Vec<u8>, (Vec<u8>, i64)>,
    /// Raw diff: the sum of the topic's diffs per row, with its key.
    topic_rows: HashMap<Vec<u8>, (Vec<u8>, i64)>,
    /// The topic has been reconciled with the state.
    reconciled: bool,
    /// Messages produced since the last flush.
    unflushed: u64,
    produced: u64,
    failed: bool,
}

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
        handle: SinkHandle,
    ) -> Result<TopicWriter<D>, KafkaError> {
        let producer = MessageProducer::new(&target.brokers, &target.client)?;
        let columns = D::columns();
        let key_len = D::key_columns().min(columns.len());
        let mut writer = TopicWriter {
            topic: topic.to_owned(),
            mode,
            handle,
            resume: Arc::clone(&target.resume),
            producer,
            row_keys: json_keys(&columns),
            key_keys: json_keys(&columns[..key_len]),
            pending: BTreeMap::new(),
            records: HashMap::new(),
            topic_values: HashMap::new(),
            changed: BTreeSet::new(),
            rows: HashMap::new(),
            topic_rows: HashMap::new(),
            reconciled: false,
            unflushed: 0,
            produced: 0,
            failed: false,
        };
        let messages = read_topic(&target.brokers, topic, &target.client, DELIVERY_TIMEOUT)?;
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
                            writer.add_topic_diff(&key, raw.row.get().as_bytes(), raw.diff);
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

    fn absorb(&mut self, updates: &mut Vec<(D, Time, isize)>) {
        for (record, time, diff) in updates.drain(..) {
            self.pending.entry(time).or_default().push((record, diff));
        }
    }

    /// Applies, and once reconciled produces, every update before
    /// `frontier` (`None`: all), then flushes.
    fn advance(&mut self, frontier: Option<Time>) {
        let ready = match frontier {
            Some(time) => {
                let later = self.pending.split_off(&time);
                std::mem::replace(&mut self.pending, later)
            }
            None => std::mem::take(&mut self.pending),
        };
        for (time, updates) in ready {
            self.apply(time, updates);
        }
        // Upserts: one message per changed key for everything that became
        // final, not one per time. A compacted topic keeps only the last
        // value anyway, and a key that changes every tick would otherwise
        // cost a message per tick.
        let changed = std::mem::take(&mut self.changed);
        if self.reconciled {
            for key in changed {
                let value = self.current_value(&key);
                self.produce_value(&key, value);
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
        self.flush();
    }

    fn apply(&mut self, time: Time, mut updates: Vec<(D, isize)>) {
        consolidate(&mut updates);
        let mut touched = BTreeSet::new();
        for (record, diff) in updates {
            let values = record.values();
            let mut key = Vec::new();
            push_object(&mut key, &self.key_keys, &values);
            match self.mode {
                ChangelogMode::Upsert => {
                    self.records
                        .entry(key.clone())
                        .or_default()
                        .push((record, diff));
                    touched.insert(key);
                }
                ChangelogMode::RawDiff => {
                    let mut row = Vec::new();
                    push_object(&mut row, &self.row_keys, &values);
                    let diff = i64::try_from(diff).unwrap_or(i64::MAX);
                    let entry = self
                        .rows
                        .entry(row.clone())
                        .or_insert_with(|| (key.clone(), 0));
                    entry.1 += diff;
                    if entry.1 == 0 {
                        self.rows.remove(&row);
                    }
                    if self.reconciled {
                        self.produce_diff(&key, &row, time, diff);
                    }
                }
            }
        }
        for key in touched {
            let records = self.records.entry(key.clone()).or_default();
            consolidate(records);
            if records.is_empty() {
                self.records.remove(&key);
            }
            self.changed.insert(key);
        }
    }

    /// Produces the difference between the state and what the topic holds.
    fn reconcile(&mut self, time: Time) {
        match self.mode {
            ChangelogMode::Upsert => {
                let keys: BTreeSet<Vec<u8>> = self
                    .records
                    .keys()
                    .chain(self.topic_values.keys())
                    .cloned()
                    .collect();
                for key in keys {
                    let value = self.current_value(&key);
                    self.produce_value(&key, value);
                }
            }
            ChangelogMode::RawDiff => {
                let rows: BTreeSet<Vec<u8>> = self
                    .rows
                    .keys()
                    .chain(self.topic_rows.keys())
                    .cloned()
                    .collect();
                for row in rows {
                    let (key, wanted) = match (self.rows.get(&row), self.topic_rows.get(&row)) {
                        (Some((key, count)), _) => (key.clone(), *count),
                        (None, Some((key, _))) => (key.clone(), 0),
                        (None, None) => continue,
                    };
                    let emitted = self.topic_rows.get(&row).map_or(0, |(_, sum)| *sum);
                    if wanted != emitted {
                        self.produce_diff(&key, &row, time, wanted - emitted);
                    }
                }
            }
        }
        self.reconciled = true;
        self.resume.sink_reconciled();
    }

    /// The message value for `key`: its row, an array of rows, or `None`
    /// (tombstone) when it holds none.
    fn current_value(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let records = self.records.get(key)?;
        let mut rows = Vec::new();
        let mut negative = None;
        for (record, count) in records {
            if *count < 0 {
                negative = Some(format!("record {record:?} has multiplicity {count}"));
                continue;
            }
            let mut row = Vec::new();
            push_object(&mut row, &self.row_keys, &record.values());
            for _ in 0..*count {
                rows.push(row.clone());
            }
        }
        if let Some(message) = negative {
            self.record(message);
        }
        match rows.len() {
            0 => None,
            1 => rows.pop(),
            _ => {
                let mut array = vec![b'['];
                for (index, row) in rows.iter().enumerate() {
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

    fn produce_value(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if self.topic_values.get(key) == value.as_ref() {
            return;
        }
        self.send(key, value.as_deref());
        match value {
            Some(value) => self.topic_values.insert(key.to_vec(), value),
            None => self.topic_values.remove(key),
        };
    }

    fn produce_diff(&mut self, key: &[u8], row: &[u8], time: Time, diff: i64) {
        let mut value = format!("{{\"time\":{time},\"diff\":{diff},\"row\":").into_bytes();
        value.extend_from_slice(row);
        value.push(b'}');
        self.send(key, Some(&value));
        self.add_topic_diff(key, row, diff);
    }

    /// Notes that the topic holds `diff` more copies of `row`.
    fn add_topic_diff(&mut self, key: &[u8], row: &[u8], diff: i64) {
        let entry = self
            .topic_rows
            .entry(row.to_vec())
            .or_insert_with(|| (key.to_vec(), 0));
        entry.1 += diff;
        if entry.1 == 0 {
            self.topic_rows.remove(row);
        }
    }

    fn send(&mut self, key: &[u8], value: Option<&[u8]>) {
        if self.failed {
            return;
        }
        match self.producer.send(&self.topic, None, Some(key), value) {
            Ok(()) => {
                self.unflushed += 1;
                self.produced += 1;
            }
            Err(error) => self.fail(error.to_string()),
        }
    }

    /// Waits for the broker to acknowledge every message produced so far.
    fn flush(&mut self) {
        if self.unflushed == 0 || self.failed {
            return;
        }
        match self.producer.flush(DELIVERY_TIMEOUT) {
            Ok(()) => {
                self.unflushed = 0;
                self.handle.set_rows(self.produced);
            }
            Err(error) => self.fail(error.to_string()),
        }
    }

    fn record(&self, message: String) {
        self.handle.record(SinkError::Kafka {
            sink: self.topic.clone(),
            message,
        });
    }

    /// Records the failure and stops producing; offsets are no longer
    /// committed, so a restart reconciles the topic.
    fn fail(&mut self, message: String) {
        self.record(message);
        self.failed = true;
        self.resume.sink_failed();
    }
}
