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

use adflow::pipeline::{cluster_config, Pipeline, TimeConfig};
use adflow::sinks::{OutputFormat, SinkSet};
use adflow::timestamp::{parse_duration, Millis};
use adflow_operators::analytics::AnalyticsExt;
use adflow_operators::outputs::RoasBoard;

use clap::{ArgAction, Parser};
use cli::{
    create_out_dir, print_profile, print_summary, progress_bar, workers_or_cores, Inputs, Settings,
};
use indicatif::HumanBytes;

#[path = "support/cli.rs"]
mod cli;

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
    /// Dead-letter events further than this from their file's reference time (the median of its
    /// first 64 event times); "none" checks only that times fall in 2000–2100.
    #[arg(long, default_value = "365d", value_parser = cli::clock_skew)]
    max_clock_skew: Millis,
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

/// A watermark lag, or none (clap gives `Option` fields a meaning of their own).
#[derive(Clone, Copy, Debug)]
struct Lateness(Option<Millis>);

fn lateness(text: &str) -> Result<Lateness, adflow::timestamp::DurationError> {
    cli::optional_duration(text).map(Lateness)
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let workers = workers_or_cores(args.workers);

    let inputs = Inputs::discover_or_generate(&args.inputs, args.generate, args.seed, args.quiet)?;
    let files = inputs.files.clone();
    let file_count = files.len();
    create_out_dir(&args.out)?;

    let time = TimeConfig {
        tick: args.tick,
        allowed_lateness: args.lateness.0,
        horizon: args.horizon,
        max_clock_skew: args.max_clock_skew,
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

    let settings = std::mem::take(&mut args.settings).with_file(args.config.as_deref())?;
    let analytics = settings.analytics(&time)?;
    let models = analytics.attribution.models.clone();
    let report_models = models.clone();

    let sinks = SinkSet::new(&args.out, args.format);
    let board = RoasBoard::default();
    let (worker_sinks, worker_board) = (sinks.clone(), board.clone());

    let progress = pipeline.progress();
    let bar = progress_bar("backfill", args.quiet, &progress);
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

    let source = format!("{file_count} files ({})", HumanBytes(summary.input_bytes));
    // Process 0 of a cluster reports the whole cluster; the others their share.
    let shown = summary.cluster.as_deref().unwrap_or(&summary);
    print_summary(
        "backfill",
        &source,
        shown,
        &sinks.handles(),
        inputs.generated.as_ref(),
    );
    if args.process > 0 {
        println!(
            "\n  (process {} of {}: counts above are this process's share; \
             process 0 reports the cluster, writes every output and ranks every campaign)",
            args.process, args.processes
        );
    } else {
        print!("{}", board.render(&report_models, 10));
    }
    if args.profile {
        print_profile(&summary, 25);
    }
    Ok(())
}
