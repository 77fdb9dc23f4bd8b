//! The dedup family against its reference: random streams fed in random
//! ways (1, 2 and 4 workers, batch sizes, lateness, late corrections,
//! deletions), with and without a horizon; hand-checked cases; the
//! changelogs of corrections; and state that stays bounded on a long
//! stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use adflow::event::{AgentClass, Country, DeviceType, Event, EventId, EventKind};
use adflow::pipeline::{Time, TimeConfig};
use adflow::sinks::OutputRecord;
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use adflow_operators::dedup::{DedupConfig, DedupExt, DedupGauge, Duplicate, DuplicateReason};
use adflow_operators::reference::dedup::dedup;
use adflow_operators::testing::{arb_events, arb_feed, id, multiset, run, Feed, START};
use differential_dataflow::collection::VecCollection;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Both outputs in one collection, so one run checks both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Out {
    Unique(Event),
    Duplicate(Duplicate),
}

fn outputs<'scope>(
    events: VecCollection<'scope, Time, Event>,
    config: &DedupConfig,
    gauge: &DedupGauge,
) -> VecCollection<'scope, Time, Out> {
    let deduplicated = events.dedup_by_event_id_core("Dedup", config, gauge);
    deduplicated
        .unique
        .map(Out::Unique)
        .concat(deduplicated.duplicates.map(Out::Duplicate))
}

fn expected(events: &[Event], config: &DedupConfig) -> BTreeMap<Out, isize> {
    let (unique, duplicates) = dedup(events, config);
    multiset(
        unique
            .into_iter()
            .map(Out::Unique)
            .chain(duplicates.into_iter().map(Out::Duplicate)),
    )
}

/// Runs dedup over `events` fed by `feed`, checks the result against the
/// reference on the admitted events, and returns the changelog: every
/// update, consolidated per (time, record).
fn run_checked(
    feed: &Feed,
    events: &[Event],
    config: DedupConfig,
    gauge: &DedupGauge,
) -> (BTreeMap<(Time, Out), isize>, Vec<Event>) {
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let sink = Arc::clone(&log);
    let gauge = gauge.clone();
    let outcome = run(feed, events, move |events| {
        let sink = Arc::clone(&sink);
        outputs(events, &config, &gauge).inspect(move |(out, time, diff)| {
            let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
            *log.entry((*time, *out)).or_insert(0) += diff;
        })
    });
    assert_eq!(outcome.output, expected(&outcome.admitted, &config));
    let mut log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    log.retain(|_, diff| *diff != 0);
    (log, outcome.admitted)
}

fn arb_window() -> impl Strategy<Value = Millis> {
    prop_oneof![
        Just(0),
        Just(10 * MINUTE_MS),
        Just(HOUR_MS),
        Just(6 * HOUR_MS),
        Just(DAY_MS)
    ]
}

fn arb_case() -> impl Strategy<Value = (Vec<Event>, Feed, Millis)> {
    arb_events(60).prop_flat_map(|events| {
        let len = events.len();
        (Just(events), arb_feed(len), arb_window())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// No horizon: every admitted event counts, deletions included.
    #[test]
    fn matches_reference((events, feed, window) in arb_case()) {
        let config = DedupConfig { window, horizon: None };
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &config));
    }

    /// With a horizon the operator forgets expired groups; the result is
    /// still exactly the reference's on what was admitted (events beyond
    /// the horizon are dead-lettered by the feed, not admitted).
    #[test]
    fn matches_reference_with_horizon(
        (events, feed, window) in arb_case(),
        horizon in prop_oneof![Just(0), Just(MINUTE_MS), Just(HOUR_MS), Just(6 * HOUR_MS)],
    ) {
        let mut feed = Feed { deletions: Vec::new(), ..feed };
        feed.time.horizon = Some(horizon);
        let config = DedupConfig { window, horizon: Some(horizon) };
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &config));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Four workers, with and without a horizon.
    #[test]
    fn matches_reference_on_four_workers(
        (events, feed, window) in arb_case(),
        horizon in prop_oneof![Just(None), Just(Some(HOUR_MS))],
    ) {
        let mut feed = Feed { workers: 4, ..feed };
        if horizon.is_some() {
            feed.deletions.clear();
        }
        feed.time.horizon = horizon;
        let config = DedupConfig { window, horizon };
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        prop_assert_eq!(outcome.output, expected(&outcome.admitted, &config));
    }
}

/// An event with every field set; `user` 0 means "no user, device 1".
fn event(event_id: u128, kind: EventKind, ts: Millis, user: u64, order: Option<u64>) -> Event {
    let placed = matches!(kind, EventKind::Impression | EventKind::Click);
    Event {
        ts,
        kind,
        event_id: EventId(event_id),
        user_id: (user > 0).then(|| id(user)),
        device_id: Some(id(1)),
        campaign_id: placed.then(|| id(100)),
        ad_id: placed.then(|| id(200)),
        publisher_id: None,
        ip: None,
        user_agent: None,
        agent: AgentClass::Browser,
        country: Country(*b"US"),
        device_type: DeviceType::Mobile,
        cost_micros: if placed { 1_000 } else { 0 },
        revenue_micros: if kind == EventKind::Conversion {
            9_000_000
        } else {
            0
        },
        conversion_type: None,
        order_id: order.map(|order| id(600 + order)),
    }
}

fn click(event_id: u128, ts: Millis) -> Event {
    event(event_id, EventKind::Click, ts, 7, None)
}

fn duplicate(copy: &Event, kept: &Event, reason: DuplicateReason) -> Out {
    Out::Duplicate(Duplicate::of(copy, kept, reason))
}

/// Millisecond ticks and a watermark right at the largest event time, so
/// each batch moves the frontier and later batches arrive as corrections.
fn stepwise(batch: usize, deletions: Vec<usize>) -> Feed {
    Feed {
        workers: 1,
        batch,
        time: TimeConfig {
            tick: 1,
            allowed_lateness: Some(0),
            horizon: None,
            ..TimeConfig::backfill()
        },
        deletions,
        every_worker_reads: false,
    }
}

fn at(ts: Millis) -> Time {
    Time::try_from(ts).unwrap_or(0)
}

#[test]
fn exact_resends_are_one_kept_copy_and_duplicates() {
    let first = click(1, START);
    let events = [first, first, first, click(2, START)];
    let config = DedupConfig::default();
    let (unique, duplicates) = dedup(&events, &config);
    assert_eq!(unique, vec![first, click(2, START)]);
    assert_eq!(
        duplicates,
        vec![Duplicate::of(&first, &first, DuplicateReason::EventId); 2]
    );
    for feed in [Feed::one_batch(), stepwise(1, Vec::new())] {
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        assert_eq!(
            outcome.output,
            BTreeMap::from([
                (Out::Unique(first), 1),
                (Out::Unique(click(2, START)), 1),
                (duplicate(&first, &first, DuplicateReason::EventId), 2),
            ])
        );
    }
}

#[test]
fn the_window_chains_from_anchors_not_from_duplicates() {
    let window = HOUR_MS;
    let anchor = click(1, START);
    let inside = click(1, START + window - 1);
    // Within the window of `inside`, but `inside` is no anchor: kept.
    let boundary = click(1, START + window);
    let after = click(1, START + window + 1);
    let events = [after, boundary, inside, anchor];
    let config = DedupConfig {
        window,
        horizon: None,
    };
    let want = BTreeMap::from([
        (Out::Unique(anchor), 1),
        (duplicate(&inside, &anchor, DuplicateReason::EventId), 1),
        (Out::Unique(boundary), 1),
        (duplicate(&after, &boundary, DuplicateReason::EventId), 1),
    ]);
    assert_eq!(expected(&events, &config), want);
    for feed in [Feed::one_batch(), stepwise(1, Vec::new())] {
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        assert_eq!(outcome.output, want);
    }
    // A window of zero makes nothing a duplicate, not even a resend.
    let config = DedupConfig {
        window: 0,
        horizon: None,
    };
    let outcome = run(&Feed::one_batch(), &[anchor, anchor], move |events| {
        outputs(events, &config, &DedupGauge::default())
    });
    assert_eq!(outcome.output, BTreeMap::from([(Out::Unique(anchor), 2)]));
}

#[test]
fn conversions_are_deduplicated_by_user_and_order() {
    use EventKind::Conversion;
    let order = event(10, Conversion, START, 7, Some(1));
    // A resend of the same conversion: a duplicate by event id, and not
    // considered again by order.
    let resend = event(10, Conversion, START + SECOND_MS, 7, Some(1));
    // Same user and order, new event id: a duplicate by order id.
    let reorder = event(11, Conversion, START + MINUTE_MS, 7, Some(1));
    // Another user, or the same user with another order: kept.
    let other_user = event(12, Conversion, START + MINUTE_MS, 8, Some(1));
    let other_order = event(13, Conversion, START + MINUTE_MS, 7, Some(2));
    // No user: keyed by device.
    let by_device = event(14, Conversion, START, 0, Some(1));
    let by_device_again = event(15, Conversion, START + HOUR_MS, 0, Some(1));
    // No order id: only deduplicated by event id.
    let no_order = event(16, Conversion, START, 7, None);
    let no_order_either = event(17, Conversion, START, 7, None);
    // Outside the window of the first order: a new anchor.
    let next_day = event(18, Conversion, START + DAY_MS, 7, Some(1));
    let events = [
        next_day,
        no_order_either,
        no_order,
        by_device_again,
        by_device,
        other_order,
        other_user,
        reorder,
        resend,
        order,
    ];
    let config = DedupConfig::default();
    let want = BTreeMap::from([
        (Out::Unique(order), 1),
        (duplicate(&resend, &order, DuplicateReason::EventId), 1),
        (duplicate(&reorder, &order, DuplicateReason::OrderId), 1),
        (Out::Unique(other_user), 1),
        (Out::Unique(other_order), 1),
        (Out::Unique(by_device), 1),
        (
            duplicate(&by_device_again, &by_device, DuplicateReason::OrderId),
            1,
        ),
        (Out::Unique(no_order), 1),
        (Out::Unique(no_order_either), 1),
        (Out::Unique(next_day), 1),
    ]);
    assert_eq!(expected(&events, &config), want);
    for workers in [1, 2] {
        let feed = Feed {
            workers,
            ..stepwise(2, Vec::new())
        };
        let (_, admitted) = run_checked(&feed, &events, config, &DedupGauge::default());
        assert_eq!(admitted.len(), events.len());
        let outcome = run(&feed, &events, move |events| {
            outputs(events, &config, &DedupGauge::default())
        });
        assert_eq!(outcome.output, want);
    }
}

#[test]
fn deleting_the_kept_copy_promotes_the_duplicate() {
    let kept = click(1, START);
    let copy = click(1, START + MINUTE_MS);
    let other = click(2, START + 10 * MINUTE_MS);
    // One batch, then the deletion of `kept` at the frontier it reached.
    let feed = stepwise(3, vec![0]);
    let (log, admitted) = run_checked(
        &feed,
        &[kept, copy, other],
        DedupConfig::default(),
        &DedupGauge::default(),
    );
    assert_eq!(admitted, vec![copy, other]);
    let deleted_at = at(other.ts);
    assert_eq!(
        log,
        BTreeMap::from([
            ((at(kept.ts), Out::Unique(kept)), 1),
            (
                (
                    at(copy.ts),
                    duplicate(&copy, &kept, DuplicateReason::EventId)
                ),
                1
            ),
            ((at(other.ts), Out::Unique(other)), 1),
            // The corrections: retract the old decisions, assert the new.
            ((deleted_at, Out::Unique(kept)), -1),
            (
                (
                    deleted_at,
                    duplicate(&copy, &kept, DuplicateReason::EventId)
                ),
                -1
            ),
            ((deleted_at, Out::Unique(copy)), 1),
        ])
    );
}

#[test]
fn a_late_copy_after_the_anchor_becomes_a_duplicate() {
    let kept = click(1, START + HOUR_MS);
    let other = click(2, START + 2 * HOUR_MS);
    // Arrives in the second batch, behind the frontier (`other.ts`).
    let late = click(1, START + HOUR_MS + 30 * MINUTE_MS);
    let (log, admitted) = run_checked(
        &stepwise(2, Vec::new()),
        &[kept, other, late],
        DedupConfig::default(),
        &DedupGauge::default(),
    );
    assert_eq!(admitted.len(), 3);
    let frontier = at(other.ts);
    assert_eq!(
        log,
        BTreeMap::from([
            ((at(kept.ts), Out::Unique(kept)), 1),
            ((at(other.ts), Out::Unique(other)), 1),
            // Admitted at the frontier; the kept copy does not change.
            (
                (frontier, duplicate(&late, &kept, DuplicateReason::EventId)),
                1
            ),
        ])
    );
}

#[test]
fn a_late_copy_before_the_anchor_takes_its_place() {
    let anchor = click(1, START + HOUR_MS);
    let other = click(2, START + 2 * HOUR_MS);
    // Earlier than the anchor, arriving after the frontier passed both.
    let earlier = click(1, START);
    let (log, _) = run_checked(
        &stepwise(2, Vec::new()),
        &[anchor, other, earlier],
        DedupConfig::default(),
        &DedupGauge::default(),
    );
    let frontier = at(other.ts);
    assert_eq!(
        log,
        BTreeMap::from([
            ((at(anchor.ts), Out::Unique(anchor)), 1),
            ((at(other.ts), Out::Unique(other)), 1),
            ((frontier, Out::Unique(anchor)), -1),
            ((frontier, Out::Unique(earlier)), 1),
            (
                (
                    frontier,
                    duplicate(&anchor, &earlier, DuplicateReason::EventId)
                ),
                1
            ),
        ])
    );
}

/// A long stream: one click a minute with a new id, every tenth one
/// resent 30 s later and every 50th a conversion reordered a minute later,
/// slightly out of order within a few minutes.
fn long_stream(minutes: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for minute in 0..minutes {
        let ts = START + minute * MINUTE_MS;
        let n = u128::try_from(minute).unwrap_or(0);
        let first = click(n, ts);
        events.push(first);
        if minute % 10 == 3 {
            events.push(click(n, ts + 30 * SECOND_MS));
        }
        if minute % 50 == 7 {
            let user = u64::try_from(minute % 5).unwrap_or(0) + 1;
            let order = u64::try_from(minute).unwrap_or(0);
            events.push(event(
                1 << 64 | n,
                EventKind::Conversion,
                ts,
                user,
                Some(order),
            ));
            events.push(event(
                2 << 64 | n,
                EventKind::Conversion,
                ts + MINUTE_MS,
                user,
                Some(order),
            ));
        }
    }
    // Swap neighbours: arrival order is not event-time order.
    for pair in events.chunks_mut(2).step_by(3) {
        pair.reverse();
    }
    events
}

/// Peak copies retained over a run of `minutes` minutes of stream.
fn peak_retained(minutes: i64, horizon: Option<Millis>) -> (usize, DedupGauge) {
    let events = long_stream(minutes);
    let feed = Feed {
        workers: 2,
        batch: 50,
        time: TimeConfig {
            tick: SECOND_MS,
            allowed_lateness: Some(10 * MINUTE_MS),
            horizon,
            ..TimeConfig::stream()
        },
        deletions: Vec::new(),
        every_worker_reads: false,
    };
    let config = DedupConfig {
        window: 2 * HOUR_MS,
        horizon,
    };
    let gauge = DedupGauge::default();
    let (_, admitted) = run_checked(&feed, &events, config, &gauge);
    // Nothing was late: the comparison covers the whole stream.
    assert_eq!(admitted.len(), events.len());
    (gauge.peak_copies(), gauge)
}

#[test]
fn state_stays_bounded_with_a_horizon() {
    let day = 24 * 60;
    let (short, gauge) = peak_retained(3 * day, Some(HOUR_MS));
    let (long, _) = peak_retained(9 * day, Some(HOUR_MS));
    // What is live at once: 3 hours (window + horizon) of copies, plus the
    // lateness and a batch of slack, at about 1.1 copies a minute (observed:
    // 229 copies, against 4,300 clicks over 3 days).
    assert!(short <= 300, "peak {short} copies over 3 days");
    // Three times the stream, not more state.
    assert!(
        long <= short + 20,
        "peak {long} over 9 days, {short} over 3"
    );
    assert!(gauge.peak_keys() > 0 && gauge.peak_keys() <= gauge.peak_copies());
    // Everything is forgotten once the input ends.
    assert_eq!((gauge.keys(), gauge.copies()), (0, 0));

    // Without a horizon every copy is held until the input ends.
    let (all, _) = peak_retained(3 * day, None);
    let clicks = usize::try_from(3 * day).unwrap_or(usize::MAX);
    assert!(all >= clicks, "peak {all} copies without horizon");
}

#[test]
fn duplicates_render_as_rows() {
    let kept = event(10, EventKind::Conversion, START, 7, Some(1));
    let copy = event(11, EventKind::Conversion, START + MINUTE_MS, 7, Some(1));
    let row = Duplicate::of(&copy, &kept, DuplicateReason::OrderId);
    let columns = Duplicate::columns();
    let values = row.values();
    assert_eq!(values.len(), columns.len());
    for (value, column) in values.iter().zip(&columns) {
        assert!(value.fits(column.ty), "{} = {value:?}", column.name);
    }
    let text = adflow::sinks::render_table("duplicates", &[row], 10);
    assert!(text.contains("order_id"), "{text}");
    assert!(text.contains(&format!("{:032x}", 11)), "{text}");
    assert!(text.contains("9"), "{text}");
}
