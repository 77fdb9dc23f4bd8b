//! One worker's share of the input topic: its partitions, where each
//! started and where the last run's commits say to resume, the event time
//! each has reached, and committing offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::topic::partition_ids;
use super::{client_config, KafkaError, KafkaSourceConfig, StartFrom};
use crate::dead_letter::{DeadLetter, Position};
use crate::event::Event;
use crate::parsing::json::parse_json_bytes;
use crate::parsing::EventValidator;
use crate::timestamp::Millis;

/// How long metadata, offset and commit requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One message, parsed.
pub(crate) enum Polled {
    /// A valid event, and where it was.
    Event(Event, Position),
    /// A message that is not one.
    Dead(DeadLetter),
}

/// One partition as this worker reads it.
#[derive(Debug)]
struct PartitionState {
    partition: i32,
    /// The offset this consumer group started the partition at, kept in the
    /// commit metadata so that every restart replays from the same place.
    origin: i64,
    /// The next offset to read.
    next: i64,
    /// While replaying: the offset the last run committed.
    resume_at: Option<i64>,
    /// The largest event time read from the partition.
    max_event_time: Option<Millis>,
    /// When the partition last delivered a message (or was assigned).
    last_message: Instant,
    /// The consumer reported reaching the end and nothing came since.
    at_end: bool,
}

/// A worker's consumer and partitions.
pub(crate) struct WorkerSource {
    consumer: BaseConsumer,
    topic: String,
    idle_timeout: Duration,
    validator: EventValidator,
    partitions: Vec<PartitionState>,
    /// Consumer errors that were not about one message, as text.
    pub(crate) errors: Vec<String>,
    /// Payload bytes read.
    pub(crate) bytes: u64,
}

impl WorkerSource {
    /// Opens the partitions `p` of the topic with `p % peers == index`: at
    /// the origin the group's commits record (a restart, which replays up
    /// to the committed offset) or else where `config.start` says.
    pub(crate) fn open(
        config: &KafkaSourceConfig,
        validator: EventValidator,
        index: usize,
        peers: usize,
    ) -> Result<WorkerSource, KafkaError> {
        let consumer: BaseConsumer = client_config(&config.brokers, &config.client)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(KafkaError::client("creating the consumer"))?;
        let all = partition_ids(&consumer, &config.topic, REQUEST_TIMEOUT)?;
        if all.is_empty() {
            return Err(KafkaError::NoPartitions(config.topic.clone()));
        }
        let mine: Vec<i32> = all
            .into_iter()
            .filter(|partition| usize::try_from(*partition).is_ok_and(|p| p % peers == index))
            .collect();
        let mut source = WorkerSource {
            consumer,
            topic: config.topic.clone(),
            idle_timeout: config.idle_timeout,
            validator,
            partitions: Vec::new(),
            errors: Vec::new(),
            bytes: 0,
        };
        if mine.is_empty() {
            return Ok(source);
        }
        let committed = source.committed(&mine)?;
        let mut assignment = TopicPartitionList::new();
        let now = Instant::now();
        for partition in mine {
            let (origin, resume_at) = match committed.get(&partition) {
                Some((offset, origin)) => (*origin, Some(*offset).filter(|at| at > origin)),
                None => (source.start_offset(partition, config.start)?, None),
            };
            assignment
                .add_partition_offset(&config.topic, partition, Offset::Offset(origin))
                .map_err(KafkaError::client("assigning partitions"))?;
            source.partitions.push(PartitionState {
                partition,
                origin,
                next: origin,
                resume_at,
                max_event_time: None,
                last_message: now,
                at_end: false,
            });
        }
        source
            .consumer
            .assign(&assignment)
            .map_err(KafkaError::client("assigning partitions"))?;
        Ok(source)
    }

    /// The group's committed offset and recorded origin per partition.
    fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
        let mut query = TopicPartitionList::new();
        for partition in partitions {
            query.add_partition(&self.topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(query, REQUEST_TIMEOUT)
            .map_err(KafkaError::client("reading committed offsets"))?;
        let mut found = BTreeMap::new();
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                // Commits made by another tool carry no origin: replay the
                // partition from its start.
                let origin = match element.metadata().parse::<i64>() {
                    Ok(origin) => origin,
                    Err(_) => self.watermarks(element.partition())?.0,
                };
                found.insert(element.partition(), (offset, origin));
            }
        }
        Ok(found)
    }

    fn watermarks(&self, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
            .map_err(KafkaError::client("fetching watermarks"))
    }

    /// The first offset to read of a partition the group has never committed.
    fn start_offset(&self, partition: i32, start: StartFrom) -> Result<i64, KafkaError> {
        let (low, high) = self.watermarks(partition)?;
        match start {
            StartFrom::Earliest => Ok(low),
            StartFrom::Latest => Ok(high),
            StartFrom::Timestamp(ts) => {
                let mut query = TopicPartitionList::new();
                query
                    .add_partition_offset(&self.topic, partition, Offset::Offset(ts))
                    .map_err(KafkaError::client("looking up offsets by time"))?;
                let found = self
                    .consumer
                    .offsets_for_times(query, REQUEST_TIMEOUT)
                    .map_err(KafkaError::client("looking up offsets by time"))?;
                let offset = found
                    .find_partition(&self.topic, partition)
                    .map(|element| element.offset());
                Ok(match offset {
                    Some(Offset::Offset(offset)) => offset.clamp(low, high),
                    // No message at or after the time: start at the end.
                    _ => high,
                })
            }
        }
    }

    /// Reads up to `max` messages into `out`, waiting at most `wait` for
    /// the first. Returns how many messages were read.
    pub(crate) fn poll(&mut self, max: usize, wait: Duration, out: &mut Vec<Polled>) -> usize {
        let mut read = 0;
        let mut timeout = wait;
        while read < max {
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            match polled {
                Ok(message) => {
                    read += 1;
                    let payload = message.payload().unwrap_or_default();
                    self.bytes += payload.len() as u64;
                    out.push(parse_message(
                        &mut self.partitions,
                        &mut self.validator,
                        &self.topic,
                        message.partition(),
                        message.offset(),
                        payload,
                    ));
                }
                Err(ClientError::PartitionEOF(partition)) => {
                    if let Some(state) = self.state_mut(partition) {
                        state.at_end = true;
                    }
                }
                Err(error) => self.errors.push(error.to_string()),
            }
        }
        read
    }

    fn state_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        self.partitions
            .iter_mut()
            .find(|state| state.partition == partition)
    }

    /// [`crate::sources::RecordSource::take_new_names`], for this source.
    pub(crate) fn take_new_names(&mut self, out: &mut Vec<(crate::event::Id, String)>) {
        self.validator.take_new_names(out);
    }

    /// Whether some partition is still below the offset the last run committed.
    pub(crate) fn replaying(&self) -> bool {
        self.partitions
            .iter()
            .any(|state| state.resume_at.is_some())
    }

    /// Whether every partition has been read to the end it has now. The
    /// consumer's end-of-partition reports can be stale (more messages may
    /// have arrived since), so once they all say so the broker is asked.
    pub(crate) fn at_end(&mut self) -> bool {
        if !self.partitions.iter().all(|state| state.at_end) {
            return false;
        }
        let mut all = true;
        for index in 0..self.partitions.len() {
            let partition = self.partitions[index].partition;
            let behind = match self.watermarks(partition) {
                Ok((_, high)) => self.partitions[index].next < high,
                Err(error) => {
                    self.errors.push(error.to_string());
                    true
                }
            };
            if behind {
                self.partitions[index].at_end = false;
                all = false;
            }
        }
        all
    }

    /// The event time this worker's partitions let the watermark trail at `now`.
    pub(crate) fn event_time_basis(&self, now: Instant) -> Basis {
        basis(&self.partitions, self.idle_timeout, now)
    }

    /// Where every partition is: `(partition, next offset)`.
    pub(crate) fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .map(|state| (state.partition, state.next))
            .collect()
    }

    /// Commits `positions` for the group, recording each partition's origin.
    pub(crate) fn commit(&self, positions: &[(i32, i64)]) -> Result<(), KafkaError> {
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in positions {
            let origin = self
                .partitions
                .iter()
                .find(|state| state.partition == *partition)
                .map_or(0, |state| state.origin);
            let mut element = offsets.add_partition(&self.topic, *partition);
            element
                .set_offset(Offset::Offset(*next))
                .map_err(KafkaError::client("committing offsets"))?;
            element.set_metadata(origin.to_string());
        }
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(KafkaError::client("committing offsets"))
    }
}

/// What a worker's partitions say about the event time the watermark may
/// trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Basis {
    /// The least of the largest event times of the partitions that are not
    /// idle.
    Active(Millis),
    /// Every partition is idle (no message for the idle timeout), or the
    /// worker has none: it must not hold the watermark back for silence
    /// alone. Holds the event time its partitions still vouch for, if any
    /// delivered events: see [`basis`].
    Idle(Option<Millis>),
    /// A partition that is not idle has delivered no event yet: hold back.
    Waiting,
}

/// [`WorkerSource::event_time_basis`] of `partitions`.
///
/// When every partition is idle, the silence has two readings. A partition
/// read to its end (the consumer said so and nothing came since) has
/// delivered everything it holds, so the largest event time read counts:
/// partitions that go quiet together, as after a burst read by one
/// worker, must not hold results back until the next message. A partition
/// not at its end may still hold events near its largest event time (its
/// consumer stalled, or the broker is slow to answer), so the least of
/// those partitions' largest event times counts, as it would if they were
/// active, and the watermark does not jump ahead of them.
fn basis(partitions: &[PartitionState], idle_timeout: Duration, now: Instant) -> Basis {
    let mut active: Option<Millis> = None;
    for state in partitions {
        if now.duration_since(state.last_message) >= idle_timeout {
            continue;
        }
        let Some(max) = state.max_event_time else {
            return Basis::Waiting;
        };
        active = Some(active.map_or(max, |active| active.min(max)));
    }
    if let Some(active) = active {
        return Basis::Active(active);
    }
    let behind = partitions
        .iter()
        .filter(|state| !state.at_end)
        .filter_map(|state| state.max_event_time)
        .min();
    Basis::Idle(behind.or_else(|| {
        partitions
            .iter()
            .filter_map(|state| state.max_event_time)
            .max()
    }))
}

/// Parses one message and notes its offset and event time in its partition.
fn parse_message(
    partitions: &mut [PartitionState],
    validator: &mut EventValidator,
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
) -> Polled {
    let parsed = parse_json_bytes(payload, validator);
    if let Some(state) = partitions
        .iter_mut()
        .find(|state| state.partition == partition)
    {
        state.next = offset + 1;
        state.at_end = false;
        state.last_message = Instant::now();
        if state.resume_at.is_some_and(|at| state.next >= at) {
            state.resume_at = None;
        }
        if let Ok(event) = &parsed {
            state.max_event_time = Some(
                state
                    .max_event_time
                    .map_or(event.ts, |max| max.max(event.ts)),
            );
        }
    }
    match parsed {
        Ok(event) => Polled::Event(event, Position::Offset { partition, offset }),
        Err(rejection) => Polled::Dead(DeadLetter::new(
            topic,
            Position::Offset { partition, offset },
            rejection.reason,
            rejection.detail,
            payload,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(
        partition: i32,
        max_event_time: Option<Millis>,
        last_message: Instant,
        at_end: bool,
    ) -> PartitionState {
        PartitionState {
            partition,
            origin: 0,
            next: 0,
            resume_at: None,
            max_event_time,
            last_message,
            at_end,
        }
    }

    #[test]
    fn idle_partitions_are_left_out_and_all_idle_holds_back_only_for_unread_ones() {
        let start = Instant::now();
        let timeout = Duration::from_millis(200);
        let later = start + Duration::from_millis(150);
        let soon = start + Duration::from_millis(250);
        let idle = start + Duration::from_secs(1);
        // Partition 0 has read events; partition 1 none yet.
        let partitions = [
            partition(0, Some(5_000), later, true),
            partition(1, None, start, true),
        ];
        assert_eq!(basis(&partitions, timeout, later), Basis::Waiting);
        // Partition 1 idle, partition 0 not yet.
        assert_eq!(basis(&partitions, timeout, soon), Basis::Active(5_000));
        // Both idle at the same look (the loop did not run in between):
        // what partition 0 delivered still counts.
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(Some(5_000)));
        // An empty partition not known to be at its end cannot hold back.
        let partitions = [
            partition(0, Some(5_000), later, true),
            partition(1, None, start, false),
        ];
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(Some(5_000)));

        // Both read to their end: the largest event time counts.
        let partitions = [
            partition(0, Some(5_000), start, true),
            partition(1, Some(9_000), start, true),
        ];
        assert_eq!(basis(&partitions, timeout, later), Basis::Active(5_000));
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(Some(9_000)));
        // Silent but not at its end: partition 0 may hold more near 5 000,
        // so the watermark does not jump to 9 000.
        let partitions = [
            partition(0, Some(5_000), start, false),
            partition(1, Some(9_000), start, true),
        ];
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(Some(5_000)));
        let partitions = [
            partition(0, Some(5_000), start, false),
            partition(1, Some(9_000), start, false),
            partition(2, Some(7_000), start, true),
        ];
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(Some(5_000)));

        let partitions = [partition(0, None, start, false)];
        assert_eq!(basis(&partitions, timeout, idle), Basis::Idle(None));
        assert_eq!(basis(&[], timeout, start), Basis::Idle(None));
    }
}
