//! Metrics throughput: `campaign_metrics` (hourly, daily and monthly rows)
//! over adgen traffic, against the sequential reference in the same run.
//!
//! ```text
//! cargo bench -p adflow-operators --bench metrics                 # full run
//! cargo bench -p adflow-operators --bench metrics -- --quick      # a quick estimate
//! METRICS_BENCH_EVENTS=2000000 METRICS_BENCH_WORKERS=2 cargo bench -p adflow-operators --bench metrics -- --quick
//! ```
//!
//! Untimed preparation: adgen rows (fixed seed) are validated into events
//! and deduplicated by event id (the operator's input is deduplicated);
//! fraud verdicts are the ids of impressions and clicks that adgen labels
//! as fraud; conversions are credited last touch (the user's last valid
//! click in 30 days, else unattributed). Each worker is given every
//! `workers`-th event in arrival order and admits it through its own
//! `EventClock`, as the pipeline does; a verdict arrives one read batch
//! after its event (a late verdict, applied as a correction), a credit with
//! its conversion.
//!
//! Timed: building the dataflow, feeding the planned updates (pacing reads
//! to the dataflow one watermark behind, as the pipeline does) and running
//! it to completion. Two configurations: `backfill` (hour ticks, one hour of
//! lateness, no horizon) and `stream` (one-second ticks, ten seconds of
//! lateness, a one-day horizon: state is retired and rows frozen). Both are
//! checked equal to the reference before timing. The `reference` baseline
//! is the sequential oracle on the same admitted events, verdicts and
//! credits. Throughput is in events (all kinds) per second.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use adflow::event::{Event, EventId, EventKind, Id};
use adflow::parsing::EventValidator;
use adflow::pipeline::{Admission, EventClock, Time, TimeConfig};
use adflow::timestamp::DAY_MS;
use adflow_datagen::{Anomaly, Generator, GeneratorConfig};
use adflow_operators::fraud::{event_key, EventKey};
use adflow_operators::metrics::{
    AttributedConversion, CampaignMetricsExt, Invalid, MetricsConfig, MetricsRow,
};
use adflow_operators::reference::metrics::metrics;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;
/// Events read between two looks at the watermark (as the pipeline).
const READ_BATCH: usize = 4096;
/// Last-touch lookback of the credits.
const LOOKBACK_MS: i64 = 30 * DAY_MS;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// What adgen labels as fraud, which the fraud rules would flag.
fn is_fraud(anomaly: Anomaly) -> bool {
    matches!(
        anomaly,
        Anomaly::ClickFlood
            | Anomaly::BotUserAgent
            | Anomaly::MissingUserAgent
            | Anomaly::DatacenterIp
            | Anomaly::ClickInjection
            | Anomaly::ClickWithoutImpression
    )
}

/// Deduplicated events in arrival order, and the ids labelled as fraud.
fn generate(events: u64) -> (Vec<Event>, BTreeSet<EventKey>) {
    let config = GeneratorConfig {
        seed: SEED,
        events,
        ..GeneratorConfig::default()
    };
    let mut validator = EventValidator::default();
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    let mut fraud = BTreeSet::new();
    for generated in Generator::new(config) {
        let Ok(event) = validator.validate_record(&generated.record) else {
            continue;
        };
        if !seen.insert(event.event_id) {
            continue;
        }
        let placed = matches!(event.kind, EventKind::Impression | EventKind::Click);
        if placed && generated.labels.iter().any(|label| is_fraud(label.anomaly)) {
            fraud.insert(event_key(&event));
        }
        unique.push(event);
    }
    (unique, fraud)
}

/// Last-touch credits of the conversions among `events`: the last click of
/// the same user (or device) at or before the conversion, within the
/// lookback, whose id is not flagged; else unattributed.
fn last_touch(events: &[Event], invalid: &BTreeSet<EventKey>) -> Vec<AttributedConversion> {
    let mut by_time: Vec<&Event> = events.iter().collect();
    // Clicks before conversions at equal times.
    by_time.sort_by_key(|event| (event.ts, event.kind != EventKind::Click, event.event_id));
    let mut last_click: BTreeMap<Id, &Event> = BTreeMap::new();
    let mut credits = Vec::new();
    for event in by_time {
        let Some(person) = event.user_id.or(event.device_id) else {
            continue;
        };
        match event.kind {
            EventKind::Click if !invalid.contains(&event_key(event)) => {
                last_click.insert(person, event);
            }
            EventKind::Conversion => {
                let touch = last_click
                    .get(&person)
                    .filter(|click| event.ts - click.ts <= LOOKBACK_MS);
                credits.push(AttributedConversion {
                    conversion: event.event_id,
                    ts: event.ts,
                    campaign_id: touch.and_then(|click| click.campaign_id),
                    ad_id: touch.and_then(|click| click.ad_id),
                    country: event.country,
                    device_type: event.device_type,
                    conversions_micros: 1_000_000,
                    revenue_micros: event.revenue_micros,
                });
            }
            _ => {}
        }
    }
    credits
}

/// One read batch of one worker: updates at their dataflow times, then
/// the watermark the inputs advance to.
#[derive(Clone, Default)]
struct Round {
    events: Vec<(Event, Time)>,
    verdicts: Vec<(EventKey, Time)>,
    credits: Vec<(AttributedConversion, Time)>,
    watermark: Option<Time>,
}

/// Every worker's rounds, and what the reference is computed on.
struct Plan {
    rounds: Arc<Vec<Vec<Round>>>,
    admitted: Vec<Event>,
    invalid: BTreeSet<EventKey>,
    credits: Vec<AttributedConversion>,
}

fn plan(events: &[Event], fraud: &BTreeSet<EventKey>, workers: usize, time: TimeConfig) -> Plan {
    let mut rounds = vec![Vec::new(); workers];
    let mut admitted_at: BTreeMap<EventId, (usize, usize, Time)> = BTreeMap::new();
    let mut admitted = Vec::new();
    for (worker, worker_rounds) in rounds.iter_mut().enumerate() {
        let mut clock = EventClock::new(time);
        let mine: Vec<&Event> = events.iter().skip(worker).step_by(workers).collect();
        let mut late_verdicts: Vec<(EventKey, Time)> = Vec::new();
        for chunk in mine.chunks(READ_BATCH) {
            let mut round = Round::default();
            let frontier = clock.frontier();
            // A verdict is computed from its event: never before the event's own time.
            round.verdicts = late_verdicts
                .drain(..)
                .map(|(id, at)| (id, at.max(frontier)))
                .collect();
            for event in chunk {
                let at = match clock.admit(event.ts) {
                    Admission::OnTime(at) | Admission::Correction(at) => at,
                    Admission::Late => continue,
                };
                round.events.push((**event, at));
                admitted.push(**event);
                admitted_at.insert(event.event_id, (worker, worker_rounds.len(), at));
                if fraud.contains(&event_key(event)) {
                    late_verdicts.push((event_key(event), at));
                }
            }
            round.watermark = clock.advance();
            worker_rounds.push(round);
        }
        let frontier = clock.frontier();
        if !late_verdicts.is_empty() {
            worker_rounds.push(Round {
                verdicts: late_verdicts
                    .drain(..)
                    .map(|(id, at)| (id, at.max(frontier)))
                    .collect(),
                ..Round::default()
            });
        }
    }
    let invalid: BTreeSet<EventKey> = admitted
        .iter()
        .map(event_key)
        .filter(|event| fraud.contains(event))
        .collect();
    let credits = last_touch(&admitted, &invalid);
    for credit in &credits {
        if let Some(&(worker, round, at)) = admitted_at.get(&credit.conversion) {
            rounds[worker][round].credits.push((*credit, at));
        }
    }
    Plan {
        rounds: Arc::new(rounds),
        admitted,
        invalid,
        credits,
    }
}

/// Runs the dataflow on the plan; with `collect`, returns its final rows.
fn run_dataflow(plan: &Plan, config: MetricsConfig, collect: bool) -> BTreeMap<MetricsRow, isize> {
    let workers = plan.rounds.len();
    let rounds = Arc::clone(&plan.rounds);
    let output = Arc::new(Mutex::new(BTreeMap::<MetricsRow, isize>::new()));
    let sink = Arc::clone(&output);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        let (mut events, mut invalid, mut conversions) = worker.dataflow::<Time, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (invalid_in, invalid) = scope.new_collection::<EventKey, isize>();
            let (credits_in, credits) = scope.new_collection::<AttributedConversion, isize>();
            let metrics = events.campaign_metrics(Some(Invalid::events(invalid)), credits, &config);
            let rows = metrics.hourly.concat(metrics.daily).concat(metrics.monthly);
            let rows = if collect {
                rows.inspect(move |(row, _, diff)| {
                    let mut output = sink.lock().unwrap_or_else(|e| e.into_inner());
                    *output.entry(*row).or_insert(0) += diff;
                })
            } else {
                rows
            };
            rows.probe_with(&probe);
            (events_in, invalid_in, credits_in)
        });
        let mut paced_to: Time = 0;
        for round in &rounds[worker.index()] {
            for (event, at) in &round.events {
                events.update_at(*event, *at, 1);
            }
            for (id, at) in &round.verdicts {
                invalid.update_at(*id, *at, 1);
            }
            for (credit, at) in &round.credits {
                conversions.update_at(*credit, *at, 1);
            }
            if let Some(watermark) = round.watermark {
                events.advance_to(watermark);
                invalid.advance_to(watermark);
                conversions.advance_to(watermark);
                events.flush();
                invalid.flush();
                conversions.flush();
                worker.step_while(|| probe.less_than(&paced_to));
                paced_to = watermark;
            }
            worker.step();
        }
        drop((events, invalid, conversions));
        while worker.step_or_park(None) {}
    });
    match guards {
        Ok(guards) => {
            for result in guards.join() {
                if let Err(error) = result {
                    panic!("worker failed: {error}");
                }
            }
        }
        Err(error) => panic!("timely failed to start: {error}"),
    }
    let mut rows = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    rows.retain(|_, diff| *diff != 0);
    rows
}

fn reference(plan: &Plan) -> BTreeMap<MetricsRow, isize> {
    let (hourly, daily, monthly) = metrics(&plan.admitted, &plan.invalid, &plan.credits);
    let mut rows = BTreeMap::new();
    for row in hourly.into_iter().chain(daily).chain(monthly) {
        *rows.entry(row).or_insert(0) += 1;
    }
    rows
}

fn bench_metrics(c: &mut Criterion) {
    let count = env_or("METRICS_BENCH_EVENTS", 500_000);
    let workers = env_or("METRICS_BENCH_WORKERS", 2).max(1);
    let (events, fraud) = generate(u64::try_from(count).unwrap_or(u64::MAX));
    let stream = TimeConfig::stream();
    let variants = [
        ("backfill", TimeConfig::backfill(), MetricsConfig::default()),
        (
            "stream",
            stream,
            MetricsConfig {
                horizon: stream.horizon,
                ..MetricsConfig::default()
            },
        ),
    ];
    let plans: Vec<(&str, Plan, MetricsConfig)> = variants
        .into_iter()
        .map(|(name, time, config)| (name, plan(&events, &fraud, workers, time), config))
        .collect();

    // Check before timing: every variant equals the reference on what it admitted.
    for (name, plan, config) in &plans {
        let expected = reference(plan);
        let got = run_dataflow(plan, *config, true);
        assert!(
            got == expected,
            "{name}: dataflow ({} rows) differs from the reference ({} rows)",
            got.len(),
            expected.len()
        );
        eprintln!(
            "{name}: {} events admitted, {} flagged, {} credits, {} rows; checked equal to the reference",
            plan.admitted.len(),
            plan.invalid.len(),
            plan.credits.len(),
            expected.len()
        );
    }

    let mut group = c.benchmark_group("metrics");
    group.sample_size(10);
    group.throughput(Throughput::Elements(
        u64::try_from(events.len()).unwrap_or(0),
    ));
    let (_, backfill, _) = &plans[0];
    group.bench_function(BenchmarkId::new("reference", events.len()), |b| {
        b.iter(|| {
            black_box(metrics(
                &backfill.admitted,
                &backfill.invalid,
                &backfill.credits,
            ))
        })
    });
    for (name, plan, config) in &plans {
        let id = BenchmarkId::new(format!("dataflow-{name}-{workers}w"), events.len());
        group.bench_function(id, |b| {
            b.iter(|| black_box(run_dataflow(plan, *config, false)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
