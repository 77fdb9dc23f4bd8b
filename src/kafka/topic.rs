//! Topics as a whole: producing messages with delivery reports (sinks,
//! feeders), reading a topic back (the sinks read their output topic on
//! start to learn what an earlier run emitted; tests compare topics).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, KafkaError};
use crate::event::EventRecord;
use crate::write::JsonlWriter;

/// One message of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The message key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Every message of `topic`, from the start of each partition up to (at
/// least) the end it had when this was called, in partition then offset
/// order. A topic that does not exist reads as empty.
///
/// `client` holds extra librdkafka settings (e.g. security options).
pub fn read_topic(
    brokers: &str,
    topic: &str,
    client: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Vec<TopicMessage>, KafkaError> {
    let consumer: BaseConsumer = client_config(brokers, client)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("group.id", "adflow-read-topic")
        .create()
        .map_err(KafkaError::client(
            "creating a consumer to read back a topic",
        ))?;
    let partitions = partition_ids(&consumer, topic, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(KafkaError::client("fetching watermarks"))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(KafkaError::client("assigning partitions"))?;
        }
    }
    let mut messages = Vec::new();
    if ends.is_empty() {
        return Ok(messages);
    }
    consumer
        .assign(&assignment)
        .map_err(KafkaError::client("assigning partitions"))?;
    // A partition is read once the consumer reports its end *and* the
    // offsets reach the high watermark asked for above. Either alone is not
    // enough: the end report can be stale, and some brokers (tansu 0.6)
    // answer the offset query with a high watermark short of the last
    // batch, so stopping there would miss the newest messages and a sink
    // reconciling against them would publish (or, for raw diffs, count)
    // them again.
    let mut reached = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::Timeout(format!(
                "reading back topic {topic}: partitions {:?} did not reach their end",
                ends.keys().collect::<Vec<_>>()
            )));
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(ClientError::PartitionEOF(partition)) => {
                let next = reached.get(&partition).copied().unwrap_or(0);
                if ends.get(&partition).is_some_and(|end| next >= *end) {
                    ends.remove(&partition);
                }
                continue;
            }
            Err(error) => return Err(KafkaError::client("reading back a topic")(error)),
        };
        let partition = message.partition();
        if ends.contains_key(&partition) {
            reached.insert(partition, message.offset() + 1);
            messages.push(TopicMessage {
                partition,
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            });
        }
    }
    messages.sort_by_key(|message| (message.partition, message.offset));
    Ok(messages)
}

/// What a compacted topic converges to: the last value of every key,
/// without the keys whose last message is a tombstone. Messages without a
/// key are ignored. `messages` must be in offset order within a partition,
/// as [`read_topic`] returns them; one key lives in one partition.
pub fn compacted(messages: &[TopicMessage]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for message in messages {
        let Some(key) = &message.key else { continue };
        match &message.value {
            Some(value) => state.insert(key.clone(), value.clone()),
            None => state.remove(key),
        };
    }
    state
}

/// The partition ids of `topic`; empty if it does not exist.
pub(crate) fn partition_ids(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(KafkaError::client("fetching topic metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect())
}

/// Counts the messages the broker refused, and how far the messages sent
/// have all been answered, from librdkafka's delivery reports.
#[derive(Default)]
pub(crate) struct DeliveryReports {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    answered: Mutex<Answered>,
}

/// The sequence numbers (in sending order) of the messages answered: every
/// one below `through`, and the later ones answered out of order (reports
/// come in order per partition, not across partitions).
#[derive(Default)]
struct Answered {
    through: u64,
    ahead: BTreeSet<u64>,
}

impl Answered {
    fn answer(&mut self, sequence: u64) {
        if sequence != self.through {
            self.ahead.insert(sequence);
            return;
        }
        self.through += 1;
        while self.ahead.remove(&self.through) {
            self.through += 1;
        }
    }
}

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        if let Err((error, _message)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            let mut first = self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| error.to_string());
        }
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(sequence as u64);
    }
}

/// A producer that knows whether everything it sent was delivered.
///
/// Idempotent, so that retries keep each partition in the order sent.
pub struct MessageProducer {
    producer: BaseProducer<DeliveryReports>,
    /// Messages handed to librdkafka so far: the next one's sequence number.
    sent: AtomicU64,
}

impl MessageProducer {
    /// A producer for `brokers`, with extra librdkafka settings `client`.
    pub fn new(
        brokers: &str,
        client: &BTreeMap<String, String>,
    ) -> Result<MessageProducer, KafkaError> {
        let producer = client_config(brokers, client)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create_with_context(DeliveryReports::default())
            .map_err(KafkaError::client("creating a producer"))?;
        Ok(MessageProducer {
            producer,
            sent: AtomicU64::new(0),
        })
    }

    /// Queues one message: to `partition`, or by the hash of `key` when
    /// `None`; `value` `None` is a tombstone. Waits while the local queue
    /// is full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), KafkaError> {
        let sequence = self.sent.load(Ordering::SeqCst);
        let opaque = usize::try_from(sequence).unwrap_or(usize::MAX);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, opaque);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent.store(sequence + 1, Ordering::SeqCst);
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Client {
                        context: "producing",
                        source,
                    })
                }
            }
        }
    }

    /// Serves delivery reports without waiting.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// How many messages have been handed to librdkafka so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Serves delivery reports without waiting, and returns how many of the
    /// first messages sent have all been answered (acknowledged, or
    /// refused: [`MessageProducer::undelivered`] tells).
    pub fn answered(&self) -> u64 {
        let answered = || {
            let answered = self
                .producer
                .context()
                .answered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (answered.through, answered.ahead.len())
        };
        // A poll without waiting serves one event, one batch of reports:
        // poll until one serves no report.
        let mut before = answered();
        loop {
            self.poll();
            let after = answered();
            if after == before {
                return after.0;
            }
            before = after;
        }
    }

    /// An error if the broker refused any message so far.
    pub fn undelivered(&self) -> Result<(), KafkaError> {
        let reports = self.producer.context();
        let failed = reports.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = reports
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            return Err(KafkaError::Undelivered { failed, first });
        }
        Ok(())
    }

    /// Waits until the broker has acknowledged every message sent so far;
    /// an error if any was refused or `timeout` passed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        // Not `BaseProducer::flush`: it waits for delivery reports in polls
        // of up to 100 ms, so every flush took 100 ms even when the broker
        // acknowledged in one, and sinks flush on every frontier advance.
        let deadline = Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Timeout(format!(
                    "flushing: {} messages not acknowledged after {timeout:?}",
                    self.producer.in_flight_count()
                )));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        self.undelivered()
    }
}

/// Produces `records` as JSON messages in the schema of docs/schema.md,
/// keyed by event id, at about `rate` per second (`0`: as fast as the
/// producer takes them), until they run out or `stop` is set; then waits
/// until the broker has acknowledged them all. Returns how many it sent.
pub fn produce_events(
    producer: &MessageProducer,
    topic: &str,
    records: impl IntoIterator<Item = EventRecord>,
    rate: u64,
    stop: &AtomicBool,
) -> Result<u64, KafkaError> {
    /// Messages between two looks at the clock.
    const PACE_EVERY: u64 = 64;
    let mut encoder = JsonlWriter::new(std::io::sink());
    let started = Instant::now();
    let mut sent = 0u64;
    for record in records {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        encoder
            .write(&record)
            .map_err(|error| KafkaError::Encode(error.to_string()))?;
        producer.send(
            topic,
            None,
            Some(record.event_id.as_bytes()),
            Some(encoder.last_record()),
        )?;
        sent += 1;
        if rate > 0 && sent % PACE_EVERY == 0 {
            producer.poll();
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(sent)
}
