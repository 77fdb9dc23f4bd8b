//! Test support shared by every family's property tests: random event
//! streams over a small domain (so users, ids and orders collide), and a
//! runner that feeds them to a dataflow the way the pipeline does —
//! shuffled arrival, batches, a watermark with lateness, late events
//! admitted as corrections, deletions — on 1 or more workers, and returns
//! the final consolidated output next to the events that were admitted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use adflow::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind, Id};
use adflow::pipeline::{Admission, EventClock, Stamping, Time, TimeConfig};
use adflow::timestamp::{HOUR_MS, MINUTE_MS};
use differential_dataflow::collection::VecCollection;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::ExchangeData;
use proptest::prelude::*;

use crate::analytics::Analytics;
use crate::reference::analytics::AnalyticsRow;
use timely::dataflow::ProbeHandle;

/// 2026-11-01T00:00:00Z, the start of generated streams.
pub const START: i64 = 1_793_491_200_000;

/// A small identifier `Id` (never zero).
pub fn id(n: u64) -> Id {
    Id(NonZeroU64::new(n + 1).unwrap_or(NonZeroU64::MIN))
}

/// How a stream is fed to the dataflow.
#[derive(Clone, Debug)]
pub struct Feed {
    /// Timely workers.
    pub workers: usize,
    /// Events inserted between two watermark advances.
    pub batch: usize,
    /// Tick, lateness and horizon, as in the pipeline.
    pub time: TimeConfig,
    /// Positions (in arrival order) of events that are deleted again one
    /// batch after they were inserted.
    pub deletions: Vec<usize>,
    /// Every worker reads a share of the arrivals (worker `i` of `n` every
    /// `n`-th) through its own clock, as the pipeline's sources do, so the
    /// workers' frontiers advance apart; otherwise worker 0 reads them all.
    pub every_worker_reads: bool,
}

impl Feed {
    /// Everything in one batch on one worker, no lateness: the simplest run.
    pub fn one_batch() -> Feed {
        Feed {
            workers: 1,
            batch: usize::MAX,
            time: TimeConfig {
                allowed_lateness: None,
                ..TimeConfig::backfill()
            },
            deletions: Vec::new(),
            every_worker_reads: false,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome<O> {
    /// The final output: each record with its non-zero multiplicity.
    pub output: BTreeMap<O, isize>,
    /// The events that remain in the input at the end (admitted, not
    /// deleted): what the reference should be computed on.
    pub admitted: Vec<Event>,
}

/// Feeds `events` (in this arrival order; worker `i` of `n` reads every
/// `n`-th, through its own clock) and collects the final output of `build`
/// from every worker.
pub fn run<O, F>(feed: &Feed, events: &[Event], build: F) -> Outcome<O>
where
    O: ExchangeData + Ord + std::hash::Hash,
    F: for<'scope> Fn(VecCollection<'scope, Time, Event>) -> VecCollection<'scope, Time, O>
        + Send
        + Sync
        + 'static,
{
    let collected = Arc::new(Mutex::new(BTreeMap::<O, isize>::new()));
    let admitted_out = Arc::new(Mutex::new(Vec::new()));
    let events = events.to_vec();
    let feed_for_workers = feed.clone();
    let sink = Arc::clone(&collected);
    let admitted_sink = Arc::clone(&admitted_out);
    timely::execute(
        timely::Config::process(feed.workers.max(1)),
        move |worker| {
            let feed = &feed_for_workers;
            let sink = Arc::clone(&sink);
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, collection) = scope.new_collection::<Event, isize>();
                build(collection)
                    .inspect(move |(record, _time, diff)| {
                        let mut output = sink.lock().unwrap_or_else(|e| e.into_inner());
                        *output.entry(record.clone()).or_insert(0) += diff;
                    })
                    .probe_with(&probe);
                input
            });
            // As the pipeline reads (`every_worker_reads`): worker `i` of
            // `n` admits every `n`-th arrival through its own clock.
            // Otherwise worker 0 reads them all.
            let arrivals = events.iter().copied().enumerate();
            let share: Vec<(usize, Event)> = if feed.every_worker_reads {
                arrivals
                    .skip(worker.index())
                    .step_by(worker.peers())
                    .collect()
            } else if worker.index() == 0 {
                arrivals.collect()
            } else {
                Vec::new()
            };
            let mut clock = EventClock::new(feed.time);
            let mut admitted = Vec::new();
            let mut pending_deletions: Vec<Event> = Vec::new();
            for chunk in share.chunks(feed.batch.max(1)) {
                for deleted in pending_deletions.drain(..) {
                    input.update_at(deleted, clock.frontier(), -1);
                }
                for (position, event) in chunk {
                    match clock.admit(event.ts) {
                        Admission::OnTime(at) | Admission::Correction(at) => {
                            input.update_at(*event, at, 1);
                            if feed.deletions.contains(position) {
                                pending_deletions.push(*event);
                            } else {
                                admitted.push(*event);
                            }
                        }
                        Admission::Late => {}
                    }
                }
                if let Some(watermark) = clock.advance() {
                    input.advance_to(watermark);
                }
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
            }
            for deleted in pending_deletions.drain(..) {
                input.update_at(deleted, clock.frontier(), -1);
            }
            admitted_sink
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(admitted);
            drop(input);
            while worker.step_or_park(None) {}
        },
    )
    .and_then(|guards| {
        guards
            .join()
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
    })
    .unwrap_or_else(|error| panic!("dataflow failed: {error}"));
    let mut output = std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
    output.retain(|_, diff| *diff != 0);
    let admitted = std::mem::take(&mut *admitted_out.lock().unwrap_or_else(|e| e.into_inner()));
    Outcome { output, admitted }
}

/// Every output of [`analyze`](crate::analytics::AnalyticsExt::analyze)
/// as one collection, to compare with
/// [`reference::analytics::analyze`](crate::reference::analytics::analyze).
pub fn analytics_rows(analytics: Analytics<'_>) -> VecCollection<'_, Time, AnalyticsRow> {
    analytics
        .duplicates
        .map(AnalyticsRow::Duplicate)
        .concat(analytics.verdicts.map(AnalyticsRow::Verdict))
        .concat(analytics.attribution.credits.map(AnalyticsRow::Credit))
        .concat(analytics.attribution.by_campaign_day.map(AnalyticsRow::Day))
        .concat(
            analytics
                .attribution
                .unattributed
                .map(AnalyticsRow::Unattributed),
        )
        .concat(analytics.metrics.hourly.map(AnalyticsRow::Metrics))
        .concat(analytics.metrics.daily.map(AnalyticsRow::Metrics))
        .concat(analytics.metrics.monthly.map(AnalyticsRow::Metrics))
}

/// Events a benchmark worker inserts between two watermark advances, as
/// the pipeline reads them.
pub const READ_BATCH: usize = 4096;

/// One step of a benchmark worker's replay, precomputed so that timing
/// covers only the dataflow.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Insert an event at a dataflow time.
    Insert(Event, Time),
    /// Advance the input to a watermark.
    Advance(Time),
}

/// Each worker's replay plan — every `workers`-th event, admitted through
/// the worker's own [`EventClock`] in batches of [`READ_BATCH`] as the
/// pipeline admits them — and every event admitted.
pub fn replay_plans(
    events: &[Event],
    workers: usize,
    time: TimeConfig,
) -> (Vec<Vec<Step>>, Vec<Event>) {
    let mut admitted = Vec::new();
    let plans = (0..workers)
        .map(|worker| {
            let share: Vec<Event> = events
                .iter()
                .skip(worker)
                .step_by(workers)
                .copied()
                .collect();
            let mut clock = EventClock::new(time);
            let mut steps = Vec::new();
            for batch in share.chunks(READ_BATCH) {
                for event in batch {
                    match clock.admit(event.ts) {
                        Admission::OnTime(at) | Admission::Correction(at) => {
                            steps.push(Step::Insert(*event, at));
                            admitted.push(*event);
                        }
                        Admission::Late => {}
                    }
                }
                if let Some(watermark) = clock.advance() {
                    steps.push(Step::Advance(watermark));
                }
            }
            steps
        })
        .collect();
    (plans, admitted)
}

/// Replays one worker's plan into `input`, pacing reads to the dataflow
/// one watermark behind, as the pipeline does. The caller closes the input.
pub fn replay(
    worker: &mut timely::worker::Worker,
    input: &mut InputSession<Time, Event, isize>,
    probe: &ProbeHandle<Time>,
    plan: &[Step],
) {
    let mut paced_to: Time = 0;
    for step in plan {
        match *step {
            Step::Insert(event, at) => input.update_at(event, at, 1),
            Step::Advance(watermark) => {
                input.advance_to(watermark);
                input.flush();
                worker.step_while(|| probe.less_than(&paced_to));
                paced_to = watermark;
                worker.step();
            }
        }
    }
}

/// A multiset from a list of records, for comparing with [`Outcome::output`].
pub fn multiset<O: Ord>(records: impl IntoIterator<Item = O>) -> BTreeMap<O, isize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(record).or_insert(0) += 1;
    }
    counts
}

/// One random event over a small domain: 6 users, 3 campaigns × 3 ads,
/// 4 IPs, 3 countries, three days of event time.
pub fn arb_event() -> impl Strategy<Value = Event> {
    (
        (0u64..60, 0i64..3 * 24 * 60, 0i64..60_000, 0u8..20),
        (0u64..6, proptest::option::of(0u64..4), 0u64..3, 0u64..3),
        (0u8..4, 0u8..10, 0usize..3, 0u8..2),
        (0i64..2_000_000, 1i64..50_000_000, 0u64..5),
    )
        .prop_map(
            |(
                (event, minute, millis, kind),
                (user, device, campaign, ad),
                (ip, agent, country, device_type),
                (cost, revenue, order),
            )| {
                let kind = match kind {
                    0..=7 => EventKind::Impression,
                    8..=13 => EventKind::Click,
                    14..=16 => EventKind::Conversion,
                    _ => EventKind::PageView,
                };
                let placed = matches!(kind, EventKind::Impression | EventKind::Click);
                let conversion = kind == EventKind::Conversion;
                Event {
                    ts: START + minute * MINUTE_MS + millis,
                    kind,
                    event_id: EventId(u128::from(event)),
                    user_id: Some(id(user)),
                    device_id: device.map(id),
                    campaign_id: placed.then(|| id(100 + campaign)),
                    ad_id: placed.then(|| id(200 + campaign * 10 + ad)),
                    publisher_id: Some(id(300 + ad % 2)),
                    ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip))),
                    user_agent: Some(id(400 + u64::from(agent % 3))),
                    agent: match agent {
                        0 => AgentClass::Missing,
                        1 => AgentClass::Bot,
                        _ => AgentClass::Browser,
                    },
                    country: [Country(*b"US"), Country(*b"DE"), Country(*b"IN")][country],
                    device_type: if device_type == 0 {
                        DeviceType::Desktop
                    } else {
                        DeviceType::Mobile
                    },
                    cost_micros: if placed { cost } else { 0 },
                    revenue_micros: if conversion { revenue } else { 0 },
                    conversion_type: conversion.then(|| id(500)),
                    order_id: conversion.then(|| id(600 + order)),
                }
            },
        )
}

/// A random stream: events (some event ids repeat with different content),
/// plus exact resends of some of them, in a shuffled arrival order.
pub fn arb_events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(arb_event(), 0..max)
        .prop_flat_map(|events| {
            let len = events.len();
            (
                Just(events),
                proptest::collection::vec(0..len.max(1), 0..len / 5 + 1),
            )
        })
        .prop_map(|(mut events, resend)| {
            if !events.is_empty() {
                let copies: Vec<Event> = resend.iter().map(|&index| events[index]).collect();
                events.extend(copies);
            }
            events
        })
        .prop_shuffle()
}

/// A random way to feed a stream of `len` events: 1 or 2 workers, reading
/// from worker 0 or from every worker, batch sizes from 1 to everything,
/// ticks of a millisecond to an hour, lateness from none to unbounded,
/// events stamped at their tick or at the frontier, and a few deletions.
pub fn arb_feed(len: usize) -> impl Strategy<Value = Feed> {
    (
        1usize..=2,
        prop_oneof![Just(1usize), 2usize..16, Just(usize::MAX)],
        prop_oneof![Just(1i64), Just(MINUTE_MS), Just(HOUR_MS)],
        prop_oneof![
            Just(None),
            Just(Some(0)),
            Just(Some(MINUTE_MS)),
            Just(Some(6 * HOUR_MS))
        ],
        proptest::collection::vec(0..len.max(1), 0..3),
        any::<bool>(),
        prop_oneof![Just(Stamping::EventTick), Just(Stamping::Frontier)],
    )
        .prop_map(
            |(workers, batch, tick, allowed_lateness, deletions, every_worker_reads, stamping)| {
                Feed {
                    workers,
                    batch,
                    time: TimeConfig {
                        tick,
                        allowed_lateness,
                        horizon: None,
                        stamping,
                        ..TimeConfig::backfill()
                    },
                    deletions,
                    every_worker_reads,
                }
            },
        )
}

/// Final contents of named outputs, each row rendered as its values joined
/// by `|`, with multiplicity; shared by every worker of a run. A
/// [`NamedOutputs`](adflow::sinks::NamedOutputs) for tests that compare
/// whole pipelines (backfill against replay, against stream) output by output.
#[derive(Clone, Debug, Default)]
pub struct CapturedOutputs {
    rows: Arc<Mutex<BTreeMap<String, BTreeMap<String, isize>>>>,
}

impl CapturedOutputs {
    /// This worker's view, attaching each output to `probe`.
    pub fn attach<'a>(&'a self, probe: &'a ProbeHandle<Time>) -> CaptureOn<'a> {
        CaptureOn {
            captured: self,
            probe,
        }
    }

    /// Every output's rows with a nonzero multiplicity, by output name.
    pub fn finish(&self) -> BTreeMap<String, BTreeMap<String, isize>> {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for output in rows.values_mut() {
            output.retain(|_, count| *count != 0);
        }
        rows
    }
}

/// A [`CapturedOutputs`] attached to one worker's probe.
pub struct CaptureOn<'a> {
    captured: &'a CapturedOutputs,
    probe: &'a ProbeHandle<Time>,
}

impl<'scope> adflow::sinks::NamedOutputs<'scope> for CaptureOn<'_> {
    fn output<D: adflow::sinks::OutputRecord>(
        &mut self,
        name: &str,
        collection: VecCollection<'scope, Time, D>,
    ) {
        let rows = Arc::clone(&self.captured.rows);
        rows.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default();
        let name = name.to_owned();
        collection
            .inspect(move |(record, _, diff)| {
                let row = record
                    .values()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("|");
                *rows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name.clone())
                    .or_default()
                    .entry(row)
                    .or_default() += diff;
            })
            .probe_with(self.probe);
    }
}
