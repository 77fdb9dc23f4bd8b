//! Backfill: read event files (JSONL, CSV — plain or gzip — and Parquet),
//! run the adflow pipeline over them on a timely cluster — dedup, fraud,
//! attribution under five models, metrics with hour/day/month rollups —
//! write every result and print a summary with the top campaigns by ROAS.
//!
//! ```sh
//! # No arguments: generate 1M events with adgen into a temporary directory and backfill them.
//! cargo run --release --example backfill
//! # Your own data, two worker threads, Parquet results:
//! cargo run --release --example backfill -- 'logs/dt=*/*.parquet' --out results --format parquet -w 2
//! # Two processes of one worker each (run both; hosts.txt lists host:port per process):
//! cargo run --release --example backfill -- data/ -n 2 -p 0 -h hosts.txt
//! # Windows, models and rule thresholds from flags or a TOML file (same keys):
//! cargo run --release --example backfill -- data/ --config adflow.toml --models last_touch,linear
//! ```
//!
//! A TOML configuration uses the long flag names with underscores:
//!
//! ```toml
//! dedup_window = "24h"
//! click_window = "30d"
//! view_window = "1d"
//! half_life = "7d"
//! models = ["last_touch", "first_touch", "linear", "time_decay", "position_based"]
//! ip_flood_per_minute = 100
//! datacenter_cidrs = "datasets/fixtures/datacenter_cidrs.txt"
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adflow::dead_letter::Reason;
use adflow::event::EventKind;
use adflow::pipeline::{cluster_config, Pipeline, RunSummary, TimeConfig};
use adflow::sinks::{OutputFormat, SinkHandle, SinkSet};
use adflow::sources::{discover, Progress};
use adflow::timestamp::{parse_duration, Millis};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir_with, GenerationSummary, GeneratorConfig, OutputOptions};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::attribution::Model;
use adflow_operators::fraud::FraudConfig;
use adflow_operators::outputs::RoasBoard;
use anyhow::{bail, Context};
use clap::{ArgAction, Parser};
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Backfill ad events through adflow: every input event is counted, whatever
/// its order in the files; bad records become dead letters.
#[derive(Parser, Debug)]
#[command(version, about, disable_help_flag = true)]
struct Args {
    /// Input files, directories or glob patterns (.jsonl, .json, .ndjson, .csv, optionally .gz,
    /// and .parquet). With none, adgen generates a default dataset into a temporary directory.
    inputs: Vec<String>,
    /// Directory the results are written to.
    #[arg(short, long, default_value = "adflow-out")]
    out: PathBuf,
    /// Result format: csv, jsonl, parquet, or table (printed to stdout).
    #[arg(short, long, default_value = "csv")]
    format: OutputFormat,
    /// Events to generate when no input is given.
    #[arg(long, default_value_t = 1_000_000)]
    generate: u64,
    /// Seed of the generated dataset.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Granularity of dataflow time (e.g. 1s, 1m, 1h).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    tick: Millis,
    /// How far the watermark trails the newest event read; "none" holds all results until the end.
    #[arg(long, default_value = "1h", value_parser = lateness)]
    lateness: Lateness,
    /// Dead-letter events older than the watermark minus this (default: none, every event counts).
    #[arg(long, value_parser = parse_duration)]
    horizon: Option<Millis>,
    /// Worker threads per process (default: all cores).
    #[arg(short = 'w', long = "workers")]
    workers: Option<usize>,
    /// Number of processes in the timely cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process in the cluster.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File of host:port addresses, one per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// TOML file with operator settings (keys as the flags below, with underscores); flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Print the operators that took the most time, summed over this process's workers.
    #[arg(long)]
    profile: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Operator settings: each from its flag, else the TOML file, else the default.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Dedup window: copies of an event id within it are duplicates [default: 24h].
    #[arg(long)]
    dedup_window: Option<String>,
    /// Attribution lookback for clicks [default: 30d].
    #[arg(long)]
    click_window: Option<String>,
    /// Attribution lookback for impressions [default: 1d].
    #[arg(long)]
    view_window: Option<String>,
    /// Time-decay half-life [default: 7d].
    #[arg(long)]
    half_life: Option<String>,
    /// Attribution models: last_touch, first_touch, linear, time_decay, position_based [default: all].
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Click flood: more than this many clicks from one IP in a minute [default: 100].
    #[arg(long)]
    ip_flood_per_minute: Option<i64>,
    /// Click flood: more than this many clicks from one user in a minute.
    #[arg(long)]
    user_flood_per_minute: Option<i64>,
    /// Datacenter CIDR ranges, one per line [default: datasets/fixtures/datacenter_cidrs.txt].
    #[arg(long)]
    datacenter_cidrs: Option<PathBuf>,
    /// IP blocklist, one address per line.
    #[arg(long)]
    blocked_ips: Option<PathBuf>,
}

impl Settings {
    /// Flags first, then the file.
    fn or(self, file: Settings) -> Settings {
        Settings {
            dedup_window: self.dedup_window.or(file.dedup_window),
            click_window: self.click_window.or(file.click_window),
            view_window: self.view_window.or(file.view_window),
            half_life: self.half_life.or(file.half_life),
            models: self.models.or(file.models),
            ip_flood_per_minute: self.ip_flood_per_minute.or(file.ip_flood_per_minute),
            user_flood_per_minute: self.user_flood_per_minute.or(file.user_flood_per_minute),
            datacenter_cidrs: self.datacenter_cidrs.or(file.datacenter_cidrs),
            blocked_ips: self.blocked_ips.or(file.blocked_ips),
        }
    }

    fn analytics(&self, time: &TimeConfig) -> anyhow::Result<AnalyticsConfig> {
        let mut config = AnalyticsConfig::default().with_horizon_of(time);
        let duration = |text: &Option<String>| text.as_deref().map(parse_duration).transpose();
        if let Some(window) = duration(&self.dedup_window)? {
            config.dedup.window = window;
        }
        if let Some(window) = duration(&self.click_window)? {
            config.attribution.click_window = window;
        }
        if let Some(window) = duration(&self.view_window)? {
            config.attribution.view_window = window;
        }
        let half_life = duration(&self.half_life)?.unwrap_or(Model::DEFAULT_HALF_LIFE);
        if let Some(names) = &self.models {
            config.attribution.models = names
                .iter()
                .map(|name| match name.trim() {
                    "last_touch" | "last" => Ok(Model::LastTouch),
                    "first_touch" | "first" => Ok(Model::FirstTouch),
                    "linear" => Ok(Model::Linear),
                    "time_decay" => Ok(Model::TimeDecay { half_life }),
                    "position_based" | "position" => Ok(Model::PositionBased),
                    other => bail!("unknown attribution model {other:?}"),
                })
                .collect::<anyhow::Result<_>>()?;
        } else {
            for model in &mut config.attribution.models {
                if matches!(model, Model::TimeDecay { .. }) {
                    *model = Model::TimeDecay { half_life };
                }
            }
        }
        if let Some(threshold) = self.ip_flood_per_minute {
            config.fraud.click_flood_ip.threshold = threshold;
        }
        if let Some(threshold) = self.user_flood_per_minute {
            config.fraud.click_flood_user.threshold = threshold;
        }
        let cidrs = self.datacenter_cidrs.clone().unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/datasets/fixtures/datacenter_cidrs.txt"
            ))
        });
        config.fraud.datacenter_cidrs = FraudConfig::load_datacenter_cidrs(&cidrs)
            .with_context(|| format!("reading {}", cidrs.display()))?;
        if let Some(path) = &self.blocked_ips {
            config.fraud.blocked_ips = FraudConfig::load_blocked_ips(path)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        Ok(config)
    }
}

/// A watermark lag, or none (clap gives `Option` fields a meaning of their own).
#[derive(Clone, Copy, Debug)]
struct Lateness(Option<Millis>);

fn lateness(text: &str) -> Result<Lateness, adflow::timestamp::DurationError> {
    match text {
        "none" | "off" => Ok(Lateness(None)),
        _ => parse_duration(text).map(|lag| Lateness(Some(lag))),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));

    let mut generated_dir = None;
    let (inputs, generated) = if args.inputs.is_empty() {
        let dir = tempfile::Builder::new()
            .prefix("adflow-backfill-")
            .tempdir()?;
        let summary = generate(&args, dir.path())?;
        let inputs = vec![dir.path().to_string_lossy().into_owned()];
        generated_dir = Some(dir);
        (inputs, Some(summary))
    } else {
        (args.inputs.clone(), None)
    };

    let files = discover(&inputs)?;
    if files.is_empty() {
        bail!("no input files in {inputs:?}");
    }
    let file_count = files.len();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let time = TimeConfig {
        tick: args.tick,
        allowed_lateness: args.lateness.0,
        horizon: args.horizon,
        ..TimeConfig::backfill()
    };
    let timely = cluster_config(
        workers,
        args.processes,
        args.process,
        args.hostfile.as_deref(),
    )?;
    let pipeline = Pipeline::new(files)
        .time(time)
        .timely_config(timely)
        .profile(args.profile);

    let file_settings = match &args.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?,
        None => Settings::default(),
    };
    let settings = std::mem::take(&mut args.settings).or(file_settings);
    let analytics = settings.analytics(&time)?;
    let models = analytics.attribution.models.clone();
    let report_models = models.clone();

    let sinks = SinkSet::new(&args.out, args.format);
    let board = RoasBoard::default();
    let (worker_sinks, worker_board) = (sinks.clone(), board.clone());

    let progress = pipeline.progress();
    let bar = progress_bar(&args, &progress);
    let summary = pipeline.run(move |_scope, streams| {
        let analytics = streams.events.analyze(&analytics);
        worker_board.watch(&analytics, &streams.probe);
        analytics.emit(
            &models,
            streams.dead_letters,
            &mut worker_sinks.attach(&streams.probe),
        );
    });
    bar.finish();
    let summary = summary?;

    print_summary(&summary, file_count, &sinks.handles(), generated.as_ref());
    print!("{}", board.render(&report_models, 10));
    if args.profile {
        print_profile(&summary, 25);
    }
    drop(generated_dir);
    Ok(())
}

/// Generates the default dataset, with a progress bar of its own.
fn generate(args: &Args, dir: &std::path::Path) -> anyhow::Result<GenerationSummary> {
    let config = GeneratorConfig {
        seed: args.seed,
        events: args.generate,
        ..GeneratorConfig::default()
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.generate)
    };
    bar.set_style(ProgressStyle::with_template(
        "adgen    {bar:40.cyan/blue} {human_pos}/{human_len} events ({per_sec}) {msg}",
    )?);
    let options = OutputOptions {
        replace_existing: true,
        ..OutputOptions::default()
    };
    let summary = generate_to_dir_with(config, dir, FileFormat::Parquet, &options, |rows| {
        bar.set_position(rows)
    })?;
    bar.finish();
    eprintln!(
        "generated {} events ({} files) into {} in {:.2?}",
        HumanCount(summary.rows),
        summary.files.len(),
        dir.display(),
        summary.elapsed
    );
    Ok(summary)
}

/// A progress bar over input bytes, refreshed from the pipeline's counters.
fn progress_bar(args: &Args, progress: &Arc<Progress>) -> Finisher {
    let (_, total, _) = progress.snapshot();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "backfill {bar:40.green/blue} {bytes}/{total_bytes} {msg} [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (bar, done, progress) = (bar.clone(), Arc::clone(&done), Arc::clone(progress));
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                let (bytes, _, records) = progress.snapshot();
                bar.set_position(bytes);
                let rate = records as f64 / started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{} records, {} events/s",
                    HumanCount(records),
                    HumanCount(rate as u64)
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    Finisher {
        bar,
        done,
        poller: Some(poller),
    }
}

struct Finisher {
    bar: ProgressBar,
    done: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Finisher {
    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        self.bar.finish_and_clear();
    }
}

/// The `top` operators by scheduled time. Scopes include their children.
fn print_profile(summary: &RunSummary, top: usize) {
    let busy: std::time::Duration = summary
        .operators
        .iter()
        .filter(|op| op.depth() == 2)
        .map(|op| op.elapsed)
        .sum();
    println!();
    println!(
        "  operators by time (summed over {} workers; {:.2?} in operators directly under the dataflow)",
        summary.workers, busy
    );
    println!(
        "  {:>10} {:>6} {:>10}  operator",
        "time", "share", "scheduled"
    );
    for op in summary.operators.iter().take(top) {
        let share = if busy.is_zero() {
            0.0
        } else {
            100.0 * op.elapsed.as_secs_f64() / busy.as_secs_f64()
        };
        println!(
            "  {:>10.2?} {:>5.1}% {:>10}  {}{} {:?}",
            op.elapsed,
            share,
            op.schedulings,
            "  ".repeat(op.depth().saturating_sub(2)),
            op.name,
            op.address
        );
    }
}

fn print_summary(
    summary: &RunSummary,
    files: usize,
    sinks: &[SinkHandle],
    generated: Option<&GenerationSummary>,
) {
    println!();
    println!(
        "adflow backfill: {} records from {} files ({}) on {} workers in {:.2?} — {} records/s",
        HumanCount(summary.records()),
        files,
        HumanBytes(summary.input_bytes),
        summary.workers,
        summary.elapsed,
        HumanCount(summary.records_per_second() as u64),
    );
    println!();
    println!("  {:<24} {:>14}", "events read", "count");
    for kind in EventKind::ALL {
        let expected = generated
            .and_then(|generated| generated.rows_per_kind.get(kind.as_str()))
            .map(|rows| {
                if *rows == summary.events.get(kind) {
                    "  = adgen".to_owned()
                } else {
                    format!("  ≠ adgen wrote {rows}")
                }
            })
            .unwrap_or_default();
        println!(
            "  {:<24} {:>14}{expected}",
            kind.as_str(),
            HumanCount(summary.events.get(kind)).to_string()
        );
    }
    println!(
        "  {:<24} {:>14}",
        "total",
        HumanCount(summary.events.total()).to_string()
    );
    if summary.admitted_late > 0 {
        println!(
            "  ({} arrived behind the watermark and were applied as corrections)",
            HumanCount(summary.admitted_late)
        );
    }
    println!();
    if summary.dead_letters.total() == 0 {
        println!("  dead letters: none");
    } else {
        println!("  {:<24} {:>14}", "dead letters", "count");
        for (reason, count) in summary.dead_letters.nonzero() {
            println!(
                "  {:<24} {:>14}",
                reason.code(),
                HumanCount(count).to_string()
            );
        }
        let late = summary.dead_letters.get(Reason::Late);
        if late > 0 {
            println!("  ({late} events were beyond the horizon; --horizon none counts them)");
        }
    }
    println!();
    for sink in sinks {
        let report = sink.report();
        match &report.path {
            Some(path) => println!("  wrote {:>10} rows to {}", report.rows, path.display()),
            None => println!("  printed {} rows of {}", report.rows, report.name),
        }
        for error in &report.errors {
            println!("  error writing {}: {error}", report.name);
        }
    }
}
