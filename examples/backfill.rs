//! Backfill: read event files (JSONL, CSV — plain or gzip — and Parquet),
//! run the adflow pipeline over them on a timely cluster, write the results
//! and print a summary.
//!
//! ```sh
//! # No arguments: generate 1M events with adgen into a temporary directory and backfill them.
//! cargo run --release --example backfill
//! # Your own data, two worker threads, Parquet results:
//! cargo run --release --example backfill -- 'logs/dt=*/*.parquet' --out results --format parquet -w 2
//! # Two processes of one worker each (run both; hosts.txt lists host:port per process):
//! cargo run --release --example backfill -- data/ -n 2 -p 0 -h hosts.txt
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adflow::counts::hourly_kind_counts;
use adflow::dead_letter::Reason;
use adflow::event::EventKind;
use adflow::pipeline::{cluster_config, Pipeline, RunSummary, TimeConfig};
use adflow::sinks::{OutputFormat, SinkExt, SinkHandle, SinkSpec};
use adflow::sources::{discover, Progress};
use adflow::timestamp::{parse_duration, Millis};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir_with, GenerationSummary, GeneratorConfig, OutputOptions};
use anyhow::{bail, Context};
use clap::{ArgAction, Parser};
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};

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
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
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
    let args = Args::parse();
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
    let pipeline = Pipeline::new(files).time(time).timely_config(timely);

    let hourly = SinkHandle::new("hourly_counts");
    let dead_letters = SinkHandle::new("dead_letters");
    let (hourly_spec, dead_spec) = (spec(&args, "hourly_counts"), spec(&args, "dead_letters"));
    let (hourly_handle, dead_handle) = (hourly.clone(), dead_letters.clone());

    let progress = pipeline.progress();
    let bar = progress_bar(&args, &progress);
    let summary = pipeline.run(move |_scope, streams| {
        hourly_kind_counts(streams.events).sink_core(
            "Sink: hourly_counts",
            hourly_spec.clone(),
            &streams.probe,
            hourly_handle.clone(),
        );
        streams.dead_letters.sink_core(
            "Sink: dead_letters",
            dead_spec.clone(),
            &streams.probe,
            dead_handle.clone(),
        );
    });
    bar.finish();
    let summary = summary?;

    print_summary(
        &summary,
        file_count,
        &[hourly, dead_letters],
        generated.as_ref(),
    );
    drop(generated_dir);
    Ok(())
}

fn spec(args: &Args, name: &str) -> SinkSpec {
    match args.format {
        OutputFormat::Table => SinkSpec::stdout(name, OutputFormat::Table),
        format => SinkSpec::file(name, &args.out, format),
    }
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
