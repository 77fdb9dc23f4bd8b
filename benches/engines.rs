//! adflow against the engines a user would pick instead, on the same
//! events, on the same machine, in the same run: DuckDB (SQL over the same
//! Parquet files) and Apache Flink (PyFlink Table API, batch mode,
//! parallelism 2, over the same events as CSV). Each engine's answer is
//! checked equal to adflow's before its time is reported.
//!
//! ```text
//! cargo bench --bench engines                                   # 10M events
//! ADFLOW_ENGINES_EVENTS=1000000 cargo bench --bench engines     # a quick look
//! ADFLOW_ENGINES=duckdb cargo bench --bench engines             # skip Flink
//! ADFLOW_PYTHON=/path/to/venv/bin/python cargo bench --bench engines
//! ```
//!
//! The compared work (see `docs/benchmarks.md`) is a defined subset of the
//! pipeline, without fraud rules:
//! - **dedup**: one copy per event id within 24 h, then one conversion per
//!   (identity, order id) within 24 h (`DedupExt`);
//! - **hourly metrics** of the kept impressions and clicks per (hour,
//!   campaign, ad, country, device): impressions, clicks, cost
//!   (`CampaignMetricsExt` with no fraud verdicts and no conversions);
//! - **last-touch attribution** of the kept conversions: the latest click of
//!   the same identity at or before the conversion within 30 days, else the
//!   latest impression within 1 day, else unattributed (`AttributionExt`
//!   with `Model::LastTouch` and no fraud verdicts).
//!
//! adflow composes exactly these operator families. Its timed region is
//! the pipeline from the Parquet files to every output gathered in memory;
//! the engines' is their query from the files to the results materialised
//! in memory (`benches/engines/*.py` print it; interpreter and JVM start-up
//! are excluded, and so is writing the results for the check). Then the
//! late measurement: adflow fed 99% of the events in memory finishes, and
//! the held-back 1% is applied as corrections; a batch engine's answer to
//! late events is to run the query again over all the files, so its batch
//! time is the recompute time.
//!
//! Python must have `duckdb` (and `apache-flink` for Flink) importable:
//! `ADFLOW_PYTHON` names the interpreter (default `python3`). An engine
//! that cannot run is reported as skipped, with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adflow::event::{Country, DeviceType, EventId, Id};
use adflow::pipeline::TimeConfig;
use adflow::sources::discover;
use adflow::write::FileFormat;
use adflow_datagen::GeneratorConfig;

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/subset.rs"]
mod subset;

use e2e::{
    bench_root, check, consolidate, dataset, dataset_with, env_list, env_or, late_run,
    pipeline_run, profiling, read_all, record, Answer, LateRun, SEED,
};
use subset::{subset, Row};

/// An engine's run: its own timing of the query, and its answer.
struct EngineRun {
    elapsed: Duration,
    answer: Answer<Row>,
}

/// Runs `script` (under `benches/engines/`) with `args` plus `--out DIR`,
/// reads the time it prints and the results it writes.
fn run_engine(python: &str, script: &str, args: &[&str], name: &str) -> anyhow::Result<EngineRun> {
    let out = bench_root().join(format!("engine-out-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/engines")
        .join(script);
    let started = Instant::now();
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()?;
    let wall = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seconds: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("elapsed_seconds="))
        .ok_or_else(|| anyhow::anyhow!("{name} printed no elapsed_seconds: {stdout}"))?
        .trim()
        .parse()?;
    println!("{name}: query {seconds:.2} s ({wall:.2?} with start-up and writing results)");
    Ok(EngineRun {
        elapsed: Duration::from_secs_f64(seconds),
        answer: read_answer(&out)?,
    })
}

/// An absent id is an empty cell.
fn id(text: &str) -> Option<Id> {
    Id::of(text)
}

/// Every `*.csv` directly in `dir`, or `dir` itself if it is a file (Flink
/// writes a directory of part files per sink).
fn csv_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| {
            file.is_file()
                && !file
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with(['.', '_']))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads an engine's `hourly.csv` and `last_touch.csv` (files, or
/// directories of part files; a header line, if any, is skipped; columns as
/// the scripts document).
fn read_answer(out: &Path) -> anyhow::Result<Answer<Row>> {
    let mut rows = Vec::new();
    let int = |text: &str| -> anyhow::Result<i64> { Ok(text.trim().parse()?) };
    for file in csv_files(&out.join("hourly.csv"))? {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&file)?;
        for record in reader.records() {
            let record = record?;
            if &record[0] == "bucket_ms" {
                continue;
            }
            rows.push(Row::Hour {
                bucket: int(&record[0])?,
                campaign: id(&record[1]),
                ad: id(&record[2]),
                country: Country::parse(&record[3]).unwrap_or(Country::UNKNOWN),
                device: DeviceType::parse(&record[4]),
                impressions: int(&record[5])?,
                clicks: int(&record[6])?,
                cost_micros: int(&record[7])?,
            });
        }
    }
    for file in csv_files(&out.join("last_touch.csv"))? {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&file)?;
        for record in reader.records() {
            let record = record?;
            if &record[0] == "event_id" {
                continue;
            }
            rows.push(Row::LastTouch {
                conversion: EventId::of(&record[0]),
                campaign: id(&record[1]),
                ad: id(&record[2]),
                revenue_micros: int(&record[3])?,
            });
        }
    }
    Ok(consolidate(rows.into_iter().map(|row| (row, 1))))
}

/// The rows of each kind in an answer.
fn shape(answer: &Answer<Row>) -> (usize, usize) {
    let hours = answer
        .keys()
        .filter(|row| matches!(row, Row::Hour { .. }))
        .count();
    (hours, answer.len() - hours)
}

fn main() -> anyhow::Result<()> {
    let events: u64 = env_or("ADFLOW_ENGINES_EVENTS", 10_000_000);
    let late_percent: f64 = env_or("ADFLOW_ENGINES_LATE_PERCENT", 1.0);
    let python = std::env::var("ADFLOW_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let engines = std::env::var("ADFLOW_ENGINES").unwrap_or_else(|_| "duckdb,flink".to_owned());
    let workers: Vec<usize> = env_list("ADFLOW_ENGINES_WORKERS", "1,2");

    let dir = dataset(events)?;
    let inputs = discover(&[dir.to_string_lossy()])?;
    let mut table: Vec<(String, Duration)> = Vec::new();
    // The chart's labels: `|` breaks a line.
    let mut figures: Vec<(String, f64)> = Vec::new();

    // adflow: the pipeline from the files, on each worker count; the first
    // answer is the one every other run must equal.
    let mut expected: Option<Answer<Row>> = None;
    for &workers in &workers {
        let (elapsed, answer) = pipeline_run(&inputs, workers, TimeConfig::backfill(), subset)?;
        let name = format!("adflow, {workers} workers");
        match &expected {
            Some(expected) => check(&name, &answer, expected, "first adflow run"),
            None => {
                let (hours, conversions) = shape(&answer);
                println!("{name}: {hours} hourly rows, {conversions} conversions");
                expected = Some(answer);
            }
        }
        figures.push((
            format!("adflow | {workers} worker(s)"),
            elapsed.as_secs_f64(),
        ));
        table.push((name, elapsed));
    }
    let expected = expected.ok_or_else(|| anyhow::anyhow!("no worker count given"))?;

    // Late events: 99% in memory to completion, then 1% as corrections.
    // Measured before the other engines run, so that what they leave
    // behind (a JVM's gigabytes being given back) does not land in it.
    let all = Arc::new(read_all(&inputs));
    let late_workers = workers.iter().copied().max().unwrap_or(2);
    let LateRun {
        initial,
        compacted,
        late,
        answer,
    } = late_run(&all, late_workers, late_percent, profiling(), subset);
    check(
        &format!("late {late_percent}%, {late_workers} workers"),
        &answer,
        &expected,
        "adflow batch answer",
    );
    println!(
        "late {late_percent}%: first {initial:.2?} for the on-time events, {compacted:.2?} idle merging, then {late:.3?}"
    );
    drop(all);

    let dir_text = dir.to_string_lossy().into_owned();
    let mut skipped = Vec::new();
    if engines.contains("duckdb") {
        match run_engine(
            &python,
            "duckdb_subset.py",
            &["--input", &dir_text, "--threads", "2"],
            "duckdb",
        ) {
            Ok(run) => {
                check("DuckDB, 2 threads", &run.answer, &expected, "adflow answer");
                figures.push(("DuckDB | 2 threads".to_owned(), run.elapsed.as_secs_f64()));
                table.push(("DuckDB, 2 threads".to_owned(), run.elapsed));
            }
            Err(error) => skipped.push(format!("DuckDB: {error}")),
        }
    }
    if engines.contains("flink") {
        let config = GeneratorConfig {
            seed: SEED,
            events,
            ..GeneratorConfig::default()
        };
        let csv_dir = dataset_with(&format!("backfill-{events}-csv"), config, FileFormat::Csv)?;
        let csv_text = csv_dir.to_string_lossy().into_owned();
        match run_engine(
            &python,
            "flink_subset.py",
            &["--input", &csv_text, "--parallelism", "2"],
            "flink",
        ) {
            Ok(run) => {
                check(
                    "Flink, parallelism 2",
                    &run.answer,
                    &expected,
                    "adflow answer",
                );
                figures.push((
                    "Flink | parallelism 2".to_owned(),
                    run.elapsed.as_secs_f64(),
                ));
                table.push(("Flink batch, parallelism 2".to_owned(), run.elapsed));
            }
            Err(error) => skipped.push(format!("Flink: {error}")),
        }
    }

    figures.push((
        format!("late {late_percent}% | adflow {late_workers}w"),
        late.as_secs_f64(),
    ));
    table.push((
        format!(
            "adflow: apply {late_percent}% late events to a finished run, {late_workers} workers"
        ),
        late,
    ));

    let adflow_best = table
        .iter()
        .filter(|(name, _)| name.starts_with("adflow, "))
        .map(|(_, time)| *time)
        .min()
        .unwrap_or(Duration::MAX);
    println!();
    println!("| run | wall time | events/s | time ÷ fastest adflow time | late update is … faster than this |");
    println!("|---|---|---|---|---|");
    for (name, elapsed) in &table {
        let rate = events as f64 / elapsed.as_secs_f64() / 1e6;
        let is_late = name.contains("late");
        let versus = if is_late {
            String::new()
        } else {
            format!("{:.2}×", elapsed.as_secs_f64() / adflow_best.as_secs_f64())
        };
        let late_ratio = if is_late {
            String::new()
        } else {
            format!("{:.0}×", elapsed.as_secs_f64() / late.as_secs_f64())
        };
        let rate = if is_late {
            String::new()
        } else {
            format!("{rate:.2} M")
        };
        println!("| {name} | {elapsed:.2?} | {rate} | {versus} | {late_ratio} |");
    }
    for reason in &skipped {
        println!("skipped: {reason}");
    }
    record("engines", &figures)
}
