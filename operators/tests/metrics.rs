//! The metrics family against its sequential reference: random streams fed
//! through the shared harness (shuffled arrival, batches, lateness,
//! deletions, 1 and 2 workers), with and without a horizon; the rollups'
//! consistency; and explicit corrections (a late fraud verdict, deletions)
//! checked update by update.
//!
//! The harness has one input, so fraud verdicts and conversion credits are
//! derived inside the dataflow from the events, by pure functions of each
//! event that the reference applies to the admitted events: verdicts on
//! some ids, arriving up to 20 minutes after their event time; last-touch
//! style credits (some unattributed, some split in two) of which some are
//! first given to a provisional campaign and moved 30 minutes later, as a
//! late click would move a last-touch credit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use adflow::event::{Country, DeviceType, Event, EventId, EventKind};
use adflow::pipeline::Time;
use adflow::sinks::{OutputRecord, Value};
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use adflow_operators::fraud::{event_key, EventKey};
use adflow_operators::metrics::{
    AttributedConversion, CampaignMetricsExt, Counters, Granularity, Invalid, MetricsConfig,
    MetricsKey, MetricsRow,
};
use adflow_operators::reference::metrics::metrics;
use adflow_operators::testing::{arb_events, arb_feed, id, multiset, run, Feed, START};
use differential_dataflow::collection::VecCollection;
use differential_dataflow::difference::Semigroup;
use differential_dataflow::input::Input;
use proptest::prelude::*;
use timely::dataflow::ProbeHandle;

/// Whether the fraud rules of these tests flag an event: some clicks and
/// some impressions, by id and kind.
fn flagged(event: &Event) -> bool {
    match event.kind {
        EventKind::Click => event.event_id.0 % 5 == 0,
        EventKind::Impression => event.event_id.0 % 7 == 0,
        EventKind::Conversion | EventKind::PageView => false,
    }
}

/// A small number derived from an event id.
fn pick(event: &Event, modulus: u128) -> i64 {
    i64::try_from(event.event_id.0 % modulus).unwrap_or(0)
}

/// A dataflow time from event time.
fn at(ms: Millis) -> Time {
    Time::try_from(ms).unwrap_or(0)
}

/// When the verdict on a flagged event arrives, in event time: 0, 10 or 20
/// minutes after the event (never before the event's own arrival).
fn verdict_time(event: &Event) -> Time {
    at(event.ts + pick(event, 3) * 10 * MINUTE_MS)
}

/// How long after the conversion a moved credit is moved.
const CREDIT_MOVE_MS: Millis = 30 * MINUTE_MS;

fn credit(event: &Event, campaign: Option<u64>, share: i64, revenue: i64) -> AttributedConversion {
    AttributedConversion {
        conversion: event.event_id,
        ts: event.ts,
        campaign_id: campaign.map(|c| id(100 + c)),
        ad_id: campaign
            .map(|c| id(200 + c * 10 + u64::from(event.device_type == DeviceType::Mobile))),
        country: event.country,
        device_type: event.device_type,
        conversions_micros: share,
        revenue_micros: revenue,
    }
}

/// The final credits of a conversion event: unattributed for a quarter of
/// the ids, split 40/60 between two campaigns for some, else one campaign.
fn final_credits(event: &Event) -> Vec<AttributedConversion> {
    if event.kind != EventKind::Conversion {
        return Vec::new();
    }
    let campaign = u64::try_from(pick(event, 3)).unwrap_or(0);
    match event.event_id.0 % 4 {
        0 => vec![credit(event, None, 1_000_000, event.revenue_micros)],
        1 => {
            let first = event.revenue_micros * 2 / 5;
            vec![
                credit(event, Some(campaign), 400_000, first),
                credit(
                    event,
                    Some((campaign + 1) % 3),
                    600_000,
                    event.revenue_micros - first,
                ),
            ]
        }
        _ => vec![credit(
            event,
            Some(campaign),
            1_000_000,
            event.revenue_micros,
        )],
    }
}

/// The credit updates of a conversion event, in event time: some credits
/// go to a provisional campaign first and are moved `CREDIT_MOVE_MS` later.
fn credit_updates(event: &Event) -> Vec<(AttributedConversion, Time, isize)> {
    let finals = final_credits(event);
    if finals.is_empty() || pick(event, 3) != 0 {
        return finals.into_iter().map(|c| (c, at(event.ts), 1)).collect();
    }
    let moved = at(event.ts + CREDIT_MOVE_MS);
    let provisional = credit(event, Some(7), 1_000_000, event.revenue_micros);
    let mut updates = vec![(provisional, at(event.ts), 1), (provisional, moved, -1)];
    updates.extend(finals.into_iter().map(|c| (c, moved, 1)));
    updates
}

/// The credits of the conversions among `events`, as [`credit_updates`].
fn credits<'scope>(
    events: &VecCollection<'scope, Time, Event>,
) -> VecCollection<'scope, Time, AttributedConversion> {
    events
        .clone()
        .filter(|event| event.kind == EventKind::Conversion)
        .join_function(|event| credit_updates(&event))
}

/// The metrics dataflow with verdicts and credits derived from `events`;
/// all three granularities in one collection.
fn build<'scope>(
    events: VecCollection<'scope, Time, Event>,
    config: MetricsConfig,
) -> VecCollection<'scope, Time, MetricsRow> {
    let invalid = Invalid::events(verdicts(&events));
    let conversions = credits(&events);
    let metrics = events.campaign_metrics(Some(invalid), conversions, &config);
    metrics.hourly.concat(metrics.daily).concat(metrics.monthly)
}

/// The flagged events, each at its [`verdict_time`].
fn verdicts<'scope>(
    events: &VecCollection<'scope, Time, Event>,
) -> VecCollection<'scope, Time, EventKey> {
    events
        .clone()
        .filter(flagged)
        .join_function(|event| Some((event_key(&event), verdict_time(&event), 1isize)))
}

/// As [`build`], with impressions judged on arrival (as the pipeline judges
/// them): their verdicts in the ids, which still come late, are not looked
/// up, and only clicks are held by key.
fn build_judged<'scope>(
    events: VecCollection<'scope, Time, Event>,
    config: MetricsConfig,
) -> VecCollection<'scope, Time, MetricsRow> {
    let invalid = Invalid::events(verdicts(&events))
        .judged_on_arrival(|event| (event.kind == EventKind::Impression).then(|| flagged(event)));
    let conversions = credits(&events);
    let metrics = events.campaign_metrics(Some(invalid), conversions, &config);
    metrics.hourly.concat(metrics.daily).concat(metrics.monthly)
}

/// The metrics dataflow with credits but no verdicts at all (`None`: no
/// touch is held by key) and, unless `config` asks for them, no rollups.
fn build_without_verdicts<'scope>(
    events: VecCollection<'scope, Time, Event>,
    config: MetricsConfig,
) -> VecCollection<'scope, Time, MetricsRow> {
    let conversions = credits(&events);
    let metrics = events.campaign_metrics(None, conversions, &config);
    metrics.hourly.concat(metrics.daily).concat(metrics.monthly)
}

/// The reference's hourly rows on the admitted events, with no verdicts.
fn expected_hourly_without_verdicts(admitted: &[Event]) -> BTreeMap<MetricsRow, isize> {
    let credits: Vec<AttributedConversion> = admitted.iter().flat_map(final_credits).collect();
    let (hourly, _, _) = metrics(admitted, &BTreeSet::new(), &credits);
    multiset(hourly)
}

/// The reference on the admitted events, with the same verdicts and credits.
fn expected(admitted: &[Event]) -> BTreeMap<MetricsRow, isize> {
    let invalid: BTreeSet<EventKey> = admitted
        .iter()
        .filter(|event| flagged(event))
        .map(event_key)
        .collect();
    let credits: Vec<AttributedConversion> = admitted.iter().flat_map(final_credits).collect();
    let (hourly, daily, monthly) = metrics(admitted, &invalid, &credits);
    multiset(hourly.into_iter().chain(daily).chain(monthly))
}

/// Event ids made unique per (id, time), as deduplicated input has them;
/// exact resends keep sharing theirs.
fn unique_ids(events: Vec<Event>) -> Vec<Event> {
    events
        .into_iter()
        .map(|event| Event {
            event_id: EventId(event.event_id.0 + 1_000 * u128::try_from(event.ts).unwrap_or(0)),
            ..event
        })
        .collect()
}

fn events_and_feed(max: usize) -> impl Strategy<Value = (Vec<Event>, Feed)> {
    arb_events(max).prop_flat_map(|events| {
        let len = events.len();
        (Just(events), arb_feed(len))
    })
}

/// Sums rows per key after rebucketing to `granularity`, as `granularity` rows.
fn rolled_up(rows: &[MetricsRow], granularity: Granularity) -> BTreeSet<MetricsRow> {
    let mut totals: BTreeMap<MetricsKey, Counters> = BTreeMap::new();
    for row in rows {
        let mut key = row.key();
        key.bucket = granularity.bucket(row.bucket);
        totals.entry(key).or_default().plus_equals(&row.counters());
    }
    totals
        .into_iter()
        .map(|(key, counters)| MetricsRow::new(granularity, key, counters))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn dataflow_matches_reference((events, feed) in events_and_feed(120)) {
        let outcome = run(&feed, &events, |events| build(events, MetricsConfig::default()));
        prop_assert_eq!(outcome.output, expected(&outcome.admitted));
    }

    #[test]
    fn bounded_state_matches_reference(
        (events, feed) in events_and_feed(120),
        horizon in prop_oneof![Just(30 * MINUTE_MS), Just(2 * HOUR_MS), Just(DAY_MS)],
    ) {
        // The horizon's contract: nothing concerning an event arrives later
        // than its time plus the horizon, so deletions (one batch later,
        // unboundedly late) are left out, and event ids are unique.
        let mut feed = Feed { deletions: Vec::new(), ..feed };
        feed.time.horizon = Some(horizon);
        let config = MetricsConfig {
            horizon: Some(horizon),
            ..MetricsConfig::default()
        };
        let outcome = run(&feed, &unique_ids(events), move |events| build(events, config));
        prop_assert_eq!(outcome.output, expected(&outcome.admitted));
    }

    #[test]
    fn judged_on_arrival_matches_reference(
        (events, feed) in events_and_feed(120),
        horizon in prop_oneof![Just(None), Just(Some(30 * MINUTE_MS)), Just(Some(DAY_MS))],
    ) {
        // Ids are reused by different events (at other times: a judged
        // impression's verdict must agree with the flagged events, which
        // another event with its id and time could contradict). With a
        // horizon, unique ids and no deletions, as in
        // `bounded_state_matches_reference`.
        let (mut feed, mut events) = (feed, events);
        if horizon.is_some() {
            feed.deletions.clear();
            feed.time.horizon = horizon;
            events = unique_ids(events);
        }
        let config = MetricsConfig { horizon, ..MetricsConfig::default() };
        let outcome = run(&feed, &events, move |events| build_judged(events, config));
        prop_assert_eq!(outcome.output, expected(&outcome.admitted));
    }

    #[test]
    fn without_verdicts_or_rollups_matches_reference(
        (events, feed) in events_and_feed(120),
        horizon in prop_oneof![Just(None), Just(Some(30 * MINUTE_MS)), Just(Some(DAY_MS))],
    ) {
        // As in `bounded_state_matches_reference`: a horizon's contract
        // leaves out unboundedly late deletions and wants unique ids.
        let (feed, events) = match horizon {
            Some(_) => {
                let mut feed = Feed { deletions: Vec::new(), ..feed };
                feed.time.horizon = horizon;
                (feed, unique_ids(events))
            }
            None => (feed, events),
        };
        let config = MetricsConfig { horizon, rollups: false };
        let outcome = run(&feed, &events, move |events| build_without_verdicts(events, config));
        prop_assert_eq!(outcome.output, expected_hourly_without_verdicts(&outcome.admitted));
    }

    #[test]
    fn rollups_sum_the_finer_rows((events, feed) in events_and_feed(120)) {
        let outcome = run(&feed, &events, |events| build(events, MetricsConfig::default()));
        let mut by_granularity: BTreeMap<Granularity, Vec<MetricsRow>> = BTreeMap::new();
        for (row, count) in &outcome.output {
            prop_assert_eq!(*count, 1, "one row per key: {:?}", row);
            by_granularity.entry(row.granularity).or_default().push(*row);
        }
        let rows = |granularity| by_granularity.get(&granularity).cloned().unwrap_or_default();
        let (hourly, daily, monthly) = (rows(Granularity::Hour), rows(Granularity::Day), rows(Granularity::Month));
        let daily_set: BTreeSet<MetricsRow> = daily.iter().copied().collect();
        let monthly_set: BTreeSet<MetricsRow> = monthly.iter().copied().collect();
        prop_assert_eq!(&rolled_up(&hourly, Granularity::Day), &daily_set);
        prop_assert_eq!(&rolled_up(&daily, Granularity::Month), &monthly_set);
        prop_assert_eq!(&rolled_up(&hourly, Granularity::Month), &monthly_set);
    }
}

/// One round of explicit input: updates at a dataflow time.
#[derive(Default)]
struct Round {
    at: Time,
    events: Vec<(Event, isize)>,
    invalid: Vec<(EventKey, isize)>,
    conversions: Vec<(AttributedConversion, isize)>,
}

/// Feeds the rounds in order on one worker, running the dataflow to each
/// round's time, and returns the consolidated changelog of all three
/// outputs: `(time, row, diff)` sorted.
fn changelog(rounds: Vec<Round>, config: MetricsConfig) -> Vec<(Time, MetricsRow, isize)> {
    let seen = Arc::new(Mutex::new(BTreeMap::<(Time, MetricsRow), isize>::new()));
    let sink = Arc::clone(&seen);
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut events, mut invalid, mut conversions) = worker.dataflow::<Time, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (invalid_in, invalid) = scope.new_collection::<EventKey, isize>();
            let (conversions_in, conversions) =
                scope.new_collection::<AttributedConversion, isize>();
            let metrics =
                events.campaign_metrics(Some(Invalid::events(invalid)), conversions, &config);
            let sink = Arc::clone(&sink);
            metrics
                .hourly
                .concat(metrics.daily)
                .concat(metrics.monthly)
                .inspect(move |(row, time, diff)| {
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    *log.entry((*time, *row)).or_insert(0) += diff;
                })
                .probe_with(&probe);
            (events_in, invalid_in, conversions_in)
        });
        for round in rounds {
            events.advance_to(round.at);
            invalid.advance_to(round.at);
            conversions.advance_to(round.at);
            for (event, diff) in round.events {
                events.update(event, diff);
            }
            for (event_id, diff) in round.invalid {
                invalid.update(event_id, diff);
            }
            for (credit, diff) in round.conversions {
                conversions.update(credit, diff);
            }
            let next = round.at + 1;
            events.advance_to(next);
            invalid.advance_to(next);
            conversions.advance_to(next);
            events.flush();
            invalid.flush();
            conversions.flush();
            worker.step_while(|| probe.less_than(&next));
        }
    });
    let log = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    log.into_iter()
        .filter(|(_, diff)| *diff != 0)
        .map(|((time, row), diff)| (time, row, diff))
        .collect()
}

/// 2026-11-01T10:00:00Z.
const TEN: Millis = START + 10 * HOUR_MS;

fn event(kind: EventKind, n: u128, ts: Millis, ad: u64, cost_micros: i64) -> Event {
    Event {
        ts,
        kind,
        event_id: EventId(n),
        user_id: Some(id(1)),
        device_id: None,
        campaign_id: Some(id(100)),
        ad_id: Some(id(200 + ad)),
        publisher_id: None,
        ip: None,
        user_agent: None,
        agent: adflow::event::AgentClass::Browser,
        country: Country(*b"US"),
        device_type: DeviceType::Desktop,
        cost_micros,
        revenue_micros: 0,
        conversion_type: None,
        order_id: None,
    }
}

/// The same change at all three granularities: `(time, row, diff)` for each.
fn at_every_granularity(
    time: Time,
    key: MetricsKey,
    counters: Counters,
    diff: isize,
) -> Vec<(Time, MetricsRow, isize)> {
    [Granularity::Hour, Granularity::Day, Granularity::Month]
        .into_iter()
        .map(|granularity| {
            let key = MetricsKey {
                bucket: granularity.bucket(key.bucket),
                ..key
            };
            (time, MetricsRow::new(granularity, key, counters), diff)
        })
        .collect()
}

fn sorted(mut updates: Vec<(Time, MetricsRow, isize)>) -> Vec<(Time, MetricsRow, isize)> {
    updates.sort();
    updates
}

#[test]
fn late_verdict_moves_a_click_to_invalid_and_out_of_the_cost() {
    let impression = event(EventKind::Impression, 1, TEN + MINUTE_MS, 0, 2_000);
    let click = event(EventKind::Click, 2, TEN + 2 * MINUTE_MS, 0, 500_000);
    let (first, verdict) = (at(TEN + 5 * MINUTE_MS), at(TEN + 3 * HOUR_MS));
    let log = changelog(
        vec![
            Round {
                at: first,
                events: vec![(impression, 1), (click, 1)],
                ..Round::default()
            },
            Round {
                at: verdict,
                invalid: vec![(event_key(&click), 1)],
                ..Round::default()
            },
        ],
        MetricsConfig::default(),
    );
    let key = MetricsKey {
        bucket: TEN,
        campaign_id: Some(id(100)),
        ad_id: Some(id(200)),
        country: Country(*b"US"),
        device_type: DeviceType::Desktop,
    };
    let billed = Counters {
        impressions: 1,
        clicks: 1,
        cost_micros: 502_000,
        ..Counters::default()
    };
    let corrected = Counters {
        invalid_clicks: 1,
        cost_micros: 2_000,
        ..billed
    };
    let mut expected = at_every_granularity(first, key, billed, 1);
    expected.extend(at_every_granularity(verdict, key, billed, -1));
    expected.extend(at_every_granularity(verdict, key, corrected, 1));
    assert_eq!(log, sorted(expected));
    let hourly = MetricsRow::new(Granularity::Hour, key, corrected);
    assert_eq!(
        (hourly.clicks, hourly.valid_clicks, hourly.invalid_clicks),
        (1, 0, 1)
    );
    assert_eq!((hourly.cpc(), hourly.cpm()), (None, Some(2.0)));
}

#[test]
fn verdict_before_its_event_counts_the_event_invalid_at_once() {
    // The verdict even arrives in the previous hour, a few seconds ahead
    // of its event. It must outlive the click's hour, or retiring it would
    // unflag the click before the hour is frozen: it is retired by its
    // event's time, not by its own arrival.
    let click = event(EventKind::Click, 3, TEN + 10 * SECOND_MS, 0, 500_000);
    let (verdict, arrival) = (at(TEN - 5 * SECOND_MS), at(TEN + MINUTE_MS));
    let log = changelog(
        vec![
            Round {
                at: verdict,
                invalid: vec![(event_key(&click), 1), (event_key(&click), 1)],
                ..Round::default()
            },
            Round {
                at: arrival,
                events: vec![(click, 1)],
                ..Round::default()
            },
        ],
        MetricsConfig {
            horizon: Some(HOUR_MS),
            ..MetricsConfig::default()
        },
    );
    let key = MetricsKey {
        bucket: TEN,
        campaign_id: click.campaign_id,
        ad_id: click.ad_id,
        country: click.country,
        device_type: click.device_type,
    };
    // Two verdicts on one id count once; the click is never billed.
    let counters = Counters {
        clicks: 1,
        invalid_clicks: 1,
        ..Counters::default()
    };
    assert_eq!(log, sorted(at_every_granularity(arrival, key, counters, 1)));
}

#[test]
fn a_verdict_flags_its_event_not_a_later_one_reusing_its_id() {
    let first = event(EventKind::Click, 3, TEN + 10 * SECOND_MS, 0, 500_000);
    let reused = Event {
        ts: first.ts + DAY_MS,
        ..first
    };
    let log = changelog(
        vec![
            Round {
                at: at(first.ts),
                events: vec![(first, 1)],
                invalid: vec![(event_key(&first), 1)],
                ..Round::default()
            },
            Round {
                at: at(reused.ts),
                events: vec![(reused, 1)],
                ..Round::default()
            },
        ],
        MetricsConfig::default(),
    );
    let mut hourly: BTreeMap<MetricsRow, isize> = BTreeMap::new();
    for (_, row, diff) in log {
        if row.granularity == Granularity::Hour {
            *hourly.entry(row).or_insert(0) += diff;
        }
    }
    hourly.retain(|_, count| *count != 0);
    let clicks: Vec<(Millis, i64, i64)> = hourly
        .keys()
        .map(|row| (row.bucket, row.valid_clicks, row.invalid_clicks))
        .collect();
    assert_eq!(clicks, vec![(TEN, 0, 1), (TEN + DAY_MS, 1, 0)]);
}

#[test]
fn deleting_impressions_retracts_them_from_hour_day_and_month() {
    let kept = event(EventKind::Impression, 10, TEN + MINUTE_MS, 0, 1_000);
    let deleted = event(EventKind::Impression, 11, TEN + 2 * MINUTE_MS, 0, 3_000);
    let alone = event(EventKind::Impression, 12, TEN + 3 * MINUTE_MS, 1, 5_000);
    let (insert, delete) = (at(TEN + 10 * MINUTE_MS), at(TEN + 2 * HOUR_MS));
    let log = changelog(
        vec![
            Round {
                at: insert,
                events: vec![(kept, 1), (deleted, 1), (alone, 1)],
                ..Round::default()
            },
            Round {
                at: delete,
                events: vec![(deleted, -1), (alone, -1)],
                ..Round::default()
            },
        ],
        MetricsConfig::default(),
    );
    let key_of = |event: &Event| MetricsKey {
        bucket: TEN,
        campaign_id: event.campaign_id,
        ad_id: event.ad_id,
        country: event.country,
        device_type: event.device_type,
    };
    let impressions = |count, cost_micros| Counters {
        impressions: count,
        cost_micros,
        ..Counters::default()
    };
    let mut expected = at_every_granularity(insert, key_of(&kept), impressions(2, 4_000), 1);
    expected.extend(at_every_granularity(
        insert,
        key_of(&alone),
        impressions(1, 5_000),
        1,
    ));
    expected.extend(at_every_granularity(
        delete,
        key_of(&kept),
        impressions(2, 4_000),
        -1,
    ));
    expected.extend(at_every_granularity(
        delete,
        key_of(&kept),
        impressions(1, 1_000),
        1,
    ));
    expected.extend(at_every_granularity(
        delete,
        key_of(&alone),
        impressions(1, 5_000),
        -1,
    ));
    assert_eq!(log, sorted(expected));
}

#[test]
fn credits_count_in_the_conversion_hour_and_move_with_the_credit() {
    let conversion = EventId(20);
    let ts = TEN + 59 * MINUTE_MS;
    let credit = |campaign: Option<u64>| AttributedConversion {
        conversion,
        ts,
        campaign_id: campaign.map(id),
        ad_id: campaign.map(|c| id(c + 100)),
        country: Country(*b"DE"),
        device_type: DeviceType::Mobile,
        conversions_micros: 1_000_000,
        revenue_micros: 42_000_000,
    };
    let (first, moved) = (at(ts), at(ts + 10 * MINUTE_MS));
    let log = changelog(
        vec![
            Round {
                at: first,
                conversions: vec![(credit(None), 1)],
                ..Round::default()
            },
            Round {
                at: moved,
                conversions: vec![(credit(None), -1), (credit(Some(5)), 1)],
                ..Round::default()
            },
        ],
        MetricsConfig {
            horizon: Some(HOUR_MS),
            ..MetricsConfig::default()
        },
    );
    let key_of = |campaign: Option<u64>| MetricsKey {
        bucket: TEN,
        campaign_id: campaign.map(id),
        ad_id: campaign.map(|c| id(c + 100)),
        country: Country(*b"DE"),
        device_type: DeviceType::Mobile,
    };
    let counters = Counters {
        conversions_micros: 1_000_000,
        revenue_micros: 42_000_000,
        ..Counters::default()
    };
    let mut expected = at_every_granularity(first, key_of(None), counters, 1);
    expected.extend(at_every_granularity(moved, key_of(None), counters, -1));
    expected.extend(at_every_granularity(moved, key_of(Some(5)), counters, 1));
    assert_eq!(log, sorted(expected));
}

#[test]
fn rows_freeze_once_their_horizon_has_passed() {
    // With a one-hour horizon the 10:00 hour expires at 12:00. A deletion
    // arriving then is beyond the contract: it changes no row, at any
    // granularity (days and months sum the frozen hours), and neither do
    // the retractions that retire the state, however far time advances.
    let impression = event(EventKind::Impression, 30, TEN, 0, 1_000);
    let (insert, too_late) = (at(TEN), at(TEN + 2 * HOUR_MS));
    let log = changelog(
        vec![
            Round {
                at: insert,
                events: vec![(impression, 1)],
                ..Round::default()
            },
            Round {
                at: too_late,
                events: vec![(impression, -1)],
                ..Round::default()
            },
            Round {
                at: at(TEN + 40 * DAY_MS),
                ..Round::default()
            },
        ],
        MetricsConfig {
            horizon: Some(HOUR_MS),
            ..MetricsConfig::default()
        },
    );
    let key = MetricsKey {
        bucket: TEN,
        campaign_id: impression.campaign_id,
        ad_id: impression.ad_id,
        country: impression.country,
        device_type: impression.device_type,
    };
    let counters = Counters {
        impressions: 1,
        cost_micros: 1_000,
        ..Counters::default()
    };
    assert_eq!(log, sorted(at_every_granularity(insert, key, counters, 1)));
}

#[test]
fn rows_render_ids_as_hex_and_undefined_ratios_as_null() {
    let key = MetricsKey {
        bucket: TEN,
        campaign_id: Some(id(0xab)),
        ad_id: None,
        country: Country(*b"IN"),
        device_type: DeviceType::Tablet,
    };
    let counters = Counters {
        impressions: 4,
        cost_micros: 8_000,
        // A view-through conversion split between two ads: half of one
        // here, and another whole one.
        conversions_micros: 1_500_000,
        ..Counters::default()
    };
    let row = MetricsRow::new(Granularity::Day, key, counters);
    let columns = MetricsRow::columns();
    let values = row.values();
    assert_eq!(columns.len(), values.len());
    assert!(columns
        .iter()
        .zip(&values)
        .all(|(column, value)| value.fits(column.ty)));
    let value = |name: &str| {
        columns
            .iter()
            .position(|column| column.name == name)
            .map(|index| values[index].clone())
    };
    assert_eq!(value("granularity"), Some(Value::Text("day".into())));
    assert_eq!(value("bucket"), Some(Value::Time(TEN)));
    assert_eq!(
        value("campaign_id"),
        Some(Value::Text("00000000000000ac".into()))
    );
    assert_eq!(value("ad_id"), Some(Value::Null));
    assert_eq!(value("country"), Some(Value::Text("IN".into())));
    assert_eq!(value("device_type"), Some(Value::Text("tablet".into())));
    assert_eq!(value("impressions"), Some(Value::I64(4)));
    assert_eq!(value("cost"), Some(Value::Money(8_000)));
    assert_eq!(value("cpm"), Some(Value::F64(2.0)));
    assert_eq!(value("ctr"), Some(Value::F64(0.0)));
    assert_eq!(value("roas"), Some(Value::F64(0.0)));
    assert_eq!(value("conversions"), Some(Value::F64(1.5)));
    assert_eq!(value("conversions_micros"), Some(Value::I64(1_500_000)));
    assert_eq!(value("cpa"), Some(Value::F64(0.008 / 1.5)));
    for undefined in ["cvr", "cpc"] {
        assert_eq!(value(undefined), Some(Value::Null), "{undefined}");
    }
}
