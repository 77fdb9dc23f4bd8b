//! Kafka benchmark: the whole pipeline (`analyze`, every output of
//! `Analytics::emit` to an upsert topic) reading from librdkafka's
//! in-process mock broker, on 2 workers.
//!
//! ```text
//! cargo bench --bench kafka          # 1M-event backlog; then 10 s live at 230K, 100K, 50K, 25K, 10K events/s
//! ADFLOW_KAFKA_EVENTS=200000 ADFLOW_KAFKA_RATE=50000 ADFLOW_KAFKA_SECONDS=5 cargo bench --bench kafka
//! ADFLOW_KAFKA_EVENTS=0 cargo bench --bench kafka                # latency only
//! ADFLOW_KAFKA_SECONDS=0 cargo bench --bench kafka               # throughput only
//! ```
//!
//! **The mock broker's bounded log.** librdkafka's mock broker keeps at
//! most 5 MiB (or 100,000 message sets) per partition and silently drops
//! the oldest message sets beyond that (`mpart->max_size` in
//! `rdkafka_mock.c`). The throughput runs' input topic, which every run
//! reads from its start, is therefore created with enough partitions to
//! hold every event (≤ 4 MiB each, from the mean message size of a sample
//! of the same events) and checked after the runs to still start at
//! offset 0. Output topics are not: no run reads them back, and trimming
//! does not change when a message is acknowledged, so each run reports
//! how many output messages were produced and how many trimmed since.
//! They get [`MIN_PARTITIONS`] partitions (`ADFLOW_KAFKA_OUTPUT_PARTITIONS`
//! sets them): a flush produces a message set per partition it touches,
//! and at 10K events/s the whole pipeline's p50 was 44 ms with 4 output
//! partitions against 104–154 ms with 40, sized to keep everything
//! (session 15). Partitions are spread over the workers as `p % workers`.
//!
//! **The mock broker's offset lookup** is a scan of the partition's whole
//! log (`rd_kafka_mock_msgset_find`: "FIXME: Maintain an index"), run for
//! every fetch that finds data. A live feed appends a message set per
//! partition every `linger.ms` (5 ms), so with the whole feed kept the
//! scans grow with the run: at 10K events/s over 17 partitions the broker's
//! thread went from 19% of a core to 96% within 15 s and took the
//! pipeline's core, and every stage's latency drifted upwards with it. A
//! real broker finds an offset through an index. The latency runs'
//! input topic therefore keeps only the last
//! [`LATENCY_RETAINED_SECONDS`] of the feed (the mock broker trims beyond
//! 5 MiB a partition; partitions are sized for that span, at least 4;
//! `ADFLOW_KAFKA_LATENCY_PARTITIONS` sets them): the scans stay short,
//! and a pipeline that falls further behind loses events to the
//! trimming, which the run reports as not sustained instead of a latency.
//!
//! **Fetches.** The mock broker answers a fetch that finds no data only
//! after `fetch.wait.max.ms` (librdkafka's default: 500 ms) and, unlike a
//! real broker, does not cut that wait short when data arrives
//! (`rdkafka_mock_handlers.c`). Every client of this bench therefore sets
//! `fetch.wait.max.ms` to 1 ms, which is what a real broker's long poll
//! gives a consumer that is waiting for data.
//!
//! - `throughput`: `ADFLOW_KAFKA_EVENTS` (default 1M) adgen events (seed 7,
//!   event time as dense as a live stream at 230K events/s) are produced to
//!   the input topic first (untimed). Then four timed runs read the whole
//!   topic, each as its own consumer group, on 2 workers:
//!   1. *consume*: two bare consumers (no parsing), the baseline;
//!   2. *source*: `KafkaPipeline` with an empty dataflow (consume, parse,
//!      admit through the clock);
//!   3. *dataflow*: the whole pipeline with every output only probed (no
//!      sink);
//!   4. *pipeline*: the whole pipeline, every output to an upsert topic,
//!      ended once every result is acknowledged by the broker.
//!
//!   Stream time: 1 s ticks, 10 s lateness. Events per second of wall time,
//!   and each as a ratio to the same run's `consume` and `source`.
//! - `latency`: for each rate in `ADFLOW_KAFKA_RATE` (comma-separated,
//!   default `230000,100000,50000,25000,10000`: the target, and down to
//!   where this machine sustains the feed), the pipeline starts on an
//!   empty topic; then a feeder thread produces adgen events re-stamped with the wall
//!   clock at that rate for `ADFLOW_KAFKA_SECONDS` (default 10), while the
//!   pipeline runs with 10 ms ticks and no allowed lateness. For every tick
//!   `[t, t + 10 ms)`, the latency is the wall time at which the probe
//!   behind every sink passed `t + 10 ms` (every result of the tick
//!   produced and acknowledged) minus `t + 10 ms` (the produce time of the
//!   tick's last events); the tick's first events waited 10 ms more. When
//!   the probe jumps over several ticks at once, each of them counts, with
//!   its own latency. The first second is left out (warm-up). Reported:
//!   p50, p99, max over ticks, the rate actually produced, and how far the
//!   pipeline's reading fell behind. `ADFLOW_KAFKA_LATENCY_BUILD=source` or
//!   `=dataflow` measures the latency of those stages instead (what limits
//!   it). `ADFLOW_KAFKA_TRACE=1` prints every tick's latency to stderr
//!   (`tick <ms into the feed> <latency ms> <ms the probe jumped past it>`),
//!   to see whether the latency drifts over a run; `ADFLOW_KAFKA_TICK_MS`
//!   sets the tick (default 10), `ADFLOW_KAFKA_LATENESS_MS` the allowed
//!   lateness (default 0). Each run also reports every event's own
//!   latency: from its event time (the wall clock it was produced at) to
//!   the wall time at which every result of the time it was stamped at had
//!   been emitted (for results the progress reports did not cover, the end
//!   of the final drain); with an allowed lateness, the tick's latency
//!   counts it in whatever the stamping, the event's only if stamped at
//!   its own tick.
//!
//! Both kinds of runs stamp events as streams do, at the frontier
//! (`Stamping::Frontier`: an event on time enters at or before its own
//! tick, so the probe passing `t + 10 ms` still means its results are
//! out); `ADFLOW_KAFKA_STAMPING=event_tick` stamps each at its own tick
//! instead, to compare the two with one binary.
//! - `flush`: the round trip of one flush (one message produced and
//!   acknowledged) against the same broker: every worker pays it once per
//!   advance of the frontier, for all of its sinks.
//!
//! The broker, the feeder (generation, JSON encoding, producing) and the
//! pipeline share the machine's cores.
//!
//! `ADFLOW_KAFKA_BROKERS=host:port` runs everything against a running
//! broker instead of the mock (topics are created through the admin API;
//! one that exists is used as it is, so give each run a fresh broker).
//! Everything said above of the mock's log does not apply to it, and the
//! checks that the broker's high watermarks count every message produced
//! are left out, as tansu 0.6's stop short of a partition's last batch;
//! that every event was read, once, is still checked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use adflow::kafka::{
    client_config, produce_events, ChangelogMode, KafkaPipeline, KafkaSourceConfig, KafkaSummary,
    MessageProducer,
};
use adflow::pipeline::{Stamping, Time, TimeConfig};
use adflow::sinks::{NamedOutputs, OutputRecord};
use adflow::write::JsonlWriter;
use adflow_datagen::{Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::outputs::output_names;
use differential_dataflow::collection::VecCollection;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::ProbeHandle;

const SEED: u64 = 7;
const WORKERS: usize = 2;
/// The fewest partitions a topic gets.
const MIN_PARTITIONS: i32 = 4;
/// The bytes a partition is sized to hold: the mock broker drops the
/// oldest message sets beyond 5 MiB; 4 MiB leaves room for batch headers
/// and for a sample mean below the real one.
const PARTITION_BUDGET: u64 = 4 << 20;
/// Per-record bytes of a record batch beyond key and value (varints,
/// attributes, the batch header shared by a few records).
const RECORD_OVERHEAD: u64 = 24;
/// Events whose encoded size is averaged to size the topics.
const SAMPLE: u64 = 20_000;
/// How much of a live feed the latency runs' input topic is sized to keep
/// (see the header), unless `ADFLOW_KAFKA_LATENCY_PARTITIONS` sets its
/// partitions.
const LATENCY_RETAINED_SECONDS: u64 = 2;
/// The latency runs' tick, unless `ADFLOW_KAFKA_TICK_MS` says otherwise.
const LATENCY_TICK_MS: u64 = 10;
/// Twice the seed's peak load (115K impressions/s).
const TARGET_RATE: u64 = 230_000;
/// The warm-up left out of the latency figures.
const WARM_UP_MS: i64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(30);

/// `ADFLOW_KAFKA_STAMPING`, or the streams' default.
fn stamping() -> Stamping {
    std::env::var("ADFLOW_KAFKA_STAMPING").map_or_else(
        |_| TimeConfig::stream().stamping,
        |text| {
            text.parse()
                .unwrap_or_else(|error| panic!("ADFLOW_KAFKA_STAMPING: {error}"))
        },
    )
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn rates() -> Vec<u64> {
    let text = std::env::var("ADFLOW_KAFKA_RATE")
        .unwrap_or_else(|_| "230000,100000,50000,25000,10000".into());
    text.split(',')
        .map(|rate| {
            rate.trim()
                .parse()
                .expect("ADFLOW_KAFKA_RATE: events/s, comma-separated")
        })
        .filter(|rate| *rate > 0)
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Settings of every client: see "Fetches" in the header.
fn client() -> BTreeMap<String, String> {
    BTreeMap::from([("fetch.wait.max.ms".to_owned(), "1".to_owned())])
}

/// adgen's `events` events (seed 7), with event time as dense as a live
/// stream at [`TARGET_RATE`] (one second of event time per `TARGET_RATE`
/// events), not adgen's default week.
fn generator(events: u64) -> Generator {
    let span_ms =
        i64::try_from(events.min(TARGET_RATE * 3_600) * 1_000 / TARGET_RATE).unwrap_or(i64::MAX);
    Generator::new(GeneratorConfig {
        seed: SEED,
        events,
        span_ms: span_ms.max(1_000),
        ..GeneratorConfig::default()
    })
}

/// The mean bytes one event takes in a partition: key, value and record
/// overhead, over the first [`SAMPLE`] events of `generator(events)`.
fn message_bytes(events: u64) -> u64 {
    let mut encoder = JsonlWriter::new(std::io::sink());
    let (mut count, mut bytes) = (0u64, 0u64);
    for event in generator(events).take(usize::try_from(SAMPLE).unwrap_or(usize::MAX)) {
        encoder.write(&event.record).expect("encoding to a sink");
        bytes += (encoder.last_record().len() + event.record.event_id.len()) as u64;
        count += 1;
    }
    bytes / count.max(1) + RECORD_OVERHEAD
}

/// Partitions enough to hold `bytes` without the mock broker trimming them.
fn partitions_for(bytes: u64) -> i32 {
    i32::try_from(bytes.div_ceil(PARTITION_BUDGET))
        .unwrap_or(i32::MAX)
        .max(MIN_PARTITIONS)
}

/// Partitions of each output topic: `ADFLOW_KAFKA_OUTPUT_PARTITIONS`, or
/// [`MIN_PARTITIONS`]. Not sized to keep every message (see the header):
/// each partition a flush touches is a message set of its own, for the
/// producer and the broker alike, so partitions the results do not need
/// slow the pipeline down.
fn output_partitions() -> i32 {
    i32::try_from(env_or("ADFLOW_KAFKA_OUTPUT_PARTITIONS", MIN_PARTITIONS as u64).max(1))
        .unwrap_or(i32::MAX)
}

/// The output topics of a pipeline writing to `<prefix><output>`.
fn output_topics(prefix: &str) -> Vec<String> {
    output_names(&AnalyticsConfig::default().attribution.models)
        .into_iter()
        .map(|name| format!("{prefix}{name}"))
        .collect()
}

/// The broker the runs use: librdkafka's in-process mock, or, with
/// `ADFLOW_KAFKA_BROKERS`, a running one (its topics are created through
/// the admin API; a topic that exists is used as it is).
enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    External {
        brokers: String,
        admin: AdminClient<DefaultClientContext>,
    },
}

impl Broker {
    fn from_env() -> Broker {
        match std::env::var("ADFLOW_KAFKA_BROKERS") {
            Ok(brokers) => Broker::External {
                admin: client_config(&brokers, &client())
                    .create()
                    .expect("admin client"),
                brokers,
            },
            Err(_) => Broker::Mock(MockCluster::new(1).expect("mock cluster")),
        }
    }

    fn bootstrap_servers(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::External { brokers, .. } => brokers.clone(),
        }
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Broker::Mock(cluster) => cluster.create_topic(topic, partitions, 1).expect("topic"),
            Broker::External { admin, .. } => {
                let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
                let results = block_on(admin.create_topics(&topics, &AdminOptions::new()))
                    .expect("create topics");
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => panic!("creating {topic}: {code}"),
                    }
                }
            }
        }
    }

    /// Whether the checks on the broker's watermarks apply: only the
    /// mock's are relied on to count exactly what was produced (a real
    /// Kafka's would; tansu 0.6's high watermark stops short of a
    /// partition's last batch, docs/operations.md).
    fn exact_watermarks(&self) -> bool {
        matches!(self, Broker::Mock(_))
    }
}

/// Runs `future` to completion on this thread (the admin client's
/// requests are futures; nothing else here is async).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(thread::current())).into();
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}

/// Creates the input topic and (with `outputs`: a prefix and a partition
/// count, see [`output_partitions`]) every output topic, so that no count
/// is left to the broker's default.
fn create_topics(
    broker: &Broker,
    (input, input_partitions): (&str, i32),
    outputs: Option<(&str, i32)>,
) {
    broker.create_topic(input, input_partitions);
    if let Some((prefix, partitions)) = outputs {
        for topic in output_topics(prefix) {
            broker.create_topic(&topic, partitions);
        }
    }
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
fn watermarks(brokers: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let consumer: BaseConsumer = client_config(brokers, &client())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
        .flat_map(|found| found.partitions())
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), TIMEOUT)
                .expect("watermarks");
            (partition.id(), low, high)
        })
        .collect()
}

/// Panics if the broker has dropped the start of any partition of `topic`
/// (see the header); returns the messages the topic holds.
fn assert_log_kept(brokers: &str, topic: &str) -> u64 {
    let mut messages = 0;
    for (partition, low, high) in watermarks(brokers, topic) {
        assert_eq!(
            low, 0,
            "the mock broker dropped the first {low} of {high} messages of {topic} partition \
             {partition}: the figures would come from a trimmed log; give the topic more partitions"
        );
        messages += u64::try_from(high).unwrap_or(0);
    }
    messages
}

/// The messages produced to every output topic of `prefix`, and how many
/// of them the mock broker has trimmed since. The runs time how fast
/// results are produced and acknowledged, which a trimmed log does not
/// change; no run reads an output topic back.
fn outputs_produced(brokers: &str, prefix: &str) -> (u64, u64) {
    output_topics(prefix)
        .iter()
        .flat_map(|topic| watermarks(brokers, topic))
        .fold((0, 0), |(produced, trimmed), (_, low, high)| {
            (
                produced + u64::try_from(high).unwrap_or(0),
                trimmed + u64::try_from(low).unwrap_or(0),
            )
        })
}

fn assert_ok(summary: &KafkaSummary, what: &str) {
    assert!(summary.errors.is_empty(), "{what}: {:?}", summary.errors);
    assert!(!summary.aborted, "{what}: aborted");
    for (topic, report) in &summary.sinks {
        assert!(report.is_ok(), "{what}: {topic}: {report:?}");
    }
}

/// Feeds `events` adgen events to `topic`; `restamp` replaces event times
/// with the wall clock. Stops early when `stop` is set; paces to `rate`
/// events/s when it is not zero. Returns the events produced.
fn feed(
    brokers: &str,
    topic: &str,
    events: u64,
    rate: u64,
    restamp: bool,
    stop: &AtomicBool,
) -> u64 {
    let producer = MessageProducer::new(brokers, &client()).expect("producer");
    let records = generator(events).map(|mut event| {
        if restamp {
            event.record.ts = now_ms();
        }
        event.record
    });
    produce_events(&producer, topic, records, rate, stop).expect("fed")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The baseline: every message of `topic` read by [`WORKERS`] bare
/// consumers (partition `p` to consumer `p % WORKERS`, as the pipeline
/// spreads them), payloads touched but not parsed. Returns messages and
/// payload bytes read.
fn consume_only(brokers: &str, topic: &str) -> (u64, u64) {
    let ends: Vec<(i32, i64)> = watermarks(brokers, topic)
        .into_iter()
        .filter(|(_, _, high)| *high > 0)
        .map(|(partition, _, high)| (partition, high))
        .collect();
    let readers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let mine: Vec<(i32, i64)> = ends
                .iter()
                .copied()
                .filter(|(partition, _)| {
                    usize::try_from(*partition).unwrap_or(0) % WORKERS == index
                })
                .collect();
            let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
            thread::spawn(move || {
                let consumer: BaseConsumer = client_config(&brokers, &client())
                    .set("group.id", "bench-consume")
                    .set("enable.auto.commit", "false")
                    .create()
                    .expect("consumer");
                let mut assignment = TopicPartitionList::new();
                for (partition, _) in &mine {
                    assignment
                        .add_partition_offset(&topic, *partition, Offset::Beginning)
                        .expect("assignment");
                }
                consumer.assign(&assignment).expect("assign");
                let mut open: BTreeMap<i32, i64> = mine.into_iter().collect();
                let (mut messages, mut bytes) = (0u64, 0u64);
                while !open.is_empty() {
                    let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let message = polled.expect("message");
                    messages += 1;
                    bytes += message.payload().map_or(0, <[u8]>::len) as u64;
                    let partition = message.partition();
                    if open
                        .get(&partition)
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        open.remove(&partition);
                    }
                }
                (messages, bytes)
            })
        })
        .collect();
    readers
        .into_iter()
        .map(|reader| reader.join().expect("consumer thread"))
        .fold((0, 0), |(m, b), (messages, bytes)| {
            (m + messages, b + bytes)
        })
}

/// Outputs that are only probed: the dataflow's work without the sinks'.
struct Probed<'a>(&'a ProbeHandle<Time>);

impl<'scope> NamedOutputs<'scope> for Probed<'_> {
    fn output<D: OutputRecord>(&mut self, _name: &str, collection: VecCollection<'scope, Time, D>) {
        collection.probe_with(self.0);
    }
}

/// `(stamp, event time)` of every event a latency run's dataflow admitted.
type Stamps = Arc<Mutex<Vec<(Time, i64)>>>;

/// What a timed run over the backlog builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// Nothing beyond the source: events and dead letters probed.
    Source,
    /// The whole pipeline, every output probed.
    Dataflow,
    /// The whole pipeline, every output to an upsert topic `<prefix><name>`.
    Pipeline(&'static str),
}

/// Runs `build` over `pipeline`'s topic.
///
/// With `stamps`, every event that enters the dataflow is noted there as
/// `(the time it was stamped at, its event time)`.
fn run(
    pipeline: KafkaPipeline,
    time: TimeConfig,
    build: Build,
    stamps: Option<Stamps>,
) -> KafkaSummary {
    pipeline
        .time(time)
        .workers(WORKERS)
        .run(move |_scope, streams, outputs| {
            let config = AnalyticsConfig::default().with_horizon_of(&time);
            if let Some(stamps) = stamps.clone() {
                streams.events.clone().inspect_batch(move |_, updates| {
                    let mut stamps = stamps.lock().expect("lock");
                    stamps.extend(
                        updates
                            .iter()
                            .filter(|(_, _, diff)| *diff > 0)
                            .map(|(event, stamp, _)| (*stamp, event.ts)),
                    );
                });
            }
            match build {
                Build::Source => {
                    streams.events.probe_with(&streams.probe);
                    streams.dead_letters.probe_with(&streams.probe);
                }
                Build::Dataflow => {
                    let analytics = streams.events.analyze(&config);
                    analytics.emit(
                        &config.attribution.models,
                        streams.dead_letters,
                        &mut Probed(&streams.probe),
                    );
                }
                Build::Pipeline(prefix) => {
                    let analytics = streams.events.analyze(&config);
                    let mut topics = outputs.topics(prefix, ChangelogMode::Upsert, &streams.probe);
                    analytics.emit(
                        &config.attribution.models,
                        streams.dead_letters,
                        &mut topics,
                    );
                }
            }
        })
        .expect("kafka pipeline")
}

fn source(brokers: &str, topic: &str, group: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        client: client(),
        ..KafkaSourceConfig::new(brokers, topic, group)
    }
}

fn throughput(broker: &Broker, brokers: &str, events: u64) {
    let per_event = message_bytes(events);
    let partitions = partitions_for(events * per_event);
    let prefix = "throughput-";
    let outputs = output_partitions();
    create_topics(broker, ("backlog", partitions), Some((prefix, outputs)));
    let never = AtomicBool::new(false);
    let started = Instant::now();
    let fed = feed(brokers, "backlog", events, 0, false, &never);
    let feeding = started.elapsed();
    let held = assert_log_kept(brokers, "backlog");
    if broker.exact_watermarks() {
        assert_eq!(held, fed, "the backlog topic holds every event");
    }
    eprintln!(
        "fed {fed} events (~{per_event} B each) to {partitions} partitions in {feeding:.2?} \
         ({:.0} events/s)",
        fed as f64 / feeding.as_secs_f64()
    );

    let started = Instant::now();
    let (consumed, bytes) = consume_only(brokers, "backlog");
    let consume = started.elapsed();
    assert_eq!(consumed, fed, "the consumers read every message");

    let stream_time = TimeConfig {
        reference: None,
        stamping: stamping(),
        ..TimeConfig::stream()
    };
    let mut timed = Vec::new();
    for (build, group) in [
        (Build::Source, "bench-source"),
        (Build::Dataflow, "bench-dataflow"),
        (Build::Pipeline(prefix), "bench-pipeline"),
    ] {
        let config = KafkaSourceConfig {
            stop_at_end: true,
            ..source(brokers, "backlog", group)
        };
        let started = Instant::now();
        let summary = run(KafkaPipeline::new(config), stream_time, build, None);
        let elapsed = started.elapsed();
        assert_ok(&summary, group);
        assert_eq!(summary.run.records(), fed, "{group}: every event read");
        timed.push((group, elapsed, summary));
    }
    let held = assert_log_kept(brokers, "backlog");
    if broker.exact_watermarks() {
        assert_eq!(held, fed);
    }
    let (output_messages, trimmed_outputs) = outputs_produced(brokers, prefix);

    let rate = |elapsed: Duration| fed as f64 / elapsed.as_secs_f64();
    let (source_time, pipeline_summary) = (timed[0].1, &timed[2].2);
    let acknowledged: u64 = pipeline_summary
        .sinks
        .values()
        .map(|report| report.rows)
        .sum();
    assert_eq!(
        acknowledged, output_messages,
        "every sink message is in its topic"
    );
    println!(
        "\nthroughput: {fed} events ({:.0} MB of payload) in {partitions} partitions, {WORKERS} workers\n",
        bytes as f64 / 1e6
    );
    println!("| run | wall time | events/s | vs consume | vs source |");
    println!("|---|---|---|---|---|");
    println!(
        "| consume only (baseline) | {consume:.2?} | {:.0} | 1 | |",
        rate(consume)
    );
    for (group, elapsed, _) in &timed {
        println!(
            "| {} | {elapsed:.2?} | {:.0} | {:.3} | {:.3} |",
            group.trim_start_matches("bench-"),
            rate(*elapsed),
            consume.as_secs_f64() / elapsed.as_secs_f64(),
            source_time.as_secs_f64() / elapsed.as_secs_f64(),
        );
    }
    println!(
        "\npipeline: {output_messages} output messages in {} topics of {outputs} partitions \
         ({trimmed_outputs} trimmed since); {} offset commits",
        output_topics(prefix).len(),
        pipeline_summary.commits
    );
}

/// The round trip of one sink flush: one small message produced and
/// acknowledged, `rounds` times. Returns the median and the 99th percentile.
fn flush_round_trip(brokers: &str, rounds: usize) -> (Duration, Duration) {
    let producer = MessageProducer::new(brokers, &client()).expect("producer");
    let mut times: Vec<Duration> = (0..rounds)
        .map(|round| {
            let key = round.to_string();
            let started = Instant::now();
            producer
                .send("flush-probe", None, Some(key.as_bytes()), Some(b"{}"))
                .expect("queued");
            producer.flush(TIMEOUT).expect("flushed");
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[rounds / 2], times[rounds * 99 / 100])
}

/// One latency run at `rate` events/s for `seconds`.
fn latency(broker: &Broker, brokers: &str, rate: u64, seconds: u64) {
    let events = rate * seconds + rate / 2;
    let per_event = message_bytes(events);
    let partitions = partitions_for(events * per_event);
    let retained = partitions_for(rate * LATENCY_RETAINED_SECONDS * per_event).min(partitions);
    let input_partitions = i32::try_from(env_or(
        "ADFLOW_KAFKA_LATENCY_PARTITIONS",
        u64::try_from(retained).unwrap_or(1),
    ))
    .unwrap_or(i32::MAX)
    .max(1);
    let topic = format!("live-{rate}");
    let prefix: &'static str = Box::leak(format!("latency-{rate}-").into_boxed_str());
    let output_partitions = output_partitions();
    create_topics(
        broker,
        (&topic, input_partitions),
        Some((prefix, output_partitions)),
    );

    let passed: Arc<Mutex<Vec<(Time, i64)>>> = Arc::default();
    let record = Arc::clone(&passed);
    let config = KafkaSourceConfig {
        idle_timeout: Duration::from_millis(200),
        ..source(brokers, &topic, "bench-latency")
    };
    let tick_ms =
        i64::try_from(env_or("ADFLOW_KAFKA_TICK_MS", LATENCY_TICK_MS).max(1)).unwrap_or(i64::MAX);
    let live_time = TimeConfig {
        tick: tick_ms,
        allowed_lateness: Some(
            i64::try_from(env_or("ADFLOW_KAFKA_LATENESS_MS", 0)).unwrap_or(i64::MAX),
        ),
        reference: None,
        stamping: stamping(),
        ..TimeConfig::stream()
    };
    let profile = std::env::var_os("ADFLOW_KAFKA_PROFILE").is_some();
    let pipeline = KafkaPipeline::new(config)
        .profile(profile)
        .on_progress(move |time| {
            record.lock().expect("lock").push((time, now_ms()));
        });
    let shutdown = pipeline.shutdown();
    let build = match std::env::var("ADFLOW_KAFKA_LATENCY_BUILD").as_deref() {
        Ok("source") => Build::Source,
        Ok("dataflow") => Build::Dataflow,
        _ => Build::Pipeline(prefix),
    };
    let stamps = Stamps::default();
    let running = {
        let stamps = Arc::clone(&stamps);
        thread::spawn(move || run(pipeline, live_time, build, Some(stamps)))
    };
    // Let the pipeline open its partitions and sinks on the empty topic.
    thread::sleep(Duration::from_secs(2));

    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let feed_start = now_ms();
    let started = Instant::now();
    let sent = feed(brokers, &topic, events, rate, true, &stop);
    let feeding = started.elapsed();
    let feed_end = now_ms();
    let _ = timer.join();
    shutdown.finish();
    let summary = running.join().expect("pipeline thread");
    let drained = started.elapsed();
    assert_ok(&summary, "latency");
    // The input log may have been trimmed behind the reader (see the
    // header); what matters is that every event reached it and was read.
    let appended: i64 = watermarks(brokers, &topic)
        .iter()
        .map(|(_, _, high)| high)
        .sum();
    if broker.exact_watermarks() {
        assert_eq!(u64::try_from(appended).unwrap_or(0), sent);
    }
    let read = summary.run.records();
    if read < sent {
        println!(
            "\n| latency at {rate}/s | not sustained: the pipeline fell more than about \
             {LATENCY_RETAINED_SECONDS} s behind the feed, and the broker trimmed {} of the \
             {sent} events before they were read |",
            sent - read
        );
        return;
    }
    assert_eq!(read, sent, "every event produced was read once");
    let (output_messages, trimmed_outputs) = outputs_produced(brokers, prefix);

    // Every tick the probe passed, with the wall time it passed it at.
    let passed = passed.lock().expect("lock");
    let mut latencies = Vec::new();
    let trace = std::env::var_os("ADFLOW_KAFKA_TRACE").is_some();
    let mut previous: Option<i64> = None;
    for (time, at) in passed.iter() {
        let end = i64::try_from(*time).unwrap_or(i64::MAX);
        let mut tick = previous.map_or(end, |previous| previous + tick_ms);
        while tick <= end {
            if tick >= feed_start + WARM_UP_MS && tick <= feed_end {
                latencies.push(at - tick);
                if trace {
                    // Tick (ms into the feed), its latency, and how far the
                    // probe jumped past it.
                    eprintln!("tick {} {} {}", tick - feed_start, at - tick, end - tick);
                }
            }
            tick += tick_ms;
        }
        previous = Some(end);
    }
    latencies.sort_unstable();
    // Every event's own latency: its event time (the wall clock when it was
    // produced) to the wall time at which the results of its stamp were all
    // emitted, whatever its stamp: the tick's latency above assumes an
    // event is stamped at or before its own tick, and says nothing of how
    // much earlier. Results no progress report covered came with the final
    // drain, done when the pipeline returned.
    let drained_at = feed_start + i64::try_from(drained.as_millis()).unwrap_or(i64::MAX);
    let mut event_latencies: Vec<i64> = stamps
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, ts)| *ts >= feed_start + WARM_UP_MS && *ts <= feed_end)
        .map(|(stamp, ts)| {
            let out = passed.partition_point(|(time, _)| time <= stamp);
            passed.get(out).map_or(drained_at, |(_, at)| *at) - ts
        })
        .collect();
    event_latencies.sort_unstable();
    if profile {
        print_profile(&summary);
    }
    let last = passed.last().map_or(0, |(time, _)| *time);
    println!(
        "\n| latency at {rate}/s: {} ticks of {tick_ms} ms, {input_partitions} input partitions | \
         p50 {} ms, p99 {} ms, max {} ms (the tick's first events: +{tick_ms} ms) |",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    println!(
        "| event latency at {rate}/s (produced → every result of its stamp emitted), \
         {} events | p50 {} ms, p99 {} ms, max {} ms |",
        event_latencies.len(),
        percentile(&event_latencies, 0.5),
        percentile(&event_latencies, 0.99),
        event_latencies.last().copied().unwrap_or(0)
    );
    println!(
        "| feed at {rate}/s | {sent} events in {feeding:.2?} = {:.0} events/s produced; all read; \
         the last result {:.2?} after the feed stopped (probe at {} ms before the feed's end); \
         {output_messages} output messages to {output_partitions} partitions per topic \
         ({trimmed_outputs} trimmed since) |",
        sent as f64 / feeding.as_secs_f64(),
        drained.saturating_sub(feeding),
        feed_end - i64::try_from(last).unwrap_or(0),
    );
}

/// The operators that took the most time, summed over workers.
fn print_profile(summary: &KafkaSummary) {
    let mut operators: Vec<_> = summary
        .run
        .operators
        .iter()
        .filter(|op| op.depth() >= 2)
        .collect();
    operators.sort_by_key(|op| std::cmp::Reverse(op.elapsed));
    for op in operators.iter().take(25) {
        println!(
            "  {:>9.1?} {:>8} {:?} {}",
            op.elapsed, op.schedulings, op.address, op.name
        );
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let events = env_or("ADFLOW_KAFKA_EVENTS", 1_000_000);
    let seconds = env_or("ADFLOW_KAFKA_SECONDS", 10);
    let broker = Broker::from_env();
    let brokers = broker.bootstrap_servers();
    broker.create_topic("flush-probe", 1);

    let (median, p99) = flush_round_trip(&brokers, 200);
    println!("flush round trip (one message, idle broker): median {median:.2?}, p99 {p99:.2?}");
    if events > 0 {
        throughput(&broker, &brokers, events);
    }
    if seconds > 0 {
        for rate in rates() {
            latency(&broker, &brokers, rate, seconds);
        }
    }
}
