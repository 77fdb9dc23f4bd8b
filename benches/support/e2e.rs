//! What the end-to-end benches share: the cached adgen datasets, reading
//! them into memory, running a dataflow over them (from the files, or fed
//! 99% in memory and then the late 1%), gathering and checking answers, and
//! a child process's peak memory.
//!
//! `ADFLOW_BENCH_PROFILE=1` ([`profiling`]) prints the 30 operators that
//! took the most time in each pipeline run from the files, and a bench may
//! pass it on to [`late_run`] for the operators of the late phase.
//!
//! Included by each bench with `#[path = "support/e2e.rs"] mod e2e;` (a file
//! under a subdirectory is not a bench target of its own). Not every bench
//! uses every item, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adflow::compaction;
use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Admission, EventClock, Pipeline, Time, TimeConfig};
use adflow::profile::{since, WorkerProfile};
use adflow::sources::{InputFile, Progress, UnitReader, WorkPlan};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use differential_dataflow::collection::VecCollection;
use differential_dataflow::input::Input;
use differential_dataflow::Data;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
pub const SEED: u64 = 7;

/// A consolidated answer: every output row with its multiplicity.
pub type Answer<R> = HashMap<R, isize>;

/// An environment variable parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated environment variable (such as `1,2` or
/// `1000000,10000000`) parsed item by item, or `default` parsed the same way.
pub fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|text| text.trim().parse().ok())
        .collect()
}

/// `target/adflow-bench/`, where generated datasets are cached.
pub fn bench_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/adflow-bench")
}

/// The default adgen traffic (a week, seed 7) of `events` rows as Parquet,
/// generated once into `target/adflow-bench/backfill-<events>/`.
pub fn dataset(events: u64) -> anyhow::Result<PathBuf> {
    dataset_with(
        &format!("backfill-{events}"),
        GeneratorConfig {
            seed: SEED,
            events,
            ..GeneratorConfig::default()
        },
        FileFormat::Parquet,
    )
}

/// adgen rows of `config` in `format`, generated once into
/// `target/adflow-bench/<name>/` and reused by later runs.
pub fn dataset_with(
    name: &str,
    config: GeneratorConfig,
    format: FileFormat,
) -> anyhow::Result<PathBuf> {
    let dir = bench_root().join(name);
    if !dir.join(adflow_datagen::MANIFEST_FILE).exists() {
        let started = Instant::now();
        let events = config.events;
        generate_to_dir(config, &dir, format)?;
        println!(
            "generated {events} events into {} in {:.2?}",
            dir.display(),
            started.elapsed()
        );
    }
    Ok(dir)
}

/// Every valid event of the files, read on this thread in plan order.
pub fn read_all(inputs: &[InputFile]) -> Vec<Event> {
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

/// Sums the multiplicities of equal rows and drops the rows that cancel.
pub fn consolidate<R: Hash + Eq>(updates: impl IntoIterator<Item = (R, isize)>) -> Answer<R> {
    let mut answer = Answer::new();
    for (row, diff) in updates {
        *answer.entry(row).or_insert(0) += diff;
    }
    answer.retain(|_, diff| *diff != 0);
    answer
}

/// Panics, with the first differences, unless `answer` is `expected`
/// (`baseline` names where `expected` came from).
pub fn check<R: Hash + Eq + Ord + Debug>(
    run: &str,
    answer: &Answer<R>,
    expected: &Answer<R>,
    baseline: &str,
) {
    if answer == expected {
        println!(
            "{run}: answer equals the {baseline} ({} rows)",
            answer.len()
        );
        return;
    }
    let mut differences: BTreeMap<&R, (Option<&isize>, Option<&isize>)> = BTreeMap::new();
    for row in answer.keys().chain(expected.keys()) {
        if answer.get(row) != expected.get(row) {
            differences.insert(row, (answer.get(row), expected.get(row)));
        }
    }
    for (row, (got, want)) in differences.iter().take(10) {
        eprintln!("  {run} {got:?}, {baseline} {want:?}: {row:?}");
    }
    panic!(
        "{run}: {} rows differ from the {baseline}",
        differences.len()
    );
}

/// A worker's output updates, gathered as the file sinks gather a
/// snapshot: appended, and consolidated by sorting whenever the
/// unconsolidated tail outgrows the consolidated part.
pub struct Collected<R> {
    updates: Vec<(R, isize)>,
    consolidated: usize,
}

impl<R> Default for Collected<R> {
    fn default() -> Self {
        Collected {
            updates: Vec::new(),
            consolidated: 0,
        }
    }
}

impl<R: Ord + Clone> Collected<R> {
    fn absorb(&mut self, row: &R, diff: isize) {
        self.updates.push((row.clone(), diff));
        if self.updates.len() >= 2 * self.consolidated.max(4096) {
            differential_dataflow::consolidation::consolidate(&mut self.updates);
            self.consolidated = self.updates.len();
        }
    }
}

/// One worker's [`Collected`] outputs, shared with the thread that reads them.
pub type Shared<R> = Arc<Mutex<Collected<R>>>;

/// Takes the updates gathered so far.
pub fn take<R>(shared: &Shared<R>) -> Vec<(R, isize)> {
    std::mem::take(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).updates)
}

/// Accumulates a worker's share of the outputs, as a sink would.
pub fn accumulate<'scope, R: Data + Ord>(
    rows: VecCollection<'scope, Time, R>,
    collected: Shared<R>,
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

/// Runs the dataflow `build` makes of the events of `inputs`, read by a
/// [`Pipeline`] on `workers` threads with its clock set by `time`
/// ([`TimeConfig::backfill`], or one with a horizon for a bounded run);
/// returns the wall time from the files to every output gathered, and the
/// consolidated answer. Prints how many records were dead-lettered, if any.
pub fn pipeline_run<R, F>(
    inputs: &[InputFile],
    workers: usize,
    time: TimeConfig,
    build: F,
) -> anyhow::Result<(Duration, Answer<R>)>
where
    R: Data + Ord + Hash + Send,
    F: for<'s> Fn(VecCollection<'s, Time, Event>) -> VecCollection<'s, Time, R>
        + Send
        + Sync
        + 'static,
{
    let answers: Arc<Mutex<Vec<Shared<R>>>> = Arc::default();
    let collect = Arc::clone(&answers);
    let started = Instant::now();
    let profile = profiling();
    let summary = Pipeline::new(inputs.to_vec())
        .workers(workers)
        .time(time)
        .profile(profile)
        .run(move |_scope, streams| {
            let answer = Shared::default();
            collect
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&answer));
            accumulate(build(streams.events), answer, &streams.probe);
        })?;
    let elapsed = started.elapsed();
    println!(
        "dataflow, {workers} workers: {} events in {elapsed:.2?}",
        summary.events.total()
    );
    if summary.dead_letters.total() > 0 {
        println!(
            "dead letters: {} ({} late)",
            summary.dead_letters.total(),
            summary.dead_letters.get(adflow::dead_letter::Reason::Late)
        );
    }
    // The operators that took the most time (with ADFLOW_BENCH_PROFILE set).
    for op in summary.operators.iter().take(30) {
        println!(
            "  {:>10.2?} {:>9}  {}{} {:?}",
            op.elapsed,
            op.schedulings,
            "  ".repeat(op.depth().saturating_sub(2)),
            op.name,
            op.address
        );
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let answer = consolidate(answers.iter().flat_map(take));
    Ok((elapsed, answer))
}

/// Whether `ADFLOW_BENCH_PROFILE` asks for operator profiles.
pub fn profiling() -> bool {
    std::env::var_os("ADFLOW_BENCH_PROFILE").is_some()
}

/// Whether event `index` is held back: a seeded hash, so the sample is the
/// same for every worker count and spread over the whole history.
pub fn held_back(index: usize, percent: f64) -> bool {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&index.to_le_bytes(), SEED);
    ((hash % 10_000) as f64) < percent * 100.0
}

/// The times and answer of [`late_run`].
pub struct LateRun<R> {
    /// Feeding the on-time events until every output caught up.
    pub initial: Duration,
    /// Then, idle, until every arrangement was merged into one batch.
    pub compacted: Duration,
    /// From the first late insert until every output caught up again.
    pub late: Duration,
    /// The final answer, over every event.
    pub answer: Answer<R>,
}

/// Runs the dataflow `build` makes over the events not [`held_back`]
/// (`percent` of them are), in memory on `workers` threads through the
/// pipeline's clock, to completion without closing the input; then applies
/// the held-back rest behind the frontier, as corrections. With `profile`
/// each worker prints the operators that took the most time in the late
/// phase.
pub fn late_run<R, F>(
    events: &Arc<Vec<Event>>,
    workers: usize,
    percent: f64,
    profile: bool,
    build: F,
) -> LateRun<R>
where
    R: Data + Ord + Hash + Send,
    F: for<'s> Fn(VecCollection<'s, Time, Event>) -> VecCollection<'s, Time, R>
        + Send
        + Sync
        + 'static,
{
    let time = TimeConfig::backfill();
    // One tick past the last event time: where the on-time events end.
    let end: Time = events
        .iter()
        .map(|event| time.stamp(event.ts))
        .max()
        .unwrap_or(0)
        + 1;
    let events = Arc::clone(events);
    // A finished run merges its arrangements while it waits, as a running
    // pipeline does (`adflow::compaction`); the late events find them
    // compact rather than paying for merges the quiet period left undone.
    let mut config = timely::Config::process(workers);
    compaction::install(&mut config.worker, compaction::IDLE_MERGE_EFFORT);
    // The late phase starts when every worker has settled: one still
    // merging would hold the others' late events up.
    let settled_all = Arc::new(std::sync::Barrier::new(workers));
    let guards = timely::execute(config, move |worker| {
        let recording = profile.then(|| WorkerProfile::install(worker));
        let answer = Shared::default();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&answer);
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Event, isize>();
            accumulate(build(events), sink, &probe);
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
        // Idle: the frontier moving on one tick schedules every operator,
        // and the arrangements merge until each is one batch.
        let started = Instant::now();
        let late_at = end + 1;
        input.advance_to(late_at);
        input.flush();
        let settled = compaction::settle(worker, Duration::from_secs(60), || {
            !probe.less_than(&late_at)
        });
        settled_all.wait();
        let compacted = started.elapsed();

        let before = recording
            .as_ref()
            .map(|recording| recording.snapshot(worker))
            .unwrap_or_default();
        let started = Instant::now();
        for (_, event) in &late {
            input.update_at(**event, late_at, 1);
        }
        input.advance_to(late_at + 1);
        input.flush();
        worker.step_while(|| probe.less_than(&(late_at + 1)));
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
        (initial, compacted, settled.is_some(), late_elapsed, answer)
    })
    .unwrap_or_else(|error| panic!("timely: {error}"));
    let mut initial = Duration::ZERO;
    let mut compacted = Duration::ZERO;
    let mut late = Duration::ZERO;
    let mut parts = Vec::new();
    for result in guards.join() {
        let (first, merging, settled, second, answer) =
            result.unwrap_or_else(|error| panic!("worker: {error}"));
        assert!(settled, "arrangements still merging after {merging:?}");
        initial = initial.max(first);
        compacted = compacted.max(merging);
        late = late.max(second);
        parts.push(answer);
    }
    LateRun {
        initial,
        compacted,
        late,
        answer: consolidate(parts.into_iter().flatten()),
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Saves a bench's headline figures as `label<TAB>value` lines in
/// `target/adflow-bench/results/<bench>.tsv`, which `benches/chart.rs`
/// draws into `docs/benchmarks.png`.
pub fn record(bench: &str, figures: &[(String, f64)]) -> anyhow::Result<()> {
    let dir = bench_root().join("results");
    std::fs::create_dir_all(&dir)?;
    let text: String = figures
        .iter()
        .map(|(label, value)| format!("{label}\t{value}\n"))
        .collect();
    std::fs::write(dir.join(format!("{bench}.tsv")), text)?;
    Ok(())
}
