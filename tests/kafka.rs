//! The Kafka source and sinks against librdkafka's in-process mock
//! cluster: a round trip agrees with the file pipeline, malformed messages
//! reach the dead-letter topic with their partition and offset, an idle
//! partition does not stall results, the whole pipeline's output topics
//! hold exactly the rows of a backfill over the same events, and a run
//! killed mid-stream and restarted (worker threads aborted, or a child
//! process sent SIGKILL) leaves every output topic as an uninterrupted run
//! does.
//!
//! The mock broker keeps at most 5 MiB per partition and silently drops
//! older messages; every topic read back is first checked to be whole
//! (`assert_log_kept`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use adflow::counts::hourly_kind_counts;
use adflow::dead_letter::Reason;
use adflow::event::{EventKind, EventRecord};
use adflow::kafka::{
    client_config, compacted, read_topic, ChangelogMode, KafkaError, KafkaPipeline,
    KafkaSourceConfig, KafkaSummary, MessageProducer,
};
use adflow::pipeline::{cluster_config, Pipeline, TimeConfig};
use adflow::sinks::{OutputFormat, SinkSet};
use adflow::sources::discover;
use adflow::timestamp::HOUR_MS;
use adflow::write::JsonlWriter;
use adflow_datagen::{GeneratedEvent, Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::outputs::output_names;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// adgen's events, one JSON line each.
fn adgen_lines(events: u64, span_ms: i64) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GeneratorConfig {
        seed: 11,
        events,
        span_ms,
        campaigns: 8,
        ads_per_campaign: 3,
        ..GeneratorConfig::default()
    });
    let mut event = GeneratedEvent::default();
    let mut lines = Vec::new();
    while generator.next_into(&mut event) {
        lines.push(json_line(&event.record));
    }
    lines
}

fn json_line(record: &EventRecord) -> Vec<u8> {
    let mut writer = JsonlWriter::new(Vec::new());
    writer.write(record).expect("writing to memory");
    let mut line = writer.finish().expect("writing to memory");
    line.pop();
    line
}

/// Produces `lines` to `topic`, keyed by their position so partitions fill evenly.
fn produce(brokers: &str, topic: &str, lines: &[Vec<u8>], partition: Option<i32>) {
    let producer = MessageProducer::new(brokers, &BTreeMap::new()).expect("producer");
    for (index, line) in lines.iter().enumerate() {
        let key = index.to_string();
        producer
            .send(topic, partition, Some(key.as_bytes()), Some(line))
            .expect("queued");
    }
    producer.flush(TIMEOUT).expect("delivered");
}

fn stream_time() -> TimeConfig {
    TimeConfig {
        reference: None,
        ..TimeConfig::stream()
    }
}

fn source(brokers: &str, topic: &str, group: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        stop_at_end: true,
        ..KafkaSourceConfig::new(brokers, topic, group)
    }
}

/// Panics if the broker has dropped the start of any partition of `topic`.
/// librdkafka's mock broker keeps at most 5 MiB (or 100,000 message sets)
/// per partition and silently drops the oldest beyond that; reading such a
/// topic back would miss rows that were written, so a test that compares
/// topics must make them large enough (more partitions) and check this.
fn assert_log_kept(brokers: &str, topic: &str) {
    let consumer: BaseConsumer = client_config(brokers, &BTreeMap::new())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), TIMEOUT)
            .expect("watermarks");
        assert_eq!(
            low,
            0,
            "the broker dropped the first {low} of {high} messages of {topic} partition {}",
            partition.id()
        );
    }
}

/// The compacted state of a topic, values parsed as JSON.
fn topic_state(brokers: &str, topic: &str) -> BTreeMap<String, serde_json::Value> {
    assert_log_kept(brokers, topic);
    let messages = read_topic(brokers, topic, &BTreeMap::new(), TIMEOUT).expect("read back");
    compacted(&messages)
        .into_iter()
        .map(|(key, value)| {
            let key = String::from_utf8(key).expect("keys are JSON text");
            let value = serde_json::from_slice(&value).expect("values are JSON");
            (key, value)
        })
        .collect()
}

/// The hourly counts per kind an upsert topic of `hourly_kind_counts` holds.
fn hourly_counts_in(brokers: &str, topic: &str) -> BTreeMap<(i64, EventKind), i64> {
    topic_state(brokers, topic)
        .values()
        .map(|value| {
            let hour = adflow::timestamp::parse_rfc3339(value["hour"].as_str().unwrap_or(""))
                .expect("an RFC 3339 hour");
            let kind = EventKind::parse(value["kind"].as_str().unwrap_or("")).expect("a kind");
            ((hour, kind), value["count"].as_i64().expect("a count"))
        })
        .collect()
}

/// Hourly counts per kind from the file pipeline over the same lines.
fn counts_from_files(lines: &[Vec<u8>]) -> BTreeMap<(i64, EventKind), i64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, lines.join(&b'\n')).expect("write events");
    let inputs = discover(&[path.to_string_lossy()]).expect("discover");
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    let sink = Arc::clone(&counts);
    Pipeline::new(inputs)
        .time(stream_time())
        .run(move |_scope, streams| {
            let sink = Arc::clone(&sink);
            hourly_kind_counts(streams.events)
                .inspect(move |(count, _time, diff)| {
                    let mut counts = sink.lock().expect("lock");
                    *counts.entry(count.clone()).or_insert(0isize) += diff;
                })
                .probe_with(&streams.probe);
        })
        .expect("file pipeline");
    let counts = counts.lock().expect("lock");
    counts
        .iter()
        .filter(|(_, diff)| **diff != 0)
        .map(|(count, _)| ((count.hour, count.kind), count.count))
        .collect()
}

/// Every output of the whole pipeline (`Analytics::emit`) run as a
/// backfill over the same lines as a JSONL file: each output's rows, as
/// canonical JSON text, with their multiplicity.
fn backfill_outputs(lines: &[Vec<u8>]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, lines.join(&b'\n')).expect("write events");
    let inputs = discover(&[path.to_string_lossy()]).expect("discover");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let sinks = SinkSet::new(&out, OutputFormat::Jsonl);
    let worker_sinks = sinks.clone();
    let time = TimeConfig::backfill();
    let config = AnalyticsConfig::default().with_horizon_of(&time);
    Pipeline::new(inputs)
        .time(time)
        .workers(2)
        .run(move |_scope, streams| {
            streams.events.analyze(&config).emit(
                &config.attribution.models,
                streams.dead_letters,
                &mut worker_sinks.attach(&streams.probe),
            );
        })
        .expect("file pipeline");
    output_names(&AnalyticsConfig::default().attribution.models)
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(out.join(format!("{name}.jsonl")))
                .unwrap_or_else(|error| panic!("{name}.jsonl: {error}"));
            let mut rows = BTreeMap::new();
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("JSON row");
                *rows.entry(row.to_string()).or_insert(0) += 1;
            }
            (name, rows)
        })
        .collect()
}

/// The rows an upsert topic holds, as [`backfill_outputs`] gives them: a
/// key holding several rows has an array as its value.
fn topic_rows(brokers: &str, topic: &str) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for value in topic_state(brokers, topic).into_values() {
        let values = match value {
            serde_json::Value::Array(values) => values,
            value => vec![value],
        };
        for row in values {
            *rows.entry(row.to_string()).or_insert(0) += 1;
        }
    }
    rows
}

/// A mock cluster whose topic `events` (of `partitions`) holds `events`
/// adgen events over `span_ms`; returns the cluster, its brokers and the lines.
fn cluster_with_events(
    partitions: i32,
    events: u64,
    span_ms: i64,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    String,
    Vec<Vec<u8>>,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster
        .create_topic("events", partitions, 1)
        .expect("topic");
    let lines = adgen_lines(events, span_ms);
    produce(&brokers, "events", &lines, None);
    (cluster, brokers, lines)
}

#[test]
fn round_trip_agrees_with_the_file_pipeline_and_dead_letters_malformed_messages() {
    let (_cluster, brokers, lines) = cluster_with_events(4, 20_000, 6 * HOUR_MS);
    // Malformed messages, each at a known partition and offset: partition
    // 3 already holds its share of the events.
    let bad: [(&[u8], Reason); 3] = [
        (b"not json", Reason::MalformedJson),
        (b"\xff\xfe", Reason::InvalidUtf8),
        (
            br#"{"event_id":"x","kind":"sale","ts":"2026-11-01T00:00:00Z","user_id":"u"}"#,
            Reason::UnknownKind,
        ),
    ];
    let consumer: BaseConsumer = client_config(&brokers, &BTreeMap::new())
        .create()
        .expect("consumer");
    let (_, first_bad) = consumer
        .fetch_watermarks("events", 3, TIMEOUT)
        .expect("watermarks");
    let payloads: Vec<Vec<u8>> = bad.iter().map(|(payload, _)| payload.to_vec()).collect();
    produce(&brokers, "events", &payloads, Some(3));

    let summary = KafkaPipeline::new(source(&brokers, "events", "round-trip"))
        .time(stream_time())
        .workers(2)
        .run(|_scope, streams, outputs| {
            let probe = &streams.probe;
            outputs.sink(
                hourly_kind_counts(streams.events),
                "counts",
                ChangelogMode::Upsert,
                probe,
            );
            outputs.sink(
                streams.dead_letters,
                "events-dlq",
                ChangelogMode::Upsert,
                probe,
            );
        })
        .expect("kafka pipeline");
    assert_sinks_ok(&summary);

    let expected = counts_from_files(&lines);
    assert!(!expected.is_empty());
    assert_eq!(hourly_counts_in(&brokers, "counts"), expected);
    let read: u64 = expected.values().map(|count| *count as u64).sum();
    assert_eq!(summary.run.events.total(), read);

    let dead = topic_state(&brokers, "events-dlq");
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for (index, (_, reason)) in bad.iter().enumerate() {
        let position = format!("partition 3 offset {}", first_bad + index as i64);
        let letter = dead
            .values()
            .find(|letter| letter["position"] == position.as_str())
            .unwrap_or_else(|| panic!("no dead letter at {position}: {dead:#?}"));
        assert_eq!(letter["reason"], reason.code());
        assert_eq!(letter["source"], "events");
        assert_eq!(summary.run.dead_letters.get(*reason), 1);
    }
    assert_eq!(summary.run.dead_letters.total(), bad.len() as u64);
}

/// An upsert topic of one row per key is exact even when a key's old row
/// and new row reach the sink from different workers: here every count is
/// sent to the worker its value picks, so a count's retraction and its
/// successor (one more) are usually on different workers.
#[test]
fn one_row_per_key_upserts_are_exact_when_a_keys_updates_come_from_several_workers() {
    use differential_dataflow::collection::AsCollection;
    use timely::dataflow::operators::Exchange;

    let (_cluster, brokers, lines) = cluster_with_events(4, 20_000, 6 * HOUR_MS);

    let summary = KafkaPipeline::new(source(&brokers, "events", "scattered"))
        .time(stream_time())
        .workers(2)
        .run(|_scope, streams, outputs| {
            let scattered = hourly_kind_counts(streams.events)
                .inner
                .exchange(|(row, _time, _diff)| row.count.unsigned_abs())
                .as_collection();
            outputs.sink(scattered, "counts", ChangelogMode::Upsert, &streams.probe);
        })
        .expect("kafka pipeline");
    assert_sinks_ok(&summary);

    let expected = counts_from_files(&lines);
    assert!(!expected.is_empty());
    assert_eq!(hourly_counts_in(&brokers, "counts"), expected);
}

/// A broker that refuses every message of the sink: the run reports the
/// sink's error and commits no offset, so a restart replays it all.
#[test]
fn refused_output_messages_fail_the_sink_and_commit_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let (cluster, brokers, _) = cluster_with_events(2, 2_000, HOUR_MS);
    // From here on the broker refuses every produce request, for good.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10_000],
    );

    let pipeline = KafkaPipeline::new(source(&brokers, "events", "refused"))
        .time(stream_time())
        .workers(2);
    let summary = counts_to(pipeline, "counts").expect("kafka pipeline");
    let report = summary.sinks.get("counts").expect("the sink's report");
    assert!(!report.is_ok(), "the refusal is reported: {report:?}");
    assert_eq!(committed(&brokers, "refused", "events", 2), 0);
}

/// A restart stopped before it has replayed what the last run committed
/// leaves the output topics and the commits as they were: its sinks hold
/// only part of the state the topics reflect, which must not replace it.
#[test]
fn a_restart_stopped_during_replay_leaves_topics_and_commits_alone() {
    let (_cluster, brokers, lines) = cluster_with_events(4, 20_000, 6 * HOUR_MS);
    let pipeline = || {
        KafkaPipeline::new(source(&brokers, "events", "halted"))
            .time(stream_time())
            .workers(2)
    };
    assert_sinks_ok(&run_counts(pipeline(), "halted"));
    let counts = topic_state(&brokers, "halted-counts");
    let diffs = raw_diff_state(&brokers, "halted-counts-diffs");
    assert!(!counts.is_empty() && !diffs.is_empty());
    assert_eq!(
        committed(&brokers, "halted", "events", 4),
        lines.len() as i64
    );

    // Stopped at once: replay has not even begun.
    let restart = pipeline();
    restart.shutdown().stop();
    let stopped = run_counts(restart, "halted");
    assert_sinks_ok(&stopped);
    assert_eq!(topic_state(&brokers, "halted-counts"), counts);
    assert_eq!(raw_diff_state(&brokers, "halted-counts-diffs"), diffs);
    assert_eq!(
        committed(&brokers, "halted", "events", 4),
        lines.len() as i64
    );

    // A restart that runs to the end still finds the topics whole.
    assert_sinks_ok(&run_counts(pipeline(), "halted"));
    assert_eq!(topic_state(&brokers, "halted-counts"), counts);
    assert_eq!(raw_diff_state(&brokers, "halted-counts-diffs"), diffs);
}

/// A worker whose source cannot open fails the whole run: the other
/// worker, which opened its partition and would stream on for ever, stops
/// too, and the run returns the error.
#[test]
fn a_worker_that_cannot_open_its_source_stops_the_others() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let (cluster, brokers, _) = cluster_with_events(2, 2_000, HOUR_MS);
    // The first worker to ask for its committed offsets is refused.
    cluster.request_errors(
        RDKafkaApiKey::OffsetFetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
    );
    let config = KafkaSourceConfig::new(&brokers, "events", "refused-start");
    let pipeline = KafkaPipeline::new(config).time(stream_time()).workers(2);
    let run = thread::spawn(move || counts_to(pipeline, "counts"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.is_finished() {
        assert!(Instant::now() < deadline, "the run did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    let error = run.join().expect("no panic").expect_err("the run fails");
    assert!(
        error.to_string().contains("committed offsets"),
        "the refusal is the error: {error}"
    );
    assert_eq!(committed(&brokers, "refused-start", "events", 2), 0);
}

fn assert_sinks_ok(summary: &KafkaSummary) {
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    for (topic, report) in &summary.sinks {
        assert!(report.is_ok(), "{topic}: {report:?}");
    }
}

/// Runs `pipeline` with its hourly counts per kind as the upsert topic
/// `output`.
fn counts_to(pipeline: KafkaPipeline, output: &'static str) -> Result<KafkaSummary, KafkaError> {
    pipeline.run(move |_scope, streams, outputs| {
        let counts = hourly_kind_counts(streams.events);
        outputs.sink(counts, output, ChangelogMode::Upsert, &streams.probe);
    })
}

/// Runs [`counts_to`] on a thread; returns its join handle and shutdown.
fn spawn_counts(
    pipeline: KafkaPipeline,
    output: &'static str,
) -> (thread::JoinHandle<KafkaSummary>, adflow::kafka::Shutdown) {
    let shutdown = pipeline.shutdown();
    let handle = thread::spawn(move || counts_to(pipeline, output).expect("kafka pipeline"));
    (handle, shutdown)
}

#[test]
fn an_idle_partition_stalls_results_only_until_its_idle_timeout() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("sparse", 2, 1).expect("topic");
    // Three hours of events, all in partition 0; partition 1 stays empty.
    let lines = adgen_lines(3_000, 3 * HOUR_MS);
    produce(&brokers, "sparse", &lines, Some(0));
    // Once the watermark has passed the events of partition 0, every hour
    // but the last is final.
    let all = counts_from_files(&lines);
    let last = all.keys().map(|(hour, _)| *hour).max().expect("counts");
    let complete = move |mut counts: BTreeMap<(i64, EventKind), i64>| {
        counts.retain(|(hour, _), _| *hour < last);
        counts
    };
    let expected = complete(all);
    assert!(!expected.is_empty());

    for (idle_timeout, output, results_expected) in [
        (Duration::from_secs(3600), "counts-patient", false),
        (Duration::from_millis(200), "counts-idle", true),
        // Every partition is idle at every look: the one worker reading
        // both must still let the watermark reach what partition 0
        // delivered (it used to wait for the other workers, of which
        // there are none; the same stall hit a 200 ms timeout whenever
        // the worker did not look between the two partitions going idle).
        (Duration::ZERO, "counts-eager", true),
    ] {
        let config = KafkaSourceConfig {
            idle_timeout,
            ..KafkaSourceConfig::new(&brokers, "sparse", output)
        };
        let (handle, shutdown) =
            spawn_counts(KafkaPipeline::new(config).time(stream_time()), output);
        // The patient run gets 3 s to show nothing; the others as long as
        // a loaded machine needs (up to 60 s) to show every complete hour.
        thread::sleep(Duration::from_secs(3));
        if results_expected {
            let deadline = Instant::now() + Duration::from_secs(60);
            let found = loop {
                let found = complete(hourly_counts_in(&brokers, output));
                if found == expected || Instant::now() >= deadline {
                    break found;
                }
                thread::sleep(Duration::from_millis(250));
            };
            assert_eq!(found, expected, "{output}: every complete hour is out");
        } else {
            assert!(
                topic_state(&brokers, output).is_empty(),
                "the empty partition holds the watermark back"
            );
        }
        shutdown.stop();
        let summary = handle.join().expect("pipeline thread");
        assert_eq!(summary.run.events.total(), 3_000);
    }
}

/// Every output of the shared pipeline definition (`Analytics::emit`) to
/// topics named `<prefix>-<output>`, and the hourly metrics also as raw
/// diffs to `<prefix>-metrics-hourly-diffs`.
fn run_analytics(pipeline: KafkaPipeline, prefix: &'static str) -> KafkaSummary {
    pipeline
        .run(move |_scope, streams, outputs| {
            let probe = &streams.probe;
            let config = AnalyticsConfig::default().with_horizon_of(&stream_time());
            let analytics = streams.events.analyze(&config);
            outputs.sink(
                analytics.metrics.hourly.clone(),
                &format!("{prefix}-metrics-hourly-diffs"),
                ChangelogMode::RawDiff,
                probe,
            );
            let mut topics = outputs.topics(&format!("{prefix}-"), ChangelogMode::Upsert, probe);
            analytics.emit(
                &config.attribution.models,
                streams.dead_letters,
                &mut topics,
            );
        })
        .expect("kafka pipeline")
}

/// Sum of `diff` per row of a raw-diff topic, zeros dropped.
fn raw_diff_state(brokers: &str, topic: &str) -> BTreeMap<String, i64> {
    assert_log_kept(brokers, topic);
    let messages = read_topic(brokers, topic, &BTreeMap::new(), TIMEOUT).expect("read back");
    let mut sums = BTreeMap::new();
    for message in messages {
        let value: serde_json::Value =
            serde_json::from_slice(message.value.as_deref().unwrap_or_default()).expect("JSON");
        *sums.entry(value["row"].to_string()).or_insert(0) += value["diff"].as_i64().expect("diff");
    }
    sums.retain(|_, sum| *sum != 0);
    sums
}

fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = client_config(brokers, &BTreeMap::new())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut query = TopicPartitionList::new();
    for partition in 0..partitions {
        query.add_partition(topic, partition);
    }
    let Ok(offsets) = consumer.committed_offsets(query, TIMEOUT) else {
        return 0;
    };
    offsets
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

/// What a test runs over the input topic: a pipeline writing topics
/// `<prefix>-<output>`.
type Run = fn(KafkaPipeline, &'static str) -> KafkaSummary;

/// How [`killed_and_restarted_equals_uninterrupted`] kills the first run
/// and where it restarts it.
#[derive(Clone, Copy)]
enum Kill {
    /// Abort the run's worker threads in this process, restart in this
    /// process.
    Threads,
    /// Run it in a child process, SIGKILL that, and restart in another
    /// child: nothing survives but what the broker holds, not even the
    /// process-wide names dictionary. Holds the name of the test, which
    /// each child runs again in the role [`child_role`] gives it.
    Process(&'static str),
    /// As `Process`, with a timely cluster of two child processes of two
    /// workers each: both are killed, and the restart is another cluster.
    Cluster(&'static str),
    /// As `Cluster`, but only process 1 is asked to stop (as Ctrl-C would):
    /// both must stop cleanly, process 0 because the stop is the
    /// cluster's.
    ClusterStop(&'static str),
}

/// Tells a child process started by [`spawn_child`] the brokers to read.
const CHILD_BROKERS: &str = "ADFLOW_TEST_CHILD_BROKERS";
/// Set in a child that should stop at the end of the input.
const CHILD_STOP_AT_END: &str = "ADFLOW_TEST_CHILD_STOP_AT_END";
/// In a child that is one process of a cluster: `<process>,<hostfile>`.
const CHILD_CLUSTER: &str = "ADFLOW_TEST_CHILD_CLUSTER";
/// A line that stops a child's run when written to its stdin.
const STOP: &str = "stop";
/// Where process 0 of a cluster writes how many records the cluster read.
const CHILD_RECORDS: &str = "ADFLOW_TEST_CHILD_RECORDS";

/// Processes in a test cluster, and workers in each.
const CLUSTER_PROCESSES: usize = 2;
const CLUSTER_WORKERS: usize = 2;

/// Where a child process stands in a test cluster.
struct ClusterPlace<'a> {
    process: usize,
    hosts: &'a std::path::Path,
    /// Where process 0 writes the records the cluster read.
    records: &'a std::path::Path,
}

/// In a child process started by [`spawn_child`]: runs `run` as the
/// restartable pipeline (group and prefix `restarted`) and returns true.
/// Anywhere else: returns false.
fn child_role(run: Run) -> bool {
    let Ok(brokers) = std::env::var(CHILD_BROKERS) else {
        return false;
    };
    let stop_at_end = std::env::var_os(CHILD_STOP_AT_END).is_some();
    let cluster = std::env::var(CHILD_CLUSTER).ok();
    let mut pipeline = restartable(&brokers, stop_at_end && cluster.is_none());
    if let Some(place) = cluster {
        let (process, hosts) = place.split_once(',').expect("process,hostfile");
        let process = process.parse().expect("a process index");
        let config = cluster_config(
            CLUSTER_WORKERS,
            CLUSTER_PROCESSES,
            process,
            Some(std::path::Path::new(hosts)),
        )
        .expect("cluster config");
        pipeline = pipeline.timely_config(config);
        // Only process 0 is told to finish at the end of the input: the
        // others stop because a finish asked of one process is the cluster's.
        if stop_at_end && process == 0 {
            pipeline.shutdown().finish();
        }
    }
    // The parent holds our stdin open: a line `stop` stops the run as
    // Ctrl-C does in the stream example; and if the parent dies, even by
    // SIGKILL, stdin ends and so does this process, rather than streaming
    // forever from a broker that went with it.
    let shutdown = pipeline.shutdown();
    thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.is_ok_and(|line| line == STOP) {
                shutdown.stop();
            }
        }
        std::process::exit(2);
    });
    let summary = run(pipeline, "restarted");
    assert_sinks_ok(&summary);
    if let (Some(cluster), Some(path)) = (&summary.run.cluster, std::env::var_os(CHILD_RECORDS)) {
        assert_eq!(cluster.workers, CLUSTER_PROCESSES * CLUSTER_WORKERS);
        std::fs::write(path, cluster.records().to_string()).expect("write the cluster's records");
    }
    true
}

/// The pipeline that is killed and restarted: group `restarted` over
/// `clicks`, on 2 workers.
fn restartable(brokers: &str, stop_at_end: bool) -> KafkaPipeline {
    let config = KafkaSourceConfig {
        stop_at_end,
        ..KafkaSourceConfig::new(brokers, "clicks", "restarted")
    };
    KafkaPipeline::new(config).time(stream_time()).workers(2)
}

/// A child process that is killed if the test panics before it is done
/// with it, rather than left running.
struct ChildProcess(Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `test` alone in a child process of this test binary, in the role
/// [`child_role`] gives it; its output goes to `log`.
fn spawn_child(
    test: &str,
    brokers: &str,
    stop_at_end: bool,
    log: &std::path::Path,
    cluster: Option<ClusterPlace<'_>>,
) -> ChildProcess {
    let log = std::fs::File::create(log).expect("child log");
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_BROKERS, brokers)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("child log"))
        .stderr(log);
    if stop_at_end {
        command.env(CHILD_STOP_AT_END, "1");
    }
    if let Some(place) = cluster {
        command
            .env(
                CHILD_CLUSTER,
                format!("{},{}", place.process, place.hosts.display()),
            )
            .env(CHILD_RECORDS, place.records);
    }
    ChildProcess(command.spawn().expect("child process"))
}

/// Starts a cluster of [`CLUSTER_PROCESSES`] child processes on fresh
/// ports, each running `test` in its [`child_role`], logging to
/// `<dir>/<name>-<process>.log`. With `stop_at_end`, only process 0 is
/// asked to finish ([`Shutdown::finish`](adflow::kafka::Shutdown::finish));
/// the others stop because it did. Process 0 writes the records the cluster
/// read to `<dir>/<name>-records`. Returns each child with its log.
fn spawn_cluster(
    test: &str,
    brokers: &str,
    stop_at_end: bool,
    dir: &std::path::Path,
    name: &str,
) -> Vec<(ChildProcess, std::path::PathBuf)> {
    let hosts = dir.join(format!("{name}-hosts.txt"));
    let ports: Vec<String> = (0..CLUSTER_PROCESSES)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            format!(
                "127.0.0.1:{}\n",
                listener.local_addr().expect("address").port()
            )
        })
        .collect();
    std::fs::write(&hosts, ports.concat()).expect("write the hostfile");
    let records = dir.join(format!("{name}-records"));
    (0..CLUSTER_PROCESSES)
        .map(|process| {
            let log = dir.join(format!("{name}-{process}.log"));
            let place = ClusterPlace {
                process,
                hosts: &hosts,
                records: &records,
            };
            let child = spawn_child(test, brokers, stop_at_end, &log, Some(place));
            (child, log)
        })
        .collect()
}

/// The records a cluster started by [`spawn_cluster`] read, as its
/// process 0 counted them.
fn cluster_records(dir: &std::path::Path, name: &str) -> u64 {
    let path = dir.join(format!("{name}-records"));
    let text = std::fs::read_to_string(&path).expect("process 0 wrote the cluster's records");
    text.parse().expect("a count")
}

/// Waits up to `limit` for `child` to exit successfully; panics with its
/// log otherwise.
fn wait_for_child(mut child: ChildProcess, limit: Duration, log: &std::path::Path) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("child status") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log).unwrap_or_default();
    // A child that matched no test (say, after a rename) exits 0 too.
    if status.is_none_or(|status| !status.success()) || !output.contains("1 passed") {
        panic!("the child process failed ({status:?}):\n{output}");
    }
}

/// Kills a run of `run` mid-stream once it has committed (as `kill`
/// says), feeds the rest of the input, restarts it, and compares every
/// output topic (`outputs`, compacted; `raw_diffs`, summed) with an
/// uninterrupted run's.
fn killed_and_restarted_equals_uninterrupted(
    run: Run,
    outputs: &[String],
    raw_diffs: &str,
    kill: Kill,
) {
    if child_role(run) {
        return;
    }
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("clicks", 4, 1).expect("topic");
    // Raw diffs are the largest output: spread them wide enough that the
    // mock broker keeps every message (see `assert_log_kept`).
    for prefix in ["restarted", "uninterrupted"] {
        cluster
            .create_topic(&format!("{prefix}-{raw_diffs}"), 32, 1)
            .expect("topic");
    }
    let lines = adgen_lines(40_000, 12 * HOUR_MS);
    let (first, second) = lines.split_at(lines.len() / 2);

    // The first half is in the topic when the interrupted run starts; it
    // is killed once it has committed offsets, mid-stream.
    produce(&brokers, "clicks", first, None);
    // `still_running` panics if the first run has ended on its own.
    let wait_for_commit = |still_running: &mut dyn FnMut()| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed(&brokers, "restarted", "clicks", 4) == 0 {
            assert!(Instant::now() < deadline, "the first run never committed");
            still_running();
            thread::sleep(Duration::from_millis(20));
        }
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let killed = match kill {
        Kill::Threads => {
            let pipeline = restartable(&brokers, false);
            let shutdown = pipeline.shutdown();
            let killed = thread::spawn(move || run(pipeline, "restarted"));
            wait_for_commit(&mut || assert!(!killed.is_finished(), "the first run ended"));
            shutdown.abort();
            let killed = killed.join().expect("first run");
            assert!(killed.aborted);
            format!("{killed:?}")
        }
        Kill::Process(test) => {
            let log = logs.path().join("killed.log");
            let mut child = spawn_child(test, &brokers, false, &log, None);
            wait_for_commit(&mut || {
                if let Some(status) = child.0.try_wait().expect("child status") {
                    let output = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("the first child process ended ({status}):\n{output}");
                }
            });
            // `Child::kill` is SIGKILL on Unix: no destructor, no flush.
            child.0.kill().expect("SIGKILL");
            let status = child.0.wait().expect("killed child");
            assert!(!status.success(), "the child was killed, not finished");
            std::fs::read_to_string(&log).unwrap_or_default()
        }
        Kill::Cluster(test) | Kill::ClusterStop(test) => {
            let mut children = spawn_cluster(test, &brokers, false, logs.path(), "killed");
            wait_for_commit(&mut || {
                for (child, log) in &mut children {
                    if let Some(status) = child.0.try_wait().expect("child status") {
                        let output = std::fs::read_to_string(&*log).unwrap_or_default();
                        panic!("a process of the first cluster ended ({status}):\n{output}");
                    }
                }
            });
            let mut output = String::new();
            if let Kill::ClusterStop(_) = kill {
                let (child, _) = &mut children[1];
                let stdin = child.0.stdin.as_mut().expect("the child's stdin");
                writeln!(stdin, "{STOP}").expect("ask process 1 to stop");
                for (child, log) in children {
                    wait_for_child(child, Duration::from_secs(120), &log);
                    output += &std::fs::read_to_string(&log).unwrap_or_default();
                }
            } else {
                for (mut child, log) in children {
                    child.0.kill().expect("SIGKILL");
                    let status = child.0.wait().expect("killed child");
                    assert!(!status.success(), "the child was killed, not finished");
                    output += &std::fs::read_to_string(&log).unwrap_or_default();
                }
            }
            output
        }
    };
    let committed_at_kill = committed(&brokers, "restarted", "clicks", 4);
    assert!(committed_at_kill > 0 && committed_at_kill < lines.len() as i64);

    // The rest arrives while it is down; the restarted run reads to the end.
    produce(&brokers, "clicks", second, None);
    match kill {
        Kill::Threads => {
            assert_sinks_ok(&run(restartable(&brokers, true), "restarted"));
        }
        Kill::Process(test) => {
            let log = logs.path().join("restarted.log");
            let child = spawn_child(test, &brokers, true, &log, None);
            wait_for_child(child, Duration::from_secs(600), &log);
        }
        Kill::Cluster(test) | Kill::ClusterStop(test) => {
            for (child, log) in spawn_cluster(test, &brokers, true, logs.path(), "restarted") {
                wait_for_child(child, Duration::from_secs(600), &log);
            }
            // The restart replays from the origin: it reads every message.
            assert_eq!(
                cluster_records(logs.path(), "restarted"),
                lines.len() as u64
            );
        }
    }
    assert_eq!(
        committed(&brokers, "restarted", "clicks", 4),
        lines.len() as i64
    );

    let uninterrupted = run(
        KafkaPipeline::new(source(&brokers, "clicks", "uninterrupted"))
            .time(stream_time())
            .workers(2),
        "uninterrupted",
    );
    assert_sinks_ok(&uninterrupted);
    assert_eq!(
        uninterrupted.run.events.total() + uninterrupted.run.dead_letters.total(),
        lines.len() as u64
    );
    assert_log_kept(&brokers, "clicks");

    for output in outputs {
        let expected = topic_state(&brokers, &format!("uninterrupted-{output}"));
        let found = topic_state(&brokers, &format!("restarted-{output}"));
        if output != "dead_letters" && !output.starts_with("attribution_") {
            assert!(!expected.is_empty(), "{output} is empty");
        }
        if found != expected {
            let keys: std::collections::BTreeSet<&String> =
                found.keys().chain(expected.keys()).collect();
            let differing: Vec<&&String> = keys
                .iter()
                .filter(|key| found.get(**key) != expected.get(**key))
                .collect();
            eprintln!(
                "{output}: {} keys found, {} expected, {} differ",
                found.len(),
                expected.len(),
                differing.len()
            );
            for key in differing.iter().take(2) {
                eprintln!(
                    "  {key}\n    found {:?}\n    expected {:?}",
                    found.get(**key),
                    expected.get(**key)
                );
                for prefix in ["restarted", "uninterrupted"] {
                    let topic = format!("{prefix}-{output}");
                    for message in
                        read_topic(&brokers, &topic, &BTreeMap::new(), TIMEOUT).expect("read")
                    {
                        if message.key.as_deref() == Some(key.as_bytes()) {
                            eprintln!(
                                "    {topic} p{} o{}: {}",
                                message.partition,
                                message.offset,
                                message.value.as_deref().map_or_else(
                                    || "tombstone".into(),
                                    |v| {
                                        String::from_utf8_lossy(&v[..v.len().min(120)]).into_owned()
                                    }
                                )
                            );
                        }
                    }
                }
            }
            panic!("{output} differs");
        }
    }
    let expected = raw_diff_state(&brokers, &format!("uninterrupted-{raw_diffs}"));
    assert!(!expected.is_empty());
    let found = raw_diff_state(&brokers, &format!("restarted-{raw_diffs}"));
    if found != expected {
        // Show the history of one row that differs, in both topics.
        let (row, _) = found
            .iter()
            .find(|(row, sum)| expected.get(*row) != Some(sum))
            .or_else(|| {
                expected
                    .iter()
                    .find(|(row, sum)| found.get(*row) != Some(sum))
            })
            .expect("a difference");
        let row: serde_json::Value = serde_json::from_str(row).expect("json");
        for topic in [
            &format!("restarted-{raw_diffs}"),
            &format!("uninterrupted-{raw_diffs}"),
        ] {
            eprintln!("{topic}:");
            for message in read_topic(&brokers, topic, &BTreeMap::new(), TIMEOUT).expect("read") {
                let value: serde_json::Value =
                    serde_json::from_slice(message.value.as_deref().unwrap_or_default())
                        .expect("JSON");
                if value["row"] == row {
                    eprintln!(
                        "  p{} o{} time {} diff {}",
                        message.partition, message.offset, value["time"], value["diff"]
                    );
                }
            }
        }
        eprintln!("killed: {killed}");
        panic!("raw diffs differ");
    }
    // The raw diffs sum to the upsert topic's rows (one row per key).
    assert_eq!(
        expected.len(),
        topic_state(&brokers, &format!("uninterrupted-{}", outputs[0])).len()
    );
}

/// Hourly counts per kind (upserts and raw diffs) and dead letters.
fn run_counts(pipeline: KafkaPipeline, prefix: &'static str) -> KafkaSummary {
    pipeline
        .run(move |_scope, streams, outputs| {
            let probe = &streams.probe;
            let counts = hourly_kind_counts(streams.events);
            let diffs = format!("{prefix}-counts-diffs");
            outputs.sink(counts.clone(), &diffs, ChangelogMode::RawDiff, probe);
            outputs.sink(
                counts,
                &format!("{prefix}-counts"),
                ChangelogMode::Upsert,
                probe,
            );
            let dead = format!("{prefix}-dead_letters");
            outputs.sink(streams.dead_letters, &dead, ChangelogMode::Upsert, probe);
        })
        .expect("kafka pipeline")
}

#[test]
fn hourly_counts_killed_mid_stream_and_restarted_equal_an_uninterrupted_run() {
    let outputs = ["counts", "dead_letters"].map(String::from);
    killed_and_restarted_equals_uninterrupted(run_counts, &outputs, "counts-diffs", Kill::Threads);
}

#[test]
fn full_pipeline_killed_mid_stream_and_restarted_equals_an_uninterrupted_run() {
    let outputs = output_names(&AnalyticsConfig::default().attribution.models);
    killed_and_restarted_equals_uninterrupted(
        run_analytics,
        &outputs,
        "metrics-hourly-diffs",
        Kill::Threads,
    );
}

/// As above, but a real crash: the first run is a child process killed
/// with SIGKILL, and the restart is another, which knows nothing but what
/// the broker holds (it learns campaign and ad names from the replay).
#[test]
fn full_pipeline_sigkilled_in_a_child_process_and_restarted_equals_an_uninterrupted_run() {
    let outputs = output_names(&AnalyticsConfig::default().attribution.models);
    killed_and_restarted_equals_uninterrupted(
        run_analytics,
        &outputs,
        "metrics-hourly-diffs",
        Kill::Process(
            "full_pipeline_sigkilled_in_a_child_process_and_restarted_equals_an_uninterrupted_run",
        ),
    );
}

/// The restartable pipeline run as a timely cluster of two processes, both
/// SIGKILLed once it has committed, then restarted as a new cluster: every
/// output topic ends as an uninterrupted run in one process leaves it.
#[test]
fn full_pipeline_as_a_cluster_sigkilled_and_restarted_equals_an_uninterrupted_run() {
    let outputs = output_names(&AnalyticsConfig::default().attribution.models);
    killed_and_restarted_equals_uninterrupted(
        run_analytics,
        &outputs,
        "metrics-hourly-diffs",
        Kill::Cluster(
            "full_pipeline_as_a_cluster_sigkilled_and_restarted_equals_an_uninterrupted_run",
        ),
    );
}

/// The restartable pipeline run as a timely cluster of two processes, of
/// which only process 1 is asked to stop once it has committed: both stop
/// cleanly, and a restarted cluster leaves every output topic as an
/// uninterrupted run in one process does.
#[test]
fn full_pipeline_as_a_cluster_stopped_through_one_process_and_restarted_equals_an_uninterrupted_run(
) {
    let outputs = output_names(&AnalyticsConfig::default().attribution.models);
    killed_and_restarted_equals_uninterrupted(
        run_analytics,
        &outputs,
        "metrics-hourly-diffs",
        Kill::ClusterStop(
            "full_pipeline_as_a_cluster_stopped_through_one_process_and_restarted_equals_an_uninterrupted_run",
        ),
    );
}

/// A timely cluster of two processes reading one topic leaves every output
/// topic holding exactly the rows of a backfill over the same events, and
/// process 0 counts the whole cluster's records. Only process 0 is asked to
/// finish: process 1 stops because the finish is the cluster's.
#[test]
fn full_pipeline_as_a_cluster_of_two_processes_equals_the_backfill() {
    if child_role(run_analytics) {
        return;
    }
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("clicks", 4, 1).expect("topic");
    let lines = adgen_lines(40_000, 12 * HOUR_MS);
    produce(&brokers, "clicks", &lines, None);
    let logs = tempfile::tempdir().expect("tempdir");
    let test = "full_pipeline_as_a_cluster_of_two_processes_equals_the_backfill";
    for (child, log) in spawn_cluster(test, &brokers, true, logs.path(), "cluster") {
        wait_for_child(child, Duration::from_secs(600), &log);
    }
    assert_eq!(cluster_records(logs.path(), "cluster"), lines.len() as u64);
    assert_eq!(
        committed(&brokers, "restarted", "clicks", 4),
        lines.len() as i64
    );
    assert_log_kept(&brokers, "clicks");
    assert_topics_hold_the_backfill(&brokers, &lines, &["restarted"]);
}

/// Stream and backfill share one pipeline definition, and the stream's
/// outputs do not depend on how its watermark advanced: two runs over one
/// topic (whose partitions the two workers read at their own pace, so
/// events arrive late in different places) leave every output topic
/// holding exactly the rows of a backfill over the same events.
#[test]
fn full_pipeline_from_kafka_equals_the_backfill_run_after_run() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("clicks", 4, 1).expect("topic");
    let lines = adgen_lines(40_000, 12 * HOUR_MS);
    produce(&brokers, "clicks", &lines, None);
    for prefix in ["first", "second"] {
        let source = source(&brokers, "clicks", prefix);
        assert_sinks_ok(&run_analytics(
            KafkaPipeline::new(source).time(stream_time()).workers(2),
            prefix,
        ));
    }
    assert_log_kept(&brokers, "clicks");
    assert_topics_hold_the_backfill(&brokers, &lines, &["first", "second"]);
}

/// Every output topic `<prefix>-<output>` of each of `prefixes` holds
/// exactly the rows a backfill over `lines` writes.
fn assert_topics_hold_the_backfill(brokers: &str, lines: &[Vec<u8>], prefixes: &[&str]) {
    let backfill = backfill_outputs(lines);
    for (output, expected) in backfill {
        if output != "dead_letters" && !output.starts_with("attribution_") {
            assert!(!expected.is_empty(), "{output} is empty");
        }
        for prefix in prefixes {
            let found = topic_rows(brokers, &format!("{prefix}-{output}"));
            let differing: Vec<&String> = found
                .keys()
                .chain(expected.keys())
                .filter(|row| found.get(*row) != expected.get(*row))
                .collect();
            assert!(
                differing.is_empty(),
                "{prefix} run, {output}: {} rows in the topic, {} in the backfill, {} differ, e.g. {:?}",
                found.len(),
                expected.len(),
                differing.len(),
                &differing[..differing.len().min(3)]
            );
        }
    }
}
