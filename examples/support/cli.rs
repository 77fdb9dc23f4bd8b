//! What the CLI examples share: operator settings from flags and a TOML
//! file, the default adgen dataset, the progress bar and the run summary.
//! Included by each example with `#[path = "support/cli.rs"] mod cli;`.
#![allow(dead_code)] // each example uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adflow::dead_letter::Reason;
use adflow::event::EventKind;
use adflow::pipeline::{RunSummary, TimeConfig};
use adflow::sinks::SinkHandle;
use adflow::sources::{discover, InputFile, Progress};
use adflow::timestamp::{parse_duration, Millis};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir_with, GenerationSummary, GeneratorConfig, OutputOptions};
use adflow_operators::analytics::AnalyticsConfig;
use adflow_operators::attribution::Model;
use adflow_operators::fraud::FraudConfig;
use anyhow::{bail, Context};
use indicatif::{HumanCount, ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Operator settings: each from its flag, else the TOML file, else the default.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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
    /// These flags over the TOML file at `config`, if any.
    pub fn with_file(self, config: Option<&Path>) -> anyhow::Result<Settings> {
        let file = match config {
            Some(path) => toml::from_str(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?,
            None => Settings::default(),
        };
        Ok(self.or(file))
    }

    /// Flags first, then the file.
    pub fn or(self, file: Settings) -> Settings {
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

    pub fn analytics(&self, time: &TimeConfig) -> anyhow::Result<AnalyticsConfig> {
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

/// The files a run reads: `inputs` discovered, or, with none, a default
/// dataset of `events` adgen events (seed `seed`) generated into a
/// temporary directory that lives as long as the returned `Inputs`.
pub struct Inputs {
    /// The files to read.
    pub files: Vec<InputFile>,
    /// What adgen wrote, when it generated the input.
    pub generated: Option<GenerationSummary>,
    _dir: Option<tempfile::TempDir>,
}

impl Inputs {
    /// Discovers `inputs`, or generates the default dataset when empty.
    pub fn discover_or_generate(
        inputs: &[String],
        events: u64,
        seed: u64,
        quiet: bool,
    ) -> anyhow::Result<Inputs> {
        let (paths, generated, dir) = if inputs.is_empty() {
            let dir = tempfile::Builder::new().prefix("adflow-").tempdir()?;
            let summary = generate(events, seed, quiet, dir.path())?;
            let paths = vec![dir.path().to_string_lossy().into_owned()];
            (paths, Some(summary), Some(dir))
        } else {
            (inputs.to_vec(), None, None)
        };
        let files = discover(&paths)?;
        if files.is_empty() {
            bail!("no input files in {paths:?}");
        }
        Ok(Inputs {
            files,
            generated,
            _dir: dir,
        })
    }
}

/// A duration, or `none` (or `off`) for no bound.
pub fn optional_duration(text: &str) -> Result<Option<Millis>, adflow::timestamp::DurationError> {
    match text {
        "none" | "off" => Ok(None),
        _ => parse_duration(text).map(Some),
    }
}

/// A `--max-clock-skew` value: a duration, or `none` to check only that
/// times fall in 2000–2100.
pub fn clock_skew(text: &str) -> Result<Millis, adflow::timestamp::DurationError> {
    optional_duration(text).map(|skew| skew.unwrap_or(Millis::MAX))
}

/// Worker threads: `workers` if given, else one per core.
pub fn workers_or_cores(workers: Option<usize>) -> usize {
    workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Creates the output directory.
pub fn create_out_dir(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// Generates the default dataset, with a progress bar of its own.
pub fn generate(
    events: u64,
    seed: u64,
    quiet: bool,
    dir: &Path,
) -> anyhow::Result<GenerationSummary> {
    let config = GeneratorConfig {
        seed,
        events,
        ..GeneratorConfig::default()
    };
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(events)
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

/// A progress bar over input bytes (or records, when the pipeline knows no
/// byte total), refreshed from the pipeline's counters; `label` starts the line.
pub fn progress_bar(label: &str, quiet: bool, progress: &Arc<Progress>) -> Finisher {
    let (_, total, _) = progress.snapshot();
    let bar = if quiet {
        ProgressBar::hidden()
    } else if total == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    let template = if total == 0 {
        format!("{label:<8} {{spinner}} {{msg}} [{{elapsed_precise}}]")
    } else {
        format!("{label:<8} {{bar:40.green/blue}} {{bytes}}/{{total_bytes}} {{msg}} [{{elapsed_precise}}]")
    };
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
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

/// Stops a [`progress_bar`] when finished.
pub struct Finisher {
    bar: ProgressBar,
    done: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Finisher {
    /// Stops polling and clears the bar.
    pub fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        self.bar.finish_and_clear();
    }
}

/// The `top` operators by scheduled time. Scopes include their children.
pub fn print_profile(summary: &RunSummary, top: usize) {
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
        // Differential's own operators (`Join`, `FlatMap`, …) are told
        // apart by what feeds them.
        let fed_by = match op.name.contains(':') || op.inputs.is_empty() {
            true => String::new(),
            false => format!(" ← {}", op.inputs.join(", ")),
        };
        println!(
            "  {:>10.2?} {:>5.1}% {:>10}  {}{} {:?}{fed_by}",
            op.elapsed,
            share,
            op.schedulings,
            "  ".repeat(op.depth().saturating_sub(2)),
            op.name,
            op.address
        );
    }
}

/// What a run read, its dead letters and what each sink wrote; `program`
/// names the run (`backfill`, `replay`) and `source` what it read.
pub fn print_summary(
    program: &str,
    source: &str,
    summary: &RunSummary,
    sinks: &[SinkHandle],
    generated: Option<&GenerationSummary>,
) {
    println!();
    println!(
        "adflow {program}: {} records from {source} on {} workers in {:.2?} — {} records/s",
        HumanCount(summary.records()),
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
        let skewed = summary.dead_letters.get(Reason::TimestampOutOfRange);
        if skewed > 0 {
            println!(
                "  ({skewed} timestamps were outside 2000–2100, or further than --max-clock-skew \
                 from their source's first ones; --max-clock-skew none admits 2000–2100)"
            );
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
