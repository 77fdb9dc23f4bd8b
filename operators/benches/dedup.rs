//! Dedup throughput: `DedupExt::dedup_by_event_id` over adgen traffic (its
//! default anomaly rates: duplicate resends, out-of-order and late rows),
//! against two baselines in the same run: the sequential reference
//! (`reference::dedup::dedup`) on the same events, and `feed-only`, the
//! same replay into a dataflow with no operator (the cost of feeding).
//!
//! ```text
//! cargo bench -p adflow-operators --bench dedup                # full run (200K events)
//! cargo bench -p adflow-operators --bench dedup -- --quick     # a quick estimate
//! DEDUP_BENCH_EVENTS=1000000 cargo bench -p adflow-operators --bench dedup -- --quick
//! ```
//!
//! The events are generated and validated once (`EventValidator::validate_record`,
//! the one `EventRecord` → `Event` conversion), then split over the workers
//! and admitted through `EventClock` as the pipeline does (batches of 4096,
//! watermark after each), which gives each worker a replay plan. Timing
//! covers building the dataflow and replaying the plans, not generation.
//! Two time configurations: `backfill` (hourly ticks, no horizon: state
//! holds everything) and `stream` (one-second ticks, ten seconds of
//! lateness, a one-day horizon: state is forgotten after window + horizon).
//! Before timing, every variant's output is checked equal to the reference
//! on the admitted events. Results are reported as events per second.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Time, TimeConfig};
use adflow_datagen::{GeneratedEvent, Generator, GeneratorConfig};
use adflow_operators::dedup::{DedupConfig, DedupExt, Duplicate};
use adflow_operators::reference::dedup::dedup;
use adflow_operators::testing::{replay, replay_plans, Step};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;

fn event_count() -> u64 {
    std::env::var("DEDUP_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200_000)
}

/// adgen's default traffic, validated into events, in arrival order.
fn events(count: u64) -> Vec<Event> {
    let mut generator = Generator::new(GeneratorConfig {
        seed: SEED,
        events: count,
        ..GeneratorConfig::default()
    });
    let mut validator = EventValidator::default();
    let mut generated = GeneratedEvent::default();
    let mut events = Vec::new();
    while generator.next_into(&mut generated) {
        // adgen writes only valid rows; a rejection would be a bug there.
        match validator.validate_record(&generated.record) {
            Ok(event) => events.push(event),
            Err(rejection) => panic!("adgen row rejected: {rejection:?}"),
        }
    }
    events
}

type Collected = Arc<Mutex<(BTreeMap<Event, isize>, BTreeMap<Duplicate, isize>)>>;

/// Replays the plans through dedup on `plans.len()` workers; collects the
/// final outputs if asked to.
fn run_dataflow(
    plans: &Arc<Vec<Vec<Step>>>,
    config: Option<DedupConfig>,
    collect: Option<Collected>,
) {
    let plans = Arc::clone(plans);
    let workers = plans.len();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let collect = collect.clone();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Event, isize>();
            let Some(config) = config else {
                // The baseline: feeding the events, no operator.
                events.probe_with(&probe);
                return input;
            };
            let deduplicated = events.dedup_by_event_id(&config);
            let (mut unique, mut duplicates) = (deduplicated.unique, deduplicated.duplicates);
            if let Some(collected) = collect {
                let sink = Arc::clone(&collected);
                unique = unique.inspect(move |(event, _, diff)| {
                    *sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                        .entry(*event)
                        .or_insert(0) += diff;
                });
                duplicates = duplicates.inspect(move |(duplicate, _, diff)| {
                    *collected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .1
                        .entry(*duplicate)
                        .or_insert(0) += diff;
                });
            }
            unique.probe_with(&probe);
            duplicates.probe_with(&probe);
            input
        });
        replay(worker, &mut input, &probe, &plans[worker.index()]);
        drop(input);
        while worker.step_or_park(None) {}
    })
    .and_then(|guards| {
        guards
            .join()
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
    })
    .unwrap_or_else(|error| panic!("dataflow failed: {error}"));
}

fn multiset<T: Ord + Copy>(items: &[T]) -> BTreeMap<T, isize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(*item).or_insert(0) += 1;
    }
    counts
}

fn bench_dedup(c: &mut Criterion) {
    let count = event_count();
    let events = events(count);
    let variants = [
        ("backfill", TimeConfig::backfill()),
        ("stream", TimeConfig::stream()),
    ];

    // Check before timing: every variant equals the reference on what it admitted.
    let mut prepared = Vec::new();
    for (label, time) in variants {
        let config = DedupConfig::for_time(&time);
        for workers in [1, 2] {
            let (plans, admitted) = replay_plans(&events, workers, time);
            let plans = Arc::new(plans);
            let collected: Collected = Arc::default();
            run_dataflow(&plans, Some(config), Some(Arc::clone(&collected)));
            let (mut unique, mut duplicates) =
                std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
            unique.retain(|_, diff| *diff != 0);
            duplicates.retain(|_, diff| *diff != 0);
            let (want_unique, want_duplicates) = dedup(&admitted, &config);
            assert_eq!(
                unique,
                multiset(&want_unique),
                "{label} {workers}w: unique differs"
            );
            assert_eq!(
                duplicates,
                multiset(&want_duplicates),
                "{label} {workers}w: duplicates differ"
            );
            assert!(!want_duplicates.is_empty(), "adgen traffic has resends");
            eprintln!(
                "{label} {workers}w: {} admitted of {}, {} unique, {} duplicates",
                admitted.len(),
                events.len(),
                want_unique.len(),
                want_duplicates.len()
            );
            prepared.push((label, config, workers, plans, admitted.len()));
        }
    }

    let mut group = c.benchmark_group("dedup");
    group.sample_size(10);
    for (label, config, workers, plans, admitted) in &prepared {
        group.throughput(Throughput::Elements(
            u64::try_from(*admitted).unwrap_or(u64::MAX),
        ));
        group.bench_function(
            BenchmarkId::new(format!("dataflow-{label}-{workers}w"), count),
            |b| b.iter(|| run_dataflow(plans, Some(*config), None)),
        );
    }
    group.throughput(Throughput::Elements(
        u64::try_from(events.len()).unwrap_or(u64::MAX),
    ));
    if let Some((_, _, _, plans, _)) = prepared.first() {
        group.bench_function(BenchmarkId::new("feed-only-backfill-1w", count), |b| {
            b.iter(|| run_dataflow(plans, None, None))
        });
    }
    group.bench_function(BenchmarkId::new("reference", count), |b| {
        b.iter(|| black_box(dedup(&events, &DedupConfig::default())))
    });
    group.finish();
}

criterion_group!(benches, bench_dedup);
criterion_main!(benches);
