//! Kafka benchmark: the whole pipeline (`analyze`, every output of
//! `Analytics::emit` to an upsert topic) reading from librdkafka's
//! in-process mock broker, on 2 workers.
//!
//! ```text
//! cargo bench --bench kafka                                   # 1M events, then 10 s at 230K/s
//! ADFLOW_KAFKA_EVENTS=200000 ADFLOW_KAFKA_RATE=50000 cargo bench --bench kafka
//! ```
//!
//! - `throughput`: `ADFLOW_KAFKA_EVENTS` adgen events (seed 7) are produced
//!   (event time as dense as a live stream at 230K events/s) are produced
//!   to a 4-partition topic first (untimed); the timed run reads them all
//!   (stream time: 1 s ticks, 10 s lateness) and ends once every result is
//!   acknowledged by the broker. Events per second of wall time.
//! - `latency`: a feeder thread produces adgen events re-stamped with the
//!   wall clock at `ADFLOW_KAFKA_RATE` events/s for `ADFLOW_KAFKA_SECONDS`,
//!   while the pipeline runs with 10 ms ticks and no allowed lateness. For
//!   every tick `[t, t + 10 ms)`, the latency is the wall time at which the
//!   probe behind every sink passed `t + 10 ms` (every result of the tick
//!   produced and acknowledged) minus `t + 10 ms` (the produce time of the
//!   tick's last events). Earlier events of a tick wait up to one tick more.
//!   Reported: p50, p99, max over ticks, and the rate actually produced.
//!
//! The broker, the feeder (JSON encoding and producing) and the pipeline
//! share the machine's cores.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use adflow::kafka::{
    client_config, produce_events, ChangelogMode, KafkaPipeline, KafkaSourceConfig, KafkaSummary,
    MessageProducer,
};
use adflow::pipeline::{Time, TimeConfig};
use adflow_datagen::{Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::outputs::output_names;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

const SEED: u64 = 7;
const PARTITIONS: i32 = 4;
const WORKERS: usize = 2;
const LATENCY_TICK_MS: i64 = 10;
/// Twice the seed's peak load (115K impressions/s).
const TARGET_RATE: u64 = 230_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Runs the whole pipeline from `topic` to upsert topics `<prefix><name>`.
fn run(pipeline: KafkaPipeline, time: TimeConfig, prefix: &'static str) -> KafkaSummary {
    pipeline
        .time(time)
        .workers(WORKERS)
        .run(move |_scope, streams, outputs| {
            let config = AnalyticsConfig::default().with_horizon_of(&time);
            let analytics = streams.events.analyze(&config);
            let mut topics = outputs.topics(prefix, ChangelogMode::Upsert, &streams.probe);
            analytics.emit(
                &config.attribution.models,
                streams.dead_letters,
                &mut topics,
            );
        })
        .expect("kafka pipeline")
}

fn create_topics(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    input: &str,
    prefix: &str,
) {
    cluster.create_topic(input, PARTITIONS, 1).expect("topic");
    for name in output_names(&AnalyticsConfig::default().attribution.models) {
        cluster
            .create_topic(&format!("{prefix}{name}"), PARTITIONS, 1)
            .expect("topic");
    }
}

/// Feeds adgen events to `topic`; `restamp` replaces event times with the
/// wall clock. Stops after `events` or when `stop` is set; paces to `rate`
/// events/s when it is not zero. Returns the events produced.
fn feed(
    brokers: &str,
    topic: &str,
    events: u64,
    rate: u64,
    restamp: bool,
    stop: &AtomicBool,
) -> u64 {
    let producer = MessageProducer::new(brokers, &BTreeMap::new()).expect("producer");
    // Event time as dense as a live stream at the target rate (one second
    // of event time per `TARGET_RATE` events), not adgen's default week.
    let span_ms =
        i64::try_from(events.min(TARGET_RATE * 3_600) * 1_000 / TARGET_RATE).unwrap_or(i64::MAX);
    let generator = Generator::new(GeneratorConfig {
        seed: SEED,
        events,
        span_ms: span_ms.max(1_000),
        ..GeneratorConfig::default()
    });
    let records = generator.map(|mut event| {
        if restamp {
            event.record.ts = now_ms();
        }
        event.record
    });
    produce_events(&producer, topic, records, rate, stop).expect("fed")
}

/// Waits (up to a minute) until the partitions hold `count` messages
/// (`high − low`); returns how many they hold. The mock broker keeps a
/// bounded log per partition, so a large backlog is partly trimmed.
fn wait_visible(brokers: &str, topic: &str, count: u64) -> u64 {
    let consumer: BaseConsumer = client_config(brokers, &BTreeMap::new())
        .create()
        .expect("consumer");
    let started = Instant::now();
    loop {
        let visible: i64 = (0..PARTITIONS)
            .map(|partition| {
                consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .map_or(0, |(low, high)| high - low)
            })
            .sum();
        let visible = u64::try_from(visible).unwrap_or(0);
        if visible >= count || started.elapsed() > Duration::from_secs(60) {
            return visible;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let events = env_or("ADFLOW_KAFKA_EVENTS", 1_000_000);
    let rate = env_or("ADFLOW_KAFKA_RATE", TARGET_RATE);
    let seconds = env_or("ADFLOW_KAFKA_SECONDS", 10);
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();

    // Throughput: the topic is full before the timed run.
    create_topics(&cluster, "backlog", "throughput-");
    let never = AtomicBool::new(false);
    let fed = feed(&brokers, "backlog", events, 0, false, &never);
    let visible = wait_visible(&brokers, "backlog", fed);
    eprintln!("fed {fed} events; the broker shows {visible}");
    let source = KafkaSourceConfig {
        stop_at_end: true,
        ..KafkaSourceConfig::new(&brokers, "backlog", "bench-throughput")
    };
    let stream_time = TimeConfig {
        reference: None,
        ..TimeConfig::stream()
    };
    let started = Instant::now();
    let summary = run(KafkaPipeline::new(source), stream_time, "throughput-");
    let elapsed = started.elapsed();
    assert_eq!(summary.run.records(), fed, "every event read");
    let messages: u64 = summary.sinks.values().map(|report| report.rows).sum();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| throughput, {fed} events, {WORKERS} workers | {:.0} events/s ({elapsed:.2?}; {messages} output messages) |",
        fed as f64 / elapsed.as_secs_f64()
    );

    // Latency: a live feed at `rate`, event time = produce time.
    create_topics(&cluster, "live", "latency-");
    let passed: Arc<Mutex<Vec<(Time, i64)>>> = Arc::default();
    let record = Arc::clone(&passed);
    let source = KafkaSourceConfig {
        idle_timeout: Duration::from_millis(200),
        ..KafkaSourceConfig::new(&brokers, "live", "bench-latency")
    };
    let live_time = TimeConfig {
        tick: LATENCY_TICK_MS,
        allowed_lateness: Some(0),
        reference: None,
        ..TimeConfig::stream()
    };
    let pipeline = KafkaPipeline::new(source).on_progress(move |time| {
        record.lock().expect("lock").push((time, now_ms()));
    });
    let shutdown = pipeline.shutdown();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (brokers, stop) = (brokers.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let started = Instant::now();
            let sent = feed(&brokers, "live", u64::MAX, rate, true, &stop);
            (sent, started.elapsed())
        })
    };
    let timer = {
        let (stop, shutdown) = (Arc::clone(&stop), shutdown.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::SeqCst);
            shutdown.finish();
        })
    };
    let summary = run(pipeline, live_time, "latency-");
    let _ = timer.join();
    let (sent, feeding) = feeder.join().expect("feeder");
    let passed = passed.lock().expect("lock");
    // Skip the first second: the consumer and the dataflow warm up.
    let warm = passed.first().map_or(0, |(time, _)| *time as i64 + 1_000);
    let mut latencies: Vec<i64> = passed
        .iter()
        .filter(|(time, _)| *time as i64 >= warm)
        .map(|(time, at)| at - *time as i64)
        .collect();
    latencies.sort_unstable();
    println!(
        "| latency feed | {sent} events in {feeding:.2?} = {:.0} events/s produced (target {rate}); {} read |",
        sent as f64 / feeding.as_secs_f64(),
        summary.run.records()
    );
    println!(
        "| latency, produce → result acknowledged, {} ticks of {LATENCY_TICK_MS} ms | p50 {} ms, p99 {} ms, max {} ms |",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
}
