//! End-to-end backfill benchmark: the whole pipeline (dedup, fraud,
//! attribution under five models, metrics with rollups) over adgen events
//! from Parquet, against the sequential reference on the same data in the
//! same run; then 1% of the events held back and applied to a finished run.
//!
//! ```text
//! cargo bench --bench backfill                                  # 10M events, 1 and 2 workers
//! ADFLOW_E2E_EVENTS=1000000 cargo bench --bench backfill        # a quick look
//! ADFLOW_E2E_WORKERS=2 ADFLOW_E2E_LATE_PERCENT=1 cargo bench --bench backfill
//! ```
//!
//! Untimed: generating the events once (seed 7) into
//! `target/adflow-bench/backfill-<events>/` (reused by later runs), and
//! checking every answer against the reference after its time is taken.
//!
//! Timed, each from the Parquet files to a consolidated answer in memory:
//! - `reference`: read every file on one thread, then
//!   `reference::analytics::analyze` (plain sorts and loops, no dataflow);
//! - `dataflow, W workers`: [`Pipeline`] with `analyze`, every output
//!   accumulated per worker as the sinks do;
//! - `late 1%`: a dataflow fed 99% of the events (in memory, on W workers,
//!   through the pipeline's clock) runs to completion; then the held-back
//!   1%, a seeded random sample from the whole history, arrives behind the
//!   frontier and is applied as corrections. Its time, from the first late
//!   insert until every output has caught up, is compared with re-running
//!   the whole backfill (the `dataflow, W workers` time). The final answer
//!   must again equal the reference on all events.
//!
//! With `ADFLOW_E2E_PROFILE=1` each worker prints the operators that took
//! the most time in the late phase.
//!
//! Throughput is input events per second of wall time. Results print as a
//! Markdown table for `docs/benchmarks.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Admission, EventClock, Pipeline, Time, TimeConfig};
use adflow::profile::{since, WorkerProfile};
use adflow::sources::{discover, InputFile, Progress, UnitReader, WorkPlan};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::fraud::FraudConfig;
use adflow_operators::reference::analytics::{analyze, AnalyticsRow};
use adflow_operators::testing::analytics_rows;
use differential_dataflow::collection::VecCollection;
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;

type Answer = HashMap<AnalyticsRow, isize>;

/// A worker's output updates, gathered as the file sinks gather a
/// snapshot: appended, and consolidated by sorting whenever the
/// unconsolidated tail outgrows the consolidated part.
#[derive(Default)]
struct Collected {
    updates: Vec<(AnalyticsRow, isize)>,
    consolidated: usize,
}

impl Collected {
    fn absorb(&mut self, row: &AnalyticsRow, diff: isize) {
        self.updates.push((row.clone(), diff));
        if self.updates.len() >= 2 * self.consolidated.max(4096) {
            differential_dataflow::consolidation::consolidate(&mut self.updates);
            self.consolidated = self.updates.len();
        }
    }
}

type Shared = Arc<Mutex<Collected>>;

fn take(shared: &Shared) -> Vec<(AnalyticsRow, isize)> {
    std::mem::take(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).updates)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let events: u64 = env_or("ADFLOW_E2E_EVENTS", 10_000_000);
    let late_percent: f64 = env_or("ADFLOW_E2E_LATE_PERCENT", 1.0);
    let workers: Vec<usize> = std::env::var("ADFLOW_E2E_WORKERS")
        .unwrap_or_else(|_| "1,2".to_owned())
        .split(',')
        .filter_map(|text| text.trim().parse().ok())
        .collect();

    let dir = dataset(events)?;
    let inputs = discover(&[dir.to_string_lossy()])?;
    let config = analytics_config()?;
    let mut table = Vec::new();

    let started = Instant::now();
    // Shared, not copied, with the workers of the late run.
    let all = Arc::new(read_all(&inputs));
    let expected = consolidate(analyze(&all, &config).into_iter().map(|row| (row, 1)));
    let reference = started.elapsed();
    println!(
        "reference: {} events, {} output rows in {reference:.2?}",
        all.len(),
        expected.len()
    );
    table.push(("reference (sequential)".to_owned(), reference, None));

    for &workers in &workers {
        let (elapsed, answer) = pipeline_run(&inputs, workers, &config)?;
        check(&format!("dataflow, {workers} workers"), &answer, &expected);
        table.push((
            format!("dataflow, {workers} workers"),
            elapsed,
            Some(reference),
        ));

        let (initial, late, answer) = late_run(&all, workers, late_percent, &config);
        check(
            &format!("late {late_percent}%, {workers} workers"),
            &answer,
            &expected,
        );
        println!(
            "late {late_percent}% on {workers} workers: first {:.2?} in memory, then the late events in {late:.2?}: {:.0}× faster than re-running the backfill ({elapsed:.2?})",
            initial,
            elapsed.as_secs_f64() / late.as_secs_f64()
        );
        table.push((
            format!("apply {late_percent}% late events to a finished run, {workers} workers"),
            late,
            None,
        ));
    }

    println!();
    println!("| run | wall time | events/s | vs reference |");
    println!("|---|---|---|---|");
    for (name, elapsed, baseline) in table {
        let rate = all.len() as f64 / elapsed.as_secs_f64();
        let ratio = baseline
            .map(|baseline| format!("{:.2}×", baseline.as_secs_f64() / elapsed.as_secs_f64()))
            .unwrap_or_default();
        println!("| {name} | {elapsed:.2?} | {:.3} M | {ratio} |", rate / 1e6);
    }
    Ok(())
}

/// The benchmark's events, generated once per size.
fn dataset(events: u64) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/adflow-bench");
    let dir = root.join(format!("backfill-{events}"));
    if !dir.join(adflow_datagen::MANIFEST_FILE).exists() {
        let started = Instant::now();
        let config = GeneratorConfig {
            seed: SEED,
            events,
            ..GeneratorConfig::default()
        };
        generate_to_dir(config, &dir, FileFormat::Parquet)?;
        println!(
            "generated {events} events into {} in {:.2?}",
            dir.display(),
            started.elapsed()
        );
    }
    Ok(dir)
}

/// The backfill example's defaults: the shipped datacenter ranges, every
/// model, backfill time (no horizon).
fn analytics_config() -> anyhow::Result<AnalyticsConfig> {
    let mut config = AnalyticsConfig::default().with_horizon_of(&TimeConfig::backfill());
    config.fraud.datacenter_cidrs = FraudConfig::load_datacenter_cidrs(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/fixtures/datacenter_cidrs.txt"),
    )?;
    Ok(config)
}

/// Every valid event of the files, read on this thread in plan order.
fn read_all(inputs: &[InputFile]) -> Vec<Event> {
    let plan = WorkPlan::new(inputs.to_vec());
    let progress = Arc::new(Progress::default());
    let mut events = Vec::new();
    let mut batch = Vec::new();
    for (unit, weight) in plan.assignment(0, 1) {
        let mut reader = UnitReader::open(
            &plan,
            unit,
            weight,
            EventValidator::default(),
            Arc::clone(&progress),
        );
        loop {
            let more = reader.read_batch(&mut batch, 4096);
            events.extend(batch.drain(..).filter_map(Result::ok));
            if !more {
                break;
            }
        }
    }
    events
}

fn consolidate(updates: impl IntoIterator<Item = (AnalyticsRow, isize)>) -> Answer {
    let mut answer = Answer::new();
    for (row, diff) in updates {
        *answer.entry(row).or_insert(0) += diff;
    }
    answer.retain(|_, diff| *diff != 0);
    answer
}

/// Panics, with the first differences, unless `answer` is `expected`.
fn check(run: &str, answer: &Answer, expected: &Answer) {
    if answer == expected {
        println!("{run}: answer equals the reference ({} rows)", answer.len());
        return;
    }
    let mut differences: BTreeMap<&AnalyticsRow, (Option<&isize>, Option<&isize>)> =
        BTreeMap::new();
    for row in answer.keys().chain(expected.keys()) {
        if answer.get(row) != expected.get(row) {
            differences.insert(row, (answer.get(row), expected.get(row)));
        }
    }
    for (row, (got, want)) in differences.iter().take(10) {
        eprintln!("  dataflow {got:?}, reference {want:?}: {row:?}");
    }
    panic!(
        "{run}: {} rows differ from the reference",
        differences.len()
    );
}

/// Accumulates a worker's share of the outputs, as a sink would.
fn accumulate<'scope>(
    rows: VecCollection<'scope, Time, AnalyticsRow>,
    collected: Shared,
    probe: &ProbeHandle<Time>,
) {
    rows.inspect_batch(move |_time, updates| {
        let mut collected = collected.lock().unwrap_or_else(|e| e.into_inner());
        for (row, _time, diff) in updates {
            collected.absorb(row, *diff);
        }
    })
    .probe_with(probe);
}

/// The pipeline from the files on `workers` threads.
fn pipeline_run(
    inputs: &[InputFile],
    workers: usize,
    config: &AnalyticsConfig,
) -> anyhow::Result<(Duration, Answer)> {
    let answers: Arc<Mutex<Vec<Shared>>> = Arc::default();
    let collect = Arc::clone(&answers);
    let config = config.clone();
    let started = Instant::now();
    let summary = Pipeline::new(inputs.to_vec())
        .workers(workers)
        .run(move |_scope, streams| {
            let answer = Shared::default();
            collect
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&answer));
            accumulate(
                analytics_rows(streams.events.analyze(&config)),
                answer,
                &streams.probe,
            );
        })?;
    let elapsed = started.elapsed();
    println!(
        "dataflow, {workers} workers: {} events in {elapsed:.2?}",
        summary.events.total()
    );
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let answer = consolidate(answers.iter().flat_map(take));
    Ok((elapsed, answer))
}

/// Whether event `index` is held back: a seeded hash, so the sample is the
/// same for every worker count and spread over the whole history.
fn held_back(index: usize, percent: f64) -> bool {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&index.to_le_bytes(), SEED);
    ((hash % 10_000) as f64) < percent * 100.0
}

/// Runs 99% of `events` to completion, then applies the held-back rest.
/// Returns the time of the first part, of the late part, and the answer.
fn late_run(
    events: &Arc<Vec<Event>>,
    workers: usize,
    percent: f64,
    config: &AnalyticsConfig,
) -> (Duration, Duration, Answer) {
    let time = TimeConfig::backfill();
    // One tick past the last event time: where the late events arrive.
    let end: Time = events
        .iter()
        .map(|event| time.stamp(event.ts))
        .max()
        .unwrap_or(0)
        + 1;
    let events = Arc::clone(events);
    let config = config.clone();
    let profile = std::env::var_os("ADFLOW_E2E_PROFILE").is_some();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let recording = profile.then(|| WorkerProfile::install(worker));
        let answer = Shared::default();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&answer);
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Event, isize>();
            accumulate(analytics_rows(events.analyze(&config)), sink, &probe);
            input
        });
        let (index, peers) = (worker.index(), worker.peers());
        let mine = events.iter().enumerate().skip(index).step_by(peers);
        let (late, on_time): (Vec<_>, Vec<_>) =
            mine.partition(|(position, _)| held_back(*position, percent));

        let started = Instant::now();
        let mut clock = EventClock::new(time);
        for chunk in on_time.chunks(4096) {
            for (_, event) in chunk {
                match clock.admit(event.ts) {
                    Admission::OnTime(at) | Admission::Correction(at) => {
                        input.update_at(**event, at, 1)
                    }
                    // Backfill time has no horizon; the answer check would catch a loss.
                    Admission::Late => {}
                }
            }
            if let Some(watermark) = clock.advance() {
                input.advance_to(watermark);
                input.flush();
            }
            worker.step();
        }
        // Finish the run without closing the input: every worker moves past
        // all event time and waits until every output has caught up.
        input.advance_to(end);
        input.flush();
        worker.step_while(|| probe.less_than(&end));
        let initial = started.elapsed();

        let before = recording
            .as_ref()
            .map(|recording| recording.snapshot(worker))
            .unwrap_or_default();
        let started = Instant::now();
        for (_, event) in &late {
            input.update_at(**event, end, 1);
        }
        input.advance_to(end + 1);
        input.flush();
        worker.step_while(|| probe.less_than(&(end + 1)));
        let late_elapsed = started.elapsed();
        if let Some(recording) = &recording {
            let mut late_ops = since(&before, recording.snapshot(worker));
            late_ops.sort_by_key(|op| std::cmp::Reverse(op.elapsed));
            for op in late_ops.iter().take(15) {
                println!(
                    "  worker {index} late phase: {:>10.2?} {} {:?}",
                    op.elapsed, op.name, op.address
                );
            }
        }

        drop(input);
        while worker.step_or_park(None) {}
        let answer = take(&answer);
        (initial, late_elapsed, answer)
    })
    .unwrap_or_else(|error| panic!("timely: {error}"));
    let mut initial = Duration::ZERO;
    let mut late = Duration::ZERO;
    let mut parts = Vec::new();
    for result in guards.join() {
        let (first, second, answer) = result.unwrap_or_else(|error| panic!("worker: {error}"));
        initial = initial.max(first);
        late = late.max(second);
        parts.push(answer);
    }
    (initial, late, consolidate(parts.into_iter().flatten()))
}
