//! Attribution throughput over adgen traffic: last-touch alone and all five
//! models at once, the dataflow on 1 and 2 workers against the sequential
//! reference measured in the same run as the baseline.
//!
//! ```text
//! cargo bench -p adflow-operators --bench attribution                 # 200K events
//! cargo bench -p adflow-operators --bench attribution -- --quick      # a quick estimate
//! ATTRIBUTION_BENCH_EVENTS=1000000 cargo bench -p adflow-operators --bench attribution -- --quick
//! ```
//!
//! Events are generated with a fixed seed, validated into `Event`s through
//! `adflow::parsing::EventValidator` (the one `EventRecord` → `Event`
//! conversion), and deduplicated by event id (attribution's input contract;
//! adgen resends duplicates). Events that adgen labels as fraud are the
//! `invalid` verdicts. The dataflow is fed as a backfill is: each worker
//! reads its share, stamps hourly ticks and advances a one-hour watermark.
//! Both variants' credits and per-campaign-day totals are checked equal to
//! the reference before anything is timed. Throughput is input events/s.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Admission, EventClock, Time, TimeConfig};
use adflow_datagen::{Generator, GeneratorConfig};
use adflow_operators::attribution::{
    AttributionConfig, AttributionExt, CampaignDayAttribution, Credit, Model,
};
use adflow_operators::fraud::{event_key, EventKey};
use adflow_operators::reference::attribution as reference;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;

fn events() -> u64 {
    std::env::var("ATTRIBUTION_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200_000)
}

/// Valid, deduplicated events and the ids adgen labelled as fraud.
fn load(count: u64) -> (Vec<Event>, Vec<EventKey>) {
    let config = GeneratorConfig {
        seed: SEED,
        events: count,
        ..GeneratorConfig::default()
    };
    let mut validator = EventValidator::default();
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    let mut invalid = BTreeSet::new();
    for generated in Generator::new(config) {
        let Ok(event) = validator.validate_record(&generated.record) else {
            continue;
        };
        if generated
            .labels
            .iter()
            .any(|label| label.anomaly.is_fraud())
        {
            invalid.insert(event_key(&event));
        }
        if seen.insert(event.event_id) {
            events.push(event);
        }
    }
    // Sorted, for `binary_search`.
    (events, invalid.into_iter().collect())
}

type Output = (
    BTreeMap<Credit, isize>,
    BTreeMap<CampaignDayAttribution, isize>,
);

/// Runs the attribution dataflow to completion on `workers` threads;
/// collects its final output when `collect` (for the check), otherwise
/// only waits for it.
fn dataflow(
    events: &Arc<Vec<Event>>,
    invalid: &Arc<Vec<EventKey>>,
    config: &AttributionConfig,
    workers: usize,
    collect: bool,
) -> Output {
    let output = Arc::new(Mutex::new(Output::default()));
    let (events, invalid, config, sink) = (
        Arc::clone(events),
        Arc::clone(invalid),
        config.clone(),
        Arc::clone(&output),
    );
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (index, peers) = (worker.index(), worker.peers());
        let (mut events_in, mut invalid_in) = worker.dataflow::<Time, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (invalid_in, invalid) = scope.new_collection::<EventKey, isize>();
            let attribution = events.attribute(invalid, &config);
            let (credits, days) = (attribution.credits, attribution.by_campaign_day);
            if collect {
                let sink_credits = Arc::clone(&sink);
                let sink_days = Arc::clone(&sink);
                credits
                    .inspect(move |(credit, _, diff)| {
                        let mut output = sink_credits.lock().unwrap_or_else(|e| e.into_inner());
                        *output.0.entry(*credit).or_default() += diff;
                    })
                    .probe_with(&probe);
                days.inspect(move |(day, _, diff)| {
                    let mut output = sink_days.lock().unwrap_or_else(|e| e.into_inner());
                    *output.1.entry(*day).or_default() += diff;
                })
                .probe_with(&probe);
            } else {
                credits.probe_with(&probe);
                days.probe_with(&probe);
            }
            (events_in, invalid_in)
        });
        let mut clock = EventClock::new(TimeConfig::backfill());
        let mut paced_to: Time = 0;
        let mine = events.iter().skip(index).step_by(peers);
        for (read, event) in mine.enumerate() {
            match clock.admit(event.ts) {
                Admission::OnTime(at) | Admission::Correction(at) => {
                    events_in.update_at(*event, at, 1);
                    // The verdict arrives with the event it flags.
                    if invalid.binary_search(&event_key(event)).is_ok() {
                        invalid_in.update_at(event_key(event), at, 1);
                    }
                }
                Admission::Late => {}
            }
            if read % 4096 == 4095 {
                if let Some(watermark) = clock.advance() {
                    events_in.advance_to(watermark);
                    invalid_in.advance_to(watermark);
                    events_in.flush();
                    invalid_in.flush();
                    // As the pipeline paces: one watermark of slack.
                    worker.step_while(|| probe.less_than(&paced_to));
                    paced_to = watermark;
                }
                worker.step();
            }
        }
        drop(events_in);
        drop(invalid_in);
        while worker.step_or_park(None) {}
    })
    .unwrap_or_else(|error| panic!("timely: {error}"));
    for result in guards.join() {
        result.unwrap_or_else(|error| panic!("worker: {error}"));
    }
    let mut output = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    output.0.retain(|_, diff| *diff != 0);
    output.1.retain(|_, diff| *diff != 0);
    output
}

fn attribution(c: &mut Criterion) {
    let count = events();
    let (events, invalid) = load(count);
    let invalid_set: BTreeSet<EventKey> = invalid.iter().copied().collect();
    let (events, invalid) = (Arc::new(events), Arc::new(invalid));
    let variants = [
        (
            "last_touch",
            AttributionConfig {
                models: vec![Model::LastTouch],
                ..AttributionConfig::default()
            },
        ),
        ("all_models", AttributionConfig::default()),
    ];

    // Check before timing: every worker count equals the reference.
    for (name, config) in &variants {
        let (credits, days) = reference::attribute(&events, &invalid_set, config);
        let wanted: Output = (
            credits.iter().map(|credit| (*credit, 1)).collect(),
            days.iter().map(|day| (*day, 1)).collect(),
        );
        assert!(!credits.is_empty(), "{name}: the reference credits nothing");
        for workers in [1, 2] {
            let got = dataflow(&events, &invalid, config, workers, true);
            assert!(
                got == wanted,
                "{name} on {workers} workers differs from the reference"
            );
        }
        eprintln!(
            "{name}: {} events ({} flagged), {} credits, {} campaign-day rows: dataflow == reference",
            events.len(),
            invalid.len(),
            credits.len(),
            days.len()
        );
    }

    for (name, config) in &variants {
        let mut group = c.benchmark_group(format!("attribution/{name}"));
        group.throughput(Throughput::Elements(count));
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("reference", count), |b| {
            b.iter(|| black_box(reference::attribute(&events, &invalid_set, config)))
        });
        for workers in [1, 2] {
            group.bench_function(
                BenchmarkId::new(format!("dataflow-{workers}w"), count),
                |b| b.iter(|| black_box(dataflow(&events, &invalid, config, workers, false))),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, attribution);
criterion_main!(benches);
