//! Stream: run the adflow pipeline — dedup, fraud, attribution, metrics —
//! from a Kafka topic to output topics, and print a live view of the top
//! campaigns.
//!
//! ```sh
//! # No broker: an embedded one (librdkafka's mock cluster), fed by adgen at 20K events/s.
//! cargo run --release --example stream -- --rate 20000 --events 1000000 -w 2
//! # A real cluster (topics created beforehand, see docs/operations.md):
//! cargo run --release --example stream -- --brokers localhost:9092 --topic ad-events --group adflow
//! # A real cluster, fed by adgen from this process too:
//! cargo run --release --example stream -- --brokers 127.0.0.1:19092 --feed --rate 20000
//! # Two processes of a timely cluster sharing the topic's partitions (run both;
//! # hosts.txt lists host:port per process; process 0 shows the live view):
//! cargo run --release --example stream -- --brokers localhost:9092 -w 2 -n 2 -p 0 -h hosts.txt
//! ```
//!
//! Every output of the shared pipeline definition
//! (`adflow_operators::outputs`: `metrics_hourly`, `attribution_last_touch`,
//! `fraud_flags`, `dead_letters`, …) goes to the topic `<prefix><name>` as
//! an upsert changelog keyed by the result's key. Stopping and restarting with the same `--group`
//! resumes without loss or double counting (docs/operations.md).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use adflow::kafka::{
    produce_events, ChangelogMode, KafkaPipeline, KafkaSourceConfig, MessageProducer, Shutdown,
    StartFrom,
};
use adflow::pipeline::{cluster_config, Stamping, TimeConfig};
use adflow::timestamp::{parse_duration, Millis};
use adflow_datagen::{Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::attribution::Model;
use adflow_operators::fraud::FraudConfig;
use adflow_operators::outputs::{output_names, RoasBoard};
use anyhow::{bail, Context};
use clap::Parser;
use indicatif::HumanCount;
use rdkafka::mocking::MockCluster;

#[path = "support/cli.rs"]
mod cli;

/// Stream ad events from Kafka through adflow into changelog topics.
#[derive(Parser, Debug)]
#[command(version, about, disable_help_flag = true)]
struct Args {
    /// Kafka bootstrap servers. Without it, an embedded mock broker is
    /// started and fed from adgen.
    #[arg(long)]
    brokers: Option<String>,
    /// With --brokers: also feed the input topic from adgen.
    #[arg(long)]
    feed: bool,
    /// Input topic of JSON events.
    #[arg(long, default_value = "ad-events")]
    topic: String,
    /// Consumer group: its commits are where a restart resumes.
    #[arg(long, default_value = "adflow-stream")]
    group: String,
    /// Prefix of the output topics.
    #[arg(long, default_value = "adflow-")]
    prefix: String,
    /// Where a new group starts: earliest, latest, or a time (RFC 3339 or epoch ms).
    #[arg(long, default_value = "earliest")]
    start: StartFrom,
    /// A partition silent this long no longer holds the watermark back
    /// (docs/operations.md, "Watermark").
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    idle_timeout: Millis,
    /// How far the watermark trails the newest event time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lateness: Millis,
    /// Dead-letter events further than this from their worker's reference time (the median of
    /// its first 64 event times); "none" checks only that times fall in 2000–2100.
    #[arg(long, default_value = "365d", value_parser = cli::clock_skew)]
    max_clock_skew: Millis,
    /// Which dataflow time an event enters at: `frontier` (one time per
    /// read; results do not wait for the lateness) or `event_tick` (its own
    /// tick; a raw-diff changelog's times are event times). See
    /// docs/architecture.md, "Time".
    #[arg(long, default_value = "frontier")]
    stamping: Stamping,
    /// Events per second the feed produces.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Events the feed produces in all (0: a day of traffic at --rate).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the fed events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Partitions of the embedded broker's topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    workers: usize,
    /// Number of processes in the timely cluster (needs --brokers).
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process in the cluster.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File of host:port addresses, one per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<std::path::PathBuf>,
    /// Campaigns in the live view.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Seconds between two refreshes of the live view.
    #[arg(long, default_value_t = 1.0)]
    every: f64,
    /// Extra librdkafka settings, `key=value`, repeatable (security, timeouts).
    #[arg(long = "client", value_parser = key_value)]
    client: Vec<(String, String)>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .ok_or_else(|| format!("expected key=value, not {text:?}"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client: BTreeMap<String, String> = args.client.iter().cloned().collect();
    if args.processes > 1 && args.brokers.is_none() {
        bail!("a cluster of several processes needs a broker they all reach: --brokers");
    }

    // The embedded broker lives as long as `main`.
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let cluster = MockCluster::new(1).context("starting the embedded broker")?;
            cluster
                .create_topic(&args.topic, args.partitions, 1)
                .context("creating the input topic")?;
            for output in output_names(&AnalyticsConfig::default().attribution.models) {
                cluster
                    .create_topic(&format!("{}{output}", args.prefix), args.partitions, 1)
                    .context("creating an output topic")?;
            }
            Some(cluster)
        }
    };
    let brokers = match (&args.brokers, &embedded) {
        (Some(brokers), _) => brokers.clone(),
        (None, Some(cluster)) => cluster.bootstrap_servers(),
        (None, None) => bail!("no broker"),
    };
    eprintln!(
        "{} at {brokers}",
        if embedded.is_some() {
            "embedded mock broker"
        } else {
            "broker"
        }
    );

    let time = TimeConfig {
        allowed_lateness: Some(args.lateness),
        stamping: args.stamping,
        // With --brokers, the topic may hold older events than today's.
        reference: None,
        max_clock_skew: args.max_clock_skew,
        ..TimeConfig::stream()
    };
    let mut analytics = AnalyticsConfig::default().with_horizon_of(&time);
    let cidrs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/datasets/fixtures/datacenter_cidrs.txt"
    );
    analytics.fraud.datacenter_cidrs =
        FraudConfig::load_datacenter_cidrs(std::path::Path::new(cidrs))
            .with_context(|| format!("reading {cidrs}"))?;

    let source = KafkaSourceConfig {
        start: args.start,
        idle_timeout: Duration::from_millis(u64::try_from(args.idle_timeout).unwrap_or(0)),
        client: client.clone(),
        ..KafkaSourceConfig::new(&brokers, &args.topic, &args.group)
    };
    let timely = cluster_config(
        args.workers,
        args.processes,
        args.process,
        args.hostfile.as_deref(),
    )?;
    let pipeline = KafkaPipeline::new(source).time(time).timely_config(timely);
    let shutdown = pipeline.shutdown();
    // Ctrl-C stops reading, finishes the results of what was read, commits
    // and prints the summary (in a cluster, every process stops); a second
    // Ctrl-C exits at once, which is safe too: offsets are committed only
    // after delivery, so a restart recovers.
    let on_interrupt = shutdown.clone();
    let interrupted = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if interrupted.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping: finishing what was read (Ctrl-C again to exit at once)");
        on_interrupt.stop();
    })
    .context("installing the Ctrl-C handler")?;

    // Process 0 feeds, and the pipeline's finishing there finishes the cluster.
    let feeding = (embedded.is_some() || args.feed) && args.process == 0;
    // Set once the pipeline has stopped: a feed still running stops too.
    let stopped = Arc::new(AtomicBool::new(false));
    let feeder = feeding.then(|| {
        let (brokers, topic, client, shutdown, stopped) = (
            brokers.clone(),
            args.topic.clone(),
            client.clone(),
            shutdown.clone(),
            Arc::clone(&stopped),
        );
        let (rate, events, seed) = (args.rate, args.events, args.seed);
        thread::spawn(move || {
            let feed = Feed {
                brokers: &brokers,
                topic: &topic,
                client: &client,
                rate,
                events,
                seed,
            };
            feed.run(&shutdown, &stopped)
        })
    });

    let models = analytics.attribution.models.clone();
    let board = RoasBoard::default();
    let done = Arc::new(AtomicBool::new(false));
    // The board follows results gathered at worker 0, in process 0.
    let view = (args.process == 0).then(|| {
        let (board, done) = (board.clone(), Arc::clone(&done));
        let (top, every) = (args.top, Duration::from_secs_f64(args.every.max(0.1)));
        thread::spawn(move || live_view(&board, &done, top, every))
    });

    let prefix = args.prefix.clone();
    let worker_board = board.clone();
    let summary = pipeline.run(move |_scope, streams, outputs| {
        let probe = &streams.probe;
        let results = streams.events.analyze(&analytics);
        worker_board.watch(&results, probe);
        let mut topics = outputs.topics(&prefix, ChangelogMode::Upsert, probe);
        results.emit(&models, streams.dead_letters, &mut topics);
    });
    done.store(true, Ordering::SeqCst);
    stopped.store(true, Ordering::SeqCst);
    if let Some(view) = view {
        let _ = view.join();
    }
    if let Some(feeder) = feeder {
        match feeder.join() {
            Ok(result) => result?,
            Err(_) => bail!("the feed thread panicked"),
        }
    }
    let summary = summary?;

    if args.process == 0 {
        print!("{}", board.render(&[Model::LastTouch], args.top));
    }
    let run = summary.run.cluster.as_deref().unwrap_or(&summary.run);
    println!(
        "\nread {} events ({} late, admitted as corrections) and {} dead letters in {:.2?} on {} workers: {} events/s; {} offset commits",
        HumanCount(run.events.total()),
        HumanCount(run.admitted_late),
        HumanCount(run.dead_letters.total()),
        run.elapsed,
        run.workers,
        HumanCount(run.records_per_second() as u64),
        summary.commits,
    );
    if args.process > 0 {
        println!(
            "  (process {} of {}: counts above are this process's share; process 0 reports the cluster)",
            args.process, args.processes
        );
    }
    for (reason, count) in run.dead_letters.nonzero() {
        println!("  dead letters {reason}: {count}");
    }
    for (topic, report) in &summary.sinks {
        println!("  {topic}: {} messages", HumanCount(report.rows));
        for error in &report.errors {
            println!("    error: {error}");
        }
    }
    for error in &summary.errors {
        println!("  error: {error}");
    }
    Ok(())
}

/// adgen's events for the input topic.
struct Feed<'a> {
    brokers: &'a str,
    topic: &'a str,
    client: &'a BTreeMap<String, String>,
    /// Events per second.
    rate: u64,
    /// Events in all (0: a day of traffic at `rate`).
    events: u64,
    seed: u64,
}

impl Feed<'_> {
    /// Produces adgen's events as JSON messages at `rate` per second, keyed by
    /// event id, until they are all sent or `stopped`; then tells the pipeline
    /// to finish once it has read them.
    fn run(&self, shutdown: &Shutdown, stopped: &AtomicBool) -> anyhow::Result<()> {
        let Feed {
            brokers,
            topic,
            client,
            rate,
            events,
            seed,
        } = *self;
        let producer = MessageProducer::new(brokers, client)?;
        // Event time flows as fast as the feed: events start now and span the
        // time the feed takes at `rate`, so watermarks advance with the wall
        // clock as on a live stream. `--events 0` feeds a day of traffic.
        let events = if events == 0 {
            rate.max(1).saturating_mul(86_400)
        } else {
            events
        };
        let span_ms = match rate {
            0 => GeneratorConfig::default().span_ms,
            rate => i64::try_from(events.saturating_mul(1_000) / rate).unwrap_or(i64::MAX),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        let span_ms = span_ms.max(1_000);
        let default = GeneratorConfig::default();
        let generator = Generator::new(GeneratorConfig {
            seed,
            events,
            start_ms: now_ms,
            span_ms,
            // Conversions follow their clicks by up to a quarter of the span
            // (adgen's default is up to 3 days), so that a feed of minutes
            // shows attribution while it runs.
            max_conversion_delay_ms: (span_ms / 4).clamp(1_000, default.max_conversion_delay_ms),
            ..default
        });
        let started = Instant::now();
        let records = generator.map(|event| event.record);
        let sent = produce_events(&producer, topic, records, rate, stopped)?;
        eprintln!(
            "fed {} events in {:.2?}",
            HumanCount(sent),
            started.elapsed()
        );
        shutdown.finish();
        Ok(())
    }
}

/// Prints the last-touch leaderboard every `every` until `done`.
fn live_view(board: &RoasBoard, done: &AtomicBool, top: usize, every: Duration) {
    let started = Instant::now();
    let mut next = started + every;
    while !done.load(Ordering::SeqCst) {
        // Short naps, so that the summary does not wait for a long `every`.
        thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += every;
        let text = board.render(&[Model::LastTouch], top);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n[{:>6.1}s]{text}", started.elapsed().as_secs_f64());
        let _ = out.flush();
    }
}
