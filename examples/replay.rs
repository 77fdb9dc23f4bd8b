//! Replay: feed historical logs (Parquet, JSONL, CSV) through the streaming
//! pipeline in event-time order, as fast as possible or at a speed-up of
//! real time; print how the results evolve and write every output's full
//! changelog (each update with its time and diff), for comparing attribution
//! models or fraud thresholds on the same history.
//!
//! ```sh
//! # No arguments: generate 200K events with adgen and replay them as fast as possible.
//! cargo run --release --example replay
//! # A week of logs at one simulated hour per second, JSONL changelogs into replay-out/:
//! cargo run --release --example replay -- 'logs/*.parquet' --speedup 3600 --out replay-out
//! # Same history, a stricter click-flood rule and only two models:
//! cargo run --release --example replay -- logs/ --ip-flood-per-minute 20 --models last_touch,linear
//! ```
//!
//! Replay, backfill and stream share one pipeline definition
//! (`adflow_operators::outputs`): on the same events their final outputs
//! are the same (`tests/replay.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adflow::money::format_micros;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Pipeline, Stamping, Time, TimeConfig};
use adflow::sinks::{OutputFormat, SinkMode, SinkSet};
use adflow::sources::replay::Replay;
use adflow::sources::{Progress, WorkPlan};
use adflow::timestamp::{format_rfc3339, parse_duration, Millis};
use adflow_operators::analytics::AnalyticsExt;
use adflow_operators::attribution::Model;
use adflow_operators::outputs::RoasBoard;
use anyhow::bail;
use clap::Parser;
use cli::{create_out_dir, print_summary, workers_or_cores, Inputs, Settings};
use indicatif::{HumanCount, ProgressBar, ProgressStyle};

#[path = "support/cli.rs"]
mod cli;

/// Replay event logs through the streaming pipeline in event-time order and
/// write every output's changelog.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Input files, directories or glob patterns. With none, adgen generates
    /// a default dataset into a temporary directory.
    inputs: Vec<String>,
    /// Directory the changelogs are written to.
    #[arg(short, long, default_value = "adflow-replay")]
    out: PathBuf,
    /// Changelog format: jsonl, csv or parquet.
    #[arg(short, long, default_value = "jsonl")]
    format: OutputFormat,
    /// Replay this many times faster than real time (3600: an hour per
    /// second); without it, as fast as possible.
    #[arg(long)]
    speedup: Option<f64>,
    /// Print a line each time replayed event time passes a multiple of this.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    every: Millis,
    /// Events to generate when no input is given.
    #[arg(long, default_value_t = 200_000)]
    generate: u64,
    /// Seed of the generated dataset.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Granularity of dataflow time.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    tick: Millis,
    /// How far the watermark trails the newest event.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lateness: Millis,
    /// Dead-letter events older than the watermark minus this.
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    horizon: Millis,
    /// Dead-letter events further than this from their source's reference time (the median of
    /// its first 64 event times); "none" checks only that times fall in 2000–2100.
    #[arg(long, default_value = "365d", value_parser = cli::clock_skew)]
    max_clock_skew: Millis,
    /// Worker threads (default: all cores).
    #[arg(short = 'w', long = "workers")]
    workers: Option<usize>,
    /// TOML file with operator settings (keys as the flags, with underscores); flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    /// Only the final summary.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.format == OutputFormat::Table {
        bail!("a changelog needs a file format: jsonl, csv or parquet");
    }
    let workers = workers_or_cores(args.workers);

    let inputs = Inputs::discover_or_generate(&args.inputs, args.generate, args.seed, args.quiet)?;
    let files = inputs.files.clone();
    let file_count = files.len();
    create_out_dir(&args.out)?;

    let time = TimeConfig {
        tick: args.tick,
        allowed_lateness: Some(args.lateness),
        horizon: Some(args.horizon),
        max_clock_skew: args.max_clock_skew,
        // The changelog's times are event ticks: how results evolved over
        // event time, for comparing runs.
        stamping: Stamping::EventTick,
        ..TimeConfig::stream()
    };
    let settings = std::mem::take(&mut args.settings).with_file(args.config.as_deref())?;
    let analytics = settings.analytics(&time)?;
    let models = analytics.attribution.models.clone();

    let loading = std::time::Instant::now();
    let progress = Arc::new(Progress::default());
    let validator = EventValidator::new(time.reference, time.max_clock_skew);
    let replay = Replay::load(&WorkPlan::new(files), &validator, Arc::clone(&progress))
        .speedup(args.speedup);
    eprintln!(
        "loaded {} records from {file_count} files in {:.2?}; replaying {}",
        HumanCount(replay.len() as u64),
        loading.elapsed(),
        match args.speedup {
            Some(factor) => format!("at {factor}× real time"),
            None => "as fast as possible".to_owned(),
        }
    );

    let sinks = SinkSet::new(&args.out, args.format).with_mode(SinkMode::Changelog);
    let board = RoasBoard::default();
    let event_time = Arc::new(AtomicU64::new(0));
    let reporter = Reporter::start(&args, &replay, &progress, &board, &event_time, &models);
    let (worker_sinks, worker_board, worker_models) =
        (sinks.clone(), board.clone(), models.clone());
    let summary = Pipeline::replay(replay, progress)
        .time(time)
        .workers(workers)
        .run(move |_scope, streams| {
            let event_time = Arc::clone(&event_time);
            streams.events.clone().inspect(move |(_, at, _)| {
                event_time.fetch_max(*at, Ordering::Relaxed);
            });
            let analytics = streams.events.analyze(&analytics);
            worker_board.watch(&analytics, &streams.probe);
            analytics.emit(
                &worker_models,
                streams.dead_letters,
                &mut worker_sinks.attach(&streams.probe),
            );
        });
    reporter.finish();
    let summary = summary?;

    print_summary(
        "replay",
        &format!("{file_count} files"),
        &summary,
        &sinks.handles(),
        inputs.generated.as_ref(),
    );
    print!("{}", board.render(&models, 10));
    Ok(())
}

/// Prints a line of running totals each time event time passes a multiple
/// of `--every`, above a progress bar over the replayed records.
struct Reporter {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    fn start(
        args: &Args,
        replay: &Replay,
        progress: &Arc<Progress>,
        board: &RoasBoard,
        event_time: &Arc<AtomicU64>,
        models: &[Model],
    ) -> Reporter {
        let bar = ProgressBar::new(replay.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "replay   {bar:40.green/blue} {human_pos}/{human_len} records ({per_sec}) [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let quiet = args.quiet;
        if quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let every = u64::try_from(args.every.max(1)).unwrap_or(1);
        let first = u64::try_from(replay.first_ts()).unwrap_or(0);
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (done, progress, board) = (Arc::clone(&done), Arc::clone(progress), board.clone());
            let (event_time, models) = (Arc::clone(event_time), models.to_vec());
            std::thread::spawn(move || {
                let mut next_line = (first / every + 1) * every;
                loop {
                    let finished = done.load(Ordering::Relaxed);
                    let (_, _, records) = progress.snapshot();
                    bar.set_position(records);
                    let now = event_time.load(Ordering::Relaxed);
                    if !quiet && (now >= next_line || finished) {
                        let line = evolution_line(now, records, &board, &models);
                        if bar.is_hidden() {
                            println!("{line}");
                        } else {
                            bar.println(line);
                        }
                        next_line = (now / every + 1) * every;
                    }
                    if finished {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                bar.finish_and_clear();
            })
        };
        Reporter {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `event time | records | conversions, revenue, cost, ROAS | each model's
/// top campaign by ROAS`. Totals are the same under every model (each
/// conversion's credits sum to its revenue); the models differ in who gets it.
fn evolution_line(now: Time, records: u64, board: &RoasBoard, models: &[Model]) -> String {
    let at = Millis::try_from(now).map_or_else(|_| "?".to_owned(), format_rfc3339);
    let mut line = format!("{at} {:>10} records", HumanCount(records).to_string());
    let Some(first) = models.first() else {
        return line;
    };
    let totals = board.totals(first);
    let roas = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    line.push_str(&format!(
        "  {:.0} conversions, revenue {}, cost {}, ROAS {}  | top:",
        totals.conversions,
        format_micros(totals.revenue_micros),
        format_micros(totals.cost_micros),
        roas(totals.roas())
    ));
    for model in models {
        if let Some(top) = board.top(model, 1).first() {
            line.push_str(&format!(
                " {} {:08x}… {:.1}",
                model.name(),
                top.campaign_id.get() >> 32,
                top.roas
            ));
        }
    }
    line
}
