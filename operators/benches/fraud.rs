//! Fraud throughput: every rule of `FraudExt::flag_fraud` (default
//! `FraudConfig`, adgen's datacenter ranges) over adgen traffic at its
//! default anomaly rates, against a baseline in the same run, the
//! sequential reference (`reference::fraud::flag_fraud`) on the same events.
//!
//! ```text
//! cargo bench -p adflow-operators --bench fraud                # full run (200K events)
//! cargo bench -p adflow-operators --bench fraud -- --quick     # a quick estimate
//! FRAUD_BENCH_EVENTS=1000000 cargo bench -p adflow-operators --bench fraud -- --quick
//! FRAUD_BENCH_RULES=click_without_impression,no_page_view cargo bench -p adflow-operators --bench fraud -- --quick
//! ```
//!
//! `FRAUD_BENCH_RULES` (reason codes, comma-separated) times only those
//! rules, to see what each costs; by default all run.
//!
//! The events are generated and validated once, deduplicated by event id
//! (fraud runs after dedup), then split over the workers and admitted
//! through `EventClock` as the pipeline does (batches of 4096, watermark
//! after each): each worker gets a replay plan. Timing covers building the
//! dataflow and replaying the plans, not generation. Two time
//! configurations: `backfill` (hourly ticks, no horizon: state holds
//! everything) and `stream` (one-second ticks, ten seconds of lateness, a
//! one-day horizon: rules retire their state, verdicts are frozen). Before
//! timing, every variant's verdicts are checked equal to the reference on
//! the admitted events, and its invalid events to theirs. Results are reported
//! as events per second.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Time, TimeConfig};
use adflow_datagen::{GeneratedEvent, Generator, GeneratorConfig};
use adflow_operators::fraud::{EventKey, FraudConfig, FraudExt, Rule, Verdict};
use adflow_operators::reference::fraud::{flag_fraud, invalid_events};
use adflow_operators::testing::{replay, replay_plans, Step};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;

fn event_count() -> u64 {
    std::env::var("FRAUD_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200_000)
}

/// adgen's default traffic, validated into events, one per event id, in
/// arrival order.
fn events(count: u64) -> Vec<Event> {
    let mut generator = Generator::new(GeneratorConfig {
        seed: SEED,
        events: count,
        ..GeneratorConfig::default()
    });
    let mut validator = EventValidator::default();
    let mut generated = GeneratedEvent::default();
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    while generator.next_into(&mut generated) {
        // adgen writes only valid rows; a rejection would be a bug there.
        match validator.validate_record(&generated.record) {
            Ok(event) => {
                if seen.insert(event.event_id) {
                    events.push(event);
                }
            }
            Err(rejection) => panic!("adgen row rejected: {rejection:?}"),
        }
    }
    events
}

fn config(time: &TimeConfig) -> FraudConfig {
    let cidrs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/fixtures/datacenter_cidrs.txt"
    );
    let rules: Vec<Rule> = match std::env::var("FRAUD_BENCH_RULES") {
        Ok(codes) => codes
            .split(',')
            .map(|code| Rule::parse(code.trim()).unwrap_or_else(|| panic!("no rule {code:?}")))
            .collect(),
        Err(_) => Rule::ALL.to_vec(),
    };
    FraudConfig {
        datacenter_cidrs: FraudConfig::load_datacenter_cidrs(cidrs)
            .unwrap_or_else(|error| panic!("{error}")),
        horizon: time.horizon,
        ..FraudConfig::only(&rules)
    }
}

type Collected = Arc<Mutex<(BTreeMap<Verdict, isize>, BTreeMap<EventKey, isize>)>>;

/// Replays the plans through the fraud rules on `plans.len()` workers;
/// collects the final outputs if asked to.
fn run_dataflow(plans: &Arc<Vec<Vec<Step>>>, config: &FraudConfig, collect: Option<Collected>) {
    let plans = Arc::clone(plans);
    let config = config.clone();
    let workers = plans.len();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let collect = collect.clone();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Event, isize>();
            let fraud = events.flag_fraud(&config);
            let (mut verdicts, mut invalid) = (fraud.verdicts, fraud.invalid);
            if let Some(collected) = collect {
                let sink = Arc::clone(&collected);
                verdicts = verdicts.inspect(move |(verdict, _, diff)| {
                    *sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                        .entry(verdict.clone())
                        .or_insert(0) += diff;
                });
                invalid = invalid.inspect(move |(event, _, diff)| {
                    *collected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .1
                        .entry(*event)
                        .or_insert(0) += diff;
                });
            }
            verdicts.probe_with(&probe);
            invalid.probe_with(&probe);
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

fn bench_fraud(c: &mut Criterion) {
    let count = event_count();
    let events = events(count);
    eprintln!(
        "fraud: {count} adgen rows, {} events after dedup",
        events.len()
    );
    let variants = [
        ("backfill", TimeConfig::backfill()),
        ("stream", TimeConfig::stream()),
    ];

    // Check before timing: every variant equals the reference on what it admitted.
    let mut prepared = Vec::new();
    for (label, time) in variants {
        let config = config(&time);
        for workers in [1, 2] {
            let (plans, admitted) = replay_plans(&events, workers, time);
            let plans = Arc::new(plans);
            let collected: Collected = Arc::default();
            run_dataflow(&plans, &config, Some(Arc::clone(&collected)));
            let (mut verdicts, mut invalid) =
                std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
            verdicts.retain(|_, diff| *diff != 0);
            invalid.retain(|_, diff| *diff != 0);
            let expected = flag_fraud(&admitted, &config);
            let expected_ids: BTreeSet<EventKey> = invalid_events(&expected);
            assert!(
                verdicts.values().all(|diff| *diff == 1)
                    && verdicts.keys().eq(expected.iter())
                    && invalid.values().all(|diff| *diff == 1)
                    && invalid.keys().eq(expected_ids.iter()),
                "{label} with {workers} workers differs from the reference"
            );
            prepared.push((label, workers, plans, config.clone(), admitted.len()));
        }
    }

    let mut group = c.benchmark_group("fraud");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    let reference_config = config(&TimeConfig::backfill());
    group.bench_function(BenchmarkId::new("reference", "backfill"), |b| {
        b.iter(|| black_box(flag_fraud(black_box(&events), &reference_config)));
    });
    for (label, workers, plans, config, admitted) in &prepared {
        assert!(*admitted <= events.len());
        group.bench_function(
            BenchmarkId::new(format!("dataflow/{label}"), format!("{workers}w")),
            |b| b.iter(|| run_dataflow(plans, config, None)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_fraud);
criterion_main!(benches);
