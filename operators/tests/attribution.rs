//! Attribution: the dataflow against the sequential reference on random
//! streams (shuffled arrival, batches, lateness, deletions, 1 and 2
//! workers), with fraud verdicts as a second input; exact splits; bounded
//! state; a shared touch arrangement; and explicit corrections (a late
//! click, a late verdict, a deletion) observed in the changelog.
//!
//! ```text
//! cargo test -p adflow-operators --test attribution
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use adflow::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind};
use adflow::pipeline::{Time, TimeConfig};
use adflow::timestamp::{DAY_MS, HOUR_MS, MINUTE_MS};
use adflow_operators::attribution::{
    split_credit, Attribution, AttributionConfig, AttributionExt, CampaignDayAttribution, Credit,
    Model, Unattributed, CONVERSION_MICROS,
};
use adflow_operators::fraud::{event_key, EventKey};
use adflow_operators::reference::attribution as reference;
use adflow_operators::testing::{arb_events, arb_feed, id, multiset, run, Feed, START};
use differential_dataflow::collection::VecCollection;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Every output of an attribution, in one collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Row {
    Credit(Credit),
    Day(CampaignDayAttribution),
    Unattributed(Unattributed),
}

fn rows(attribution: Attribution<'_>) -> VecCollection<'_, Time, Row> {
    attribution
        .credits
        .map(Row::Credit)
        .concat(attribution.by_campaign_day.map(Row::Day))
        .concat(attribution.unattributed.map(Row::Unattributed))
}

/// Fraud verdicts derived deterministically from the stream itself: every
/// event id divisible by 7 is flagged (about one in seven of the ids, and
/// the verdict arrives with the event, resends and deletions included).
fn flagged(id: EventId) -> bool {
    id.0 % 7 == 0
}

fn verdicts(events: VecCollection<'_, Time, Event>) -> VecCollection<'_, Time, EventKey> {
    events
        .filter(|event| flagged(event.event_id))
        .map(|event| event_key(&event))
}

fn invalid_set(events: &[Event]) -> BTreeSet<EventKey> {
    events
        .iter()
        .filter(|event| flagged(event.event_id))
        .map(event_key)
        .collect()
}

fn expected(
    events: &[Event],
    invalid: &BTreeSet<EventKey>,
    config: &AttributionConfig,
) -> BTreeMap<Row, isize> {
    let (credits, days) = reference::attribute(events, invalid, config);
    let unattributed = reference::unattributed(events, invalid, config);
    multiset(
        credits
            .into_iter()
            .map(Row::Credit)
            .chain(days.into_iter().map(Row::Day))
            .chain(unattributed.into_iter().map(Row::Unattributed)),
    )
}

/// The defaults: 30-day clicks and 1-day views cover most of the 3-day
/// stream.
fn wide() -> AttributionConfig {
    AttributionConfig::default()
}

/// Windows that cut the 3-day stream: clicks 1 day, views 2 hours, and a
/// 6-hour half-life so time-decay weights differ visibly.
fn narrow() -> AttributionConfig {
    AttributionConfig {
        models: vec![
            Model::LastTouch,
            Model::FirstTouch,
            Model::Linear,
            Model::TimeDecay {
                half_life: 6 * HOUR_MS,
            },
            Model::PositionBased,
        ],
        click_window: DAY_MS,
        view_window: 2 * HOUR_MS,
        horizon: None,
    }
}

fn events_and_feed() -> impl Strategy<Value = (Vec<Event>, Feed)> {
    arb_events(80).prop_flat_map(|events| {
        let len = events.len();
        (Just(events), arb_feed(len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// All five models at once equal the reference, whatever the arrival
    /// order, batching, lateness, deletions and workers.
    #[test]
    fn dataflow_matches_reference((events, feed) in events_and_feed(), cut in any::<bool>()) {
        let config = if cut { narrow() } else { wide() };
        let build_config = config.clone();
        let outcome = run(&feed, &events, move |events| {
            let invalid = verdicts(events.clone());
            rows(events.attribute(invalid, &build_config))
        });
        let invalid = invalid_set(&outcome.admitted);
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &invalid, &config));
    }

    /// Every conversion is accounted for once per copy: either
    /// unattributed, or under every model its credits sum exactly to its
    /// revenue and to one conversion, each row as many times as the
    /// conversion has copies; and per-day revenue adds up to the credited
    /// revenue.
    #[test]
    fn credits_sum_exactly_to_revenue((events, feed) in events_and_feed()) {
        let config = narrow();
        let build_config = config.clone();
        let outcome = run(&feed, &events, move |events| {
            let invalid = verdicts(events.clone());
            rows(events.attribute(invalid, &build_config))
        });
        // Conversions keyed as outputs identify them; skip keys shared by
        // distinct conversions (the generator reuses event ids). Identical
        // copies share a key too, and count.
        let mut copies: BTreeMap<(EventId, i64), BTreeMap<Event, isize>> = BTreeMap::new();
        for event in outcome.admitted.iter().filter(|e| e.kind == EventKind::Conversion) {
            *copies.entry((event.event_id, event.ts)).or_default().entry(*event).or_default() += 1;
        }
        let copies_of = |key: &(EventId, i64)| match copies.get(key) {
            Some(events) if events.len() == 1 => events.iter().next().map(|(e, n)| (*e, *n)),
            _ => None,
        };
        let mut sums: BTreeMap<((EventId, i64), Model), (i64, i64)> = BTreeMap::new();
        let mut unattributed = BTreeSet::new();
        let (mut credited, mut daily) = (0i64, 0i64);
        for (row, &count) in &outcome.output {
            let key = match row {
                Row::Credit(credit) => Some((credit.conversion, credit.conversion_ts)),
                Row::Unattributed(row) => Some((row.conversion, row.conversion_ts)),
                Row::Day(_) => None,
            };
            let expected = key.and_then(|key| copies_of(&key)).map_or(1, |(_, n)| n);
            if key.is_none_or(|key| copies_of(&key).is_some()) {
                prop_assert_eq!(count, expected, "as many rows as copies: {:?}", row);
            }
            prop_assert!(count > 0, "{:?}", row);
            let times = i64::try_from(count).unwrap_or(i64::MAX);
            match row {
                Row::Credit(credit) => {
                    let sum = sums.entry(((credit.conversion, credit.conversion_ts), credit.model)).or_default();
                    sum.0 += credit.credit_micros;
                    sum.1 += credit.conversion_credit;
                    credited += credit.credit_micros * times;
                }
                Row::Day(day) => daily += day.revenue_micros * times,
                Row::Unattributed(row) => {
                    unattributed.insert((row.conversion, row.conversion_ts));
                }
            }
        }
        prop_assert_eq!(credited, daily);
        for key in copies.keys() {
            let Some((conversion, _)) = copies_of(key) else { continue };
            let models: Vec<_> = sums.iter().filter(|((k, _), _)| k == key).collect();
            if unattributed.contains(key) {
                prop_assert!(models.is_empty());
                continue;
            }
            prop_assert_eq!(models.len(), config.models.len(), "every model credits {:?}", key);
            for (_, (money, conversions)) in models {
                prop_assert_eq!(*money, conversion.revenue_micros);
                prop_assert_eq!(*conversions, CONVERSION_MICROS);
            }
        }
    }

    /// With a horizon the dataflow retires touches and conversions and
    /// freezes outputs, and still equals the reference on what it admitted.
    #[test]
    fn horizon_keeps_the_answer(
        (events, feed) in events_and_feed(),
        horizon in prop_oneof![Just(0), Just(MINUTE_MS), Just(2 * HOUR_MS), Just(DAY_MS)],
        cut in any::<bool>(),
    ) {
        // Deletions must happen within the horizon; the harness deletes at
        // the frontier whenever, so this variant has none (as in retention's).
        let mut feed = Feed { deletions: Vec::new(), ..feed };
        feed.time.horizon = Some(horizon);
        let config = AttributionConfig { horizon: Some(horizon), ..if cut { narrow() } else { wide() } };
        let build_config = config.clone();
        let outcome = run(&feed, &events, move |events| {
            let invalid = verdicts(events.clone());
            rows(events.attribute(invalid, &build_config))
        });
        let invalid = invalid_set(&outcome.admitted);
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &invalid, &config));
    }

    /// Two model sets with different windows over one arrangement of
    /// touches (built with the longer windows), with and without a horizon.
    #[test]
    fn model_sets_share_one_arrangement(
        (events, feed) in events_and_feed(),
        horizon in prop_oneof![Just(None), Just(Some(HOUR_MS))],
    ) {
        let mut feed = feed;
        if horizon.is_some() {
            feed.deletions.clear();
            feed.time.horizon = horizon;
        }
        let first = AttributionConfig {
            models: vec![Model::LastTouch, Model::Linear],
            horizon,
            ..narrow()
        };
        let second = AttributionConfig {
            models: vec![Model::FirstTouch, Model::TimeDecay { half_life: HOUR_MS }, Model::PositionBased],
            click_window: 2 * DAY_MS,
            view_window: 12 * HOUR_MS,
            horizon,
        };
        let (first_build, second_build) = (first.clone(), second.clone());
        let outcome = run(&feed, &events, move |events| {
            let invalid = verdicts(events.clone());
            let touches = events.clone().arrange_touches("Shared", &second_build);
            let one = events
                .clone()
                .attribute_arranged("First", &touches, invalid.clone(), &first_build);
            let two = events.attribute_arranged("Second", &touches, invalid, &second_build);
            rows(one).map(|row| (1u8, row)).concat(rows(two).map(|row| (2u8, row)))
        });
        let invalid = invalid_set(&outcome.admitted);
        let mut wanted = BTreeMap::new();
        for (set, config) in [(1u8, &first), (2u8, &second)] {
            for (row, count) in expected(&outcome.admitted, &invalid, config) {
                wanted.insert((set, row), count);
            }
        }
        prop_assert_eq!(outcome.output, wanted);
    }

    /// The shared split: exact sums, every share within one unit of its
    /// exact quota, zero-weight touches get nothing under last/first touch.
    #[test]
    fn split_is_exact(
        mut times in proptest::collection::vec(0i64..10 * DAY_MS, 1..12),
        amount in prop_oneof![0i64..1_000, 0i64..i64::MAX, Just(i64::MAX)],
        half_life in prop_oneof![Just(0i64), 1i64..3 * DAY_MS],
    ) {
        times.sort();
        let conversion_ts = times[times.len() - 1] + 1;
        let models = [
            Model::LastTouch,
            Model::FirstTouch,
            Model::Linear,
            Model::TimeDecay { half_life },
            Model::PositionBased,
        ];
        for model in models {
            let shares = split_credit(model, &times, conversion_ts, amount);
            prop_assert_eq!(shares.len(), times.len());
            prop_assert_eq!(shares.iter().map(|&s| i128::from(s)).sum::<i128>(), i128::from(amount));
            prop_assert!(shares.iter().all(|&s| s >= 0));
        }
        let n = i128::try_from(times.len()).unwrap_or(i128::MAX);
        let linear = split_credit(Model::Linear, &times, conversion_ts, amount);
        let quota = i128::from(amount) / n;
        prop_assert!(linear.iter().all(|&s| i128::from(s) == quota || i128::from(s) == quota + 1));
        prop_assert!(linear.windows(2).all(|pair| pair[0] >= pair[1]), "remainder to the earliest");
        let last = split_credit(Model::LastTouch, &times, conversion_ts, amount);
        prop_assert_eq!(last[times.len() - 1], amount);
    }
}

// ---------------------------------------------------------------------------
// Explicit cases.

/// Verdict events: a page view with event id `VERDICT + (m << 32) + n`
/// flags event `n` at minute `m`.
const VERDICT: u128 = 1 << 64;

fn event(n: u128, kind: EventKind, minute: i64) -> Event {
    let placed = matches!(kind, EventKind::Click | EventKind::Impression);
    Event {
        ts: START + minute * MINUTE_MS,
        kind,
        event_id: EventId(n),
        user_id: Some(id(1)),
        device_id: None,
        campaign_id: placed.then(|| id(100 + u64::try_from(n % 1_000).unwrap_or(0))),
        ad_id: placed.then(|| id(200)),
        publisher_id: None,
        ip: None,
        user_agent: None,
        agent: AgentClass::Browser,
        country: Country::UNKNOWN,
        device_type: DeviceType::Unknown,
        cost_micros: 0,
        revenue_micros: if kind == EventKind::Conversion {
            9_000_000
        } else {
            0
        },
        conversion_type: None,
        order_id: None,
    }
}

fn verdict_on(n: u128, at_minute: i64, minute: i64) -> Event {
    let at = u128::try_from(at_minute).unwrap_or(0);
    event(VERDICT + (at << 32) + n, EventKind::PageView, minute)
}

/// The event a verdict page view flags.
fn flagged_by(verdict: &Event) -> EventKey {
    let code = verdict.event_id.0 - VERDICT;
    let minute = i64::try_from(code >> 32).unwrap_or(0);
    (
        EventId(code & u128::from(u32::MAX)),
        START + minute * MINUTE_MS,
    )
}

/// One event per batch, watermark right behind the newest event, 1 ms
/// ticks: an event older than the newest is admitted as a correction.
fn one_at_a_time(workers: usize) -> Feed {
    Feed {
        workers,
        batch: 1,
        time: TimeConfig {
            tick: 1,
            allowed_lateness: Some(0),
            horizon: None,
            ..TimeConfig::backfill()
        },
        deletions: Vec::new(),
        every_worker_reads: false,
    }
}

type Changelog = Arc<Mutex<Vec<(Credit, Time, isize)>>>;

/// Runs last-touch on `events` with verdict page views as the invalid
/// input; returns the final credits and the changelog of credits.
fn last_touch(
    feed: &Feed,
    events: &[Event],
) -> (BTreeMap<Credit, isize>, Vec<(Credit, Time, isize)>) {
    let log: Changelog = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let outcome = run(feed, events, move |events| {
        let invalid = events
            .clone()
            .filter(|event| event.kind == EventKind::PageView && event.event_id.0 >= VERDICT)
            .map(|event| flagged_by(&event));
        let config = AttributionConfig {
            models: vec![Model::LastTouch],
            ..AttributionConfig::default()
        };
        let sink = Arc::clone(&sink);
        events
            .attribute(invalid, &config)
            .credits
            .inspect(move |(credit, time, diff)| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((*credit, *time, *diff));
            })
    });
    let mut changelog = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    changelog.sort_by_key(|(credit, time, diff)| (*time, *credit, *diff));
    (outcome.output, changelog)
}

fn credited(output: &BTreeMap<Credit, isize>) -> Vec<(u128, i64)> {
    output
        .keys()
        .map(|credit| (credit.touch.0, credit.credit_micros))
        .collect()
}

/// Net changes to the credit of touch `n`, in time order.
fn history(changelog: &[(Credit, Time, isize)], n: u128) -> Vec<isize> {
    changelog
        .iter()
        .filter(|(credit, _, _)| credit.touch.0 == n)
        .map(|(_, _, diff)| *diff)
        .collect()
}

#[test]
fn a_late_click_takes_over_last_touch() {
    for workers in [1, 2] {
        let events = [
            event(1, EventKind::Click, 10),
            event(3, EventKind::Conversion, 60),
            event(4, EventKind::Impression, 70),
            // Arrives after the frontier passed the conversion, with an
            // older time: admitted as a correction at the frontier.
            event(2, EventKind::Click, 30),
        ];
        let (output, changelog) = last_touch(&one_at_a_time(workers), &events);
        assert_eq!(credited(&output), vec![(2, 9_000_000)]);
        assert_eq!(
            history(&changelog, 1),
            vec![1, -1],
            "click 1 credited, then retracted"
        );
        assert_eq!(history(&changelog, 2), vec![1]);
    }
}

#[test]
fn a_late_fraud_verdict_moves_credit() {
    for workers in [1, 2] {
        let events = [
            event(1, EventKind::Click, 10),
            event(2, EventKind::Click, 30),
            event(3, EventKind::Conversion, 60),
            verdict_on(2, 30, 90),
        ];
        let (output, changelog) = last_touch(&one_at_a_time(workers), &events);
        assert_eq!(credited(&output), vec![(1, 9_000_000)]);
        assert_eq!(
            history(&changelog, 2),
            vec![1, -1],
            "click 2 credited until flagged"
        );
        assert_eq!(history(&changelog, 1), vec![1]);
    }
}

#[test]
fn deleting_a_click_retracts_its_credit() {
    for workers in [1, 2] {
        let events = [
            event(1, EventKind::Click, 10),
            event(2, EventKind::Click, 30),
            event(3, EventKind::Conversion, 60),
            event(4, EventKind::Impression, 70),
            event(5, EventKind::Impression, 80),
        ];
        // Click 2 is deleted at the start of the next batch, at the frontier
        // (minute 70), after it earned the conversion's credit at minute 60.
        let feed = Feed {
            batch: 4,
            deletions: vec![1],
            every_worker_reads: false,
            ..one_at_a_time(workers)
        };
        let (output, changelog) = last_touch(&feed, &events);
        assert_eq!(credited(&output), vec![(1, 9_000_000)]);
        assert_eq!(history(&changelog, 2), vec![1, -1]);
        assert_eq!(history(&changelog, 1), vec![1]);
    }
}

fn attribute_once(events: &[Event], config: AttributionConfig) -> BTreeMap<Row, isize> {
    let outcome = run(&Feed::one_batch(), events, move |events| {
        let invalid = events
            .clone()
            .filter(|_| false)
            .map(|event| event_key(&event));
        rows(events.attribute(invalid, &config))
    });
    outcome.output
}

#[test]
fn clicks_outrank_views_and_windows_are_inclusive() {
    let config = AttributionConfig {
        models: vec![Model::Linear],
        click_window: 60 * MINUTE_MS,
        view_window: 10 * MINUTE_MS,
        horizon: None,
    };
    let touches = |output: &BTreeMap<Row, isize>| -> Vec<u128> {
        output
            .keys()
            .filter_map(|row| match row {
                Row::Credit(credit) => Some(credit.touch.0),
                _ => None,
            })
            .collect()
    };
    // The impression is closer, but the click (exactly 60 minutes back,
    // at the inclusive bound) outranks it.
    let output = attribute_once(
        &[
            event(1, EventKind::Click, 0),
            event(2, EventKind::Impression, 55),
            event(9, EventKind::Conversion, 60),
        ],
        config.clone(),
    );
    assert_eq!(touches(&output), vec![1]);
    // A click one millisecond beyond the window does not count, so the
    // impressions in the view window (10 minutes back, inclusive) do; the
    // impression after the conversion does not.
    let mut late_click = event(1, EventKind::Click, 0);
    late_click.ts -= 1;
    let output = attribute_once(
        &[
            late_click,
            event(2, EventKind::Impression, 50),
            event(3, EventKind::Impression, 55),
            event(4, EventKind::Impression, 61),
            event(5, EventKind::Impression, 49),
            event(9, EventKind::Conversion, 60),
        ],
        config.clone(),
    );
    assert_eq!(touches(&output), vec![2, 3]);
    // Nothing in either window: unattributed, revenue to no campaign, in
    // the conversion's country and device.
    let conversion = Event {
        country: Country(*b"DE"),
        device_type: DeviceType::Mobile,
        ..event(9, EventKind::Conversion, 60)
    };
    let output = attribute_once(&[event(5, EventKind::Impression, 49), conversion], config);
    assert_eq!(
        output,
        multiset([Row::Unattributed(Unattributed {
            conversion: conversion.event_id,
            conversion_ts: conversion.ts,
            revenue_micros: 9_000_000,
            country: Country(*b"DE"),
            device_type: DeviceType::Mobile,
        })])
    );
}

#[test]
fn simultaneous_touches_are_ordered_by_event_id() {
    // Same timestamp: event id 5 precedes 8 whatever the arrival order, so
    // first-touch credits 5 and last-touch 8.
    let config = AttributionConfig {
        models: vec![Model::FirstTouch, Model::LastTouch],
        ..AttributionConfig::default()
    };
    for events in [
        [
            event(8, EventKind::Click, 30),
            event(5, EventKind::Click, 30),
            event(9, EventKind::Conversion, 60),
        ],
        [
            event(5, EventKind::Click, 30),
            event(8, EventKind::Click, 30),
            event(9, EventKind::Conversion, 60),
        ],
    ] {
        let output = attribute_once(&events, config.clone());
        let credits: Vec<(Model, u128, u32)> = output
            .keys()
            .filter_map(|row| match row {
                Row::Credit(credit) => Some((credit.model, credit.touch.0, credit.position)),
                _ => None,
            })
            .collect();
        assert_eq!(
            credits,
            vec![(Model::LastTouch, 8, 1), (Model::FirstTouch, 5, 0)]
        );
    }
}

#[test]
fn campaign_days_add_fractional_conversions_exactly() {
    // Three clicks on three campaigns, linear: a third of a conversion each,
    // 333_334 + 333_333 + 333_333 micro-conversions; two conversions a day
    // apart land on different days.
    let config = AttributionConfig {
        models: vec![Model::Linear],
        ..AttributionConfig::default()
    };
    let mut next_day = event(10, EventKind::Conversion, 60 + 24 * 60);
    next_day.revenue_micros = 3_000_000;
    let output = attribute_once(
        &[
            event(1, EventKind::Click, 10),
            event(2, EventKind::Click, 20),
            event(3, EventKind::Click, 30),
            event(9, EventKind::Conversion, 60),
            next_day,
        ],
        config,
    );
    let days: Vec<(u64, i64, i64, i64)> = output
        .keys()
        .filter_map(|row| match row {
            Row::Day(day) => Some((
                day.campaign_id.get(),
                (day.day - START) / DAY_MS,
                day.conversion_micros,
                day.revenue_micros,
            )),
            _ => None,
        })
        .collect();
    let campaign = |n: u64| id(100 + n).get();
    let mut wanted = vec![
        (campaign(1), 0, 333_334, 3_000_000),
        (campaign(2), 0, 333_333, 3_000_000),
        (campaign(3), 0, 333_333, 3_000_000),
        (campaign(1), 1, 333_334, 1_000_000),
        (campaign(2), 1, 333_333, 1_000_000),
        (campaign(3), 1, 333_333, 1_000_000),
    ];
    wanted.sort();
    let mut days = days;
    days.sort();
    assert_eq!(days, wanted);
}
