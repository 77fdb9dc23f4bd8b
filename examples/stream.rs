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
//! ```
//!
//! Results go to `<prefix>metrics-hourly`, `-daily`, `-monthly`,
//! `<prefix>attribution`, `<prefix>fraud`, `<prefix>duplicates` (upsert
//! changelogs keyed by each result's key) and dead letters to
//! `<prefix>dead-letters`. Stopping and restarting with the same `--group`
//! resumes without loss or double counting (docs/operations.md).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use adflow::event::Id;
use adflow::kafka::{
    ChangelogMode, KafkaPipeline, KafkaSourceConfig, MessageProducer, Shutdown, StartFrom,
};
use adflow::money::{format_micros, Micros};
use adflow::pipeline::TimeConfig;
use adflow::timestamp::{parse_duration, Millis};
use adflow::write::JsonlWriter;
use adflow_datagen::{GeneratedEvent, Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::attribution::roas;
use adflow_operators::fraud::FraudConfig;
use adflow_operators::metrics::{Granularity, MetricsRow};
use anyhow::{bail, Context};
use clap::Parser;
use indicatif::HumanCount;
use rdkafka::mocking::MockCluster;

/// Stream ad events from Kafka through adflow into changelog topics.
#[derive(Parser, Debug)]
#[command(version, about)]
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
    /// A partition silent this long no longer holds the watermark back.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    idle_timeout: Millis,
    /// How far the watermark trails the newest event time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lateness: Millis,
    /// Events per second the feed produces.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Events the feed produces in all (0: until Ctrl-C).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the fed events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Partitions of the embedded broker's topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    workers: usize,
    /// Campaigns in the live view.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Seconds between two refreshes of the live view.
    #[arg(long, default_value_t = 1.0)]
    every: f64,
    /// Extra librdkafka settings, `key=value`, repeatable (security, timeouts).
    #[arg(long = "client", value_parser = key_value)]
    client: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .ok_or_else(|| format!("expected key=value, not {text:?}"))
}

/// The output topics, after the prefix.
const OUTPUTS: [&str; 7] = [
    "metrics-hourly",
    "metrics-daily",
    "metrics-monthly",
    "attribution",
    "fraud",
    "duplicates",
    "dead-letters",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client: BTreeMap<String, String> = args.client.iter().cloned().collect();

    // The embedded broker lives as long as `main`.
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let cluster = MockCluster::new(1).context("starting the embedded broker")?;
            cluster
                .create_topic(&args.topic, args.partitions, 1)
                .context("creating the input topic")?;
            for output in OUTPUTS {
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
        // adgen's events start on 2026-11-01, whatever today is.
        reference: None,
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
    let pipeline = KafkaPipeline::new(source).time(time).workers(args.workers);
    let shutdown = pipeline.shutdown();

    let feeding = embedded.is_some() || args.feed;
    let feeder = feeding.then(|| {
        let (brokers, topic, client, shutdown) = (
            brokers.clone(),
            args.topic.clone(),
            client.clone(),
            shutdown.clone(),
        );
        let (rate, events, seed) = (args.rate, args.events, args.seed);
        thread::spawn(move || feed(&brokers, &topic, &client, rate, events, seed, &shutdown))
    });

    let board = Arc::new(Mutex::new(Leaderboard::default()));
    let done = Arc::new(AtomicBool::new(false));
    let view = {
        let (board, done) = (Arc::clone(&board), Arc::clone(&done));
        let (top, every) = (args.top, Duration::from_secs_f64(args.every.max(0.1)));
        thread::spawn(move || live_view(&board, &done, top, every))
    };

    let prefix = args.prefix.clone();
    let worker_board = Arc::clone(&board);
    let summary = pipeline.run(move |_scope, streams, outputs| {
        let probe = &streams.probe;
        let topic = |name: &str| format!("{prefix}{name}");
        let results = streams.events.analyze(&analytics);
        let board = Arc::clone(&worker_board);
        let daily = results.metrics.daily.inspect(move |(row, _time, diff)| {
            board
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .add(row, *diff)
        });
        let upsert = ChangelogMode::Upsert;
        outputs.sink(
            results.metrics.hourly,
            &topic("metrics-hourly"),
            upsert,
            probe,
        );
        outputs.sink(daily, &topic("metrics-daily"), upsert, probe);
        outputs.sink(
            results.metrics.monthly,
            &topic("metrics-monthly"),
            upsert,
            probe,
        );
        outputs.sink(
            results.attribution.by_campaign_day,
            &topic("attribution"),
            upsert,
            probe,
        );
        outputs.sink(results.verdicts, &topic("fraud"), upsert, probe);
        outputs.sink(results.duplicates, &topic("duplicates"), upsert, probe);
        outputs.sink(streams.dead_letters, &topic("dead-letters"), upsert, probe);
    });
    done.store(true, Ordering::SeqCst);
    let _ = view.join();
    if let Some(feeder) = feeder {
        match feeder.join() {
            Ok(result) => result?,
            Err(_) => bail!("the feed thread panicked"),
        }
    }
    let summary = summary?;

    let board = board.lock().unwrap_or_else(PoisonError::into_inner);
    print!("{}", board.render(args.top));
    let run = &summary.run;
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

/// Produces adgen's events as JSON messages at `rate` per second, keyed by
/// event id; then tells the pipeline to finish once it has read them.
fn feed(
    brokers: &str,
    topic: &str,
    client: &BTreeMap<String, String>,
    rate: u64,
    events: u64,
    seed: u64,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let producer = MessageProducer::new(brokers, client)?;
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        events: if events == 0 { u64::MAX } else { events },
        ..GeneratorConfig::default()
    });
    let mut event = GeneratedEvent::default();
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut line = JsonlWriter::new(Vec::new());
    while generator.next_into(&mut event) {
        line.write(&event.record)?;
        let mut payload = line.finish()?;
        payload.pop(); // the newline
        producer.send(
            topic,
            None,
            Some(event.record.event_id.as_bytes()),
            Some(&payload),
        )?;
        payload.clear();
        line = JsonlWriter::new(payload);
        sent += 1;
        // Pace to the rate: sleep whenever ahead of schedule.
        if rate > 0 && sent % 256 == 0 {
            producer.poll();
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                thread::sleep(ahead);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!(
        "fed {} events in {:.2?}",
        HumanCount(sent),
        started.elapsed()
    );
    shutdown.finish();
    Ok(())
}

/// Per-campaign totals from the daily metrics changelog.
#[derive(Default)]
struct Leaderboard {
    campaigns: BTreeMap<Id, Totals>,
    updates: u64,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    cost: Micros,
    revenue: Micros,
    conversions_micros: i64,
    clicks: i64,
    impressions: i64,
}

impl Leaderboard {
    fn add(&mut self, row: &MetricsRow, diff: isize) {
        let (Some(campaign), Granularity::Day) = (row.campaign_id, row.granularity) else {
            return;
        };
        let diff = diff as i64;
        let totals = self.campaigns.entry(campaign).or_default();
        totals.cost += row.cost_micros * diff;
        totals.revenue += row.revenue_micros * diff;
        totals.conversions_micros += row.conversions_micros * diff;
        totals.clicks += row.clicks * diff;
        totals.impressions += row.impressions * diff;
        self.updates += 1;
    }

    /// The top campaigns by last-touch revenue.
    fn render(&self, top: usize) -> String {
        let mut rows: Vec<(&Id, &Totals)> = self.campaigns.iter().collect();
        rows.sort_by(|a, b| b.1.revenue.cmp(&a.1.revenue).then(a.0.cmp(b.0)));
        let mut text = format!(
            "top campaigns by revenue (last touch), {} metric updates\n  {:<18} {:>12} {:>10} {:>12} {:>14} {:>14} {:>8}\n",
            HumanCount(self.updates),
            "campaign", "impressions", "clicks", "conversions", "revenue", "cost", "ROAS"
        );
        for (campaign, totals) in rows.into_iter().take(top) {
            let ratio = roas(totals.revenue, totals.cost)
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"));
            text.push_str(&format!(
                "  {:<18} {:>12} {:>10} {:>12.2} {:>14} {:>14} {:>8}\n",
                format!("{:016x}", campaign.get()),
                totals.impressions,
                totals.clicks,
                totals.conversions_micros as f64 / 1e6,
                format_micros(totals.revenue),
                format_micros(totals.cost),
                ratio
            ));
        }
        text
    }
}

/// Prints the leaderboard every `every` until `done`.
fn live_view(board: &Mutex<Leaderboard>, done: &AtomicBool, top: usize, every: Duration) {
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) {
        thread::sleep(every);
        let text = board
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(top);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n[{:>6.1}s] {text}", started.elapsed().as_secs_f64());
        let _ = out.flush();
    }
}
