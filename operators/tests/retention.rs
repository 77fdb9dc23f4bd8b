//! The harness itself and the retention helpers: an identity dataflow
//! returns exactly the admitted events, and retiring then freezing a
//! collection changes nothing about its final contents.

use adflow::event::Event;
use adflow::pipeline::Time;
use adflow::timestamp::HOUR_MS;
use adflow_operators::retention::RetentionExt;
use adflow_operators::testing::{arb_events, arb_feed, multiset, run};
use proptest::prelude::*;

const HORIZON: i64 = 2 * HOUR_MS;

/// Just past the horizon: no event can be admitted at or after it.
fn expiry(event: &Event) -> Time {
    Time::try_from(event.ts + HORIZON + 1).unwrap_or(Time::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn identity_returns_the_admitted_events(
        (events, feed) in arb_events(60).prop_flat_map(|events| {
            let len = events.len();
            (Just(events), arb_feed(len))
        })
    ) {
        let outcome = run(&feed, &events, |events| events);
        prop_assert_eq!(outcome.output, multiset(outcome.admitted));
    }

    #[test]
    fn retire_then_freeze_keeps_final_contents(
        (events, feed) in arb_events(60).prop_flat_map(|events| {
            let len = events.len();
            (Just(events), arb_feed(len))
        })
    ) {
        // Freezing is exact when the horizon guarantees that nothing is
        // admitted at or after a record's expiry (late events are dropped),
        // and deletions happen within it.
        let mut feed = adflow_operators::testing::Feed { deletions: Vec::new(), ..feed };
        feed.time.horizon = Some(HORIZON);
        let outcome = run(&feed, &events, |events| {
            events
                .retire_after("Test", expiry)
                .freeze_after("Test", expiry)
        });
        prop_assert_eq!(outcome.output, multiset(outcome.admitted));
    }
}

/// A record of the retiring arrangement's test: its key decides how long it
/// lives, its value is the time it arrives at.
type Pair = (u8, u64);

fn pair_expiry(key: &u8, value: &u64) -> Time {
    value + (u64::from(*key) + 1) * 40_000 + 1
}

/// Arrival (and deletion) updates in time order, fed from worker 0 in
/// chunks; then event time moves on well past every expiry. Returns the
/// updates the arrangement's batches carried, from every worker.
fn run_retiring(
    updates: &[(Pair, Time, isize)],
    batch: usize,
    workers: usize,
    lagging_reader: bool,
) -> Vec<(Pair, Time, isize)> {
    use adflow_operators::retention::RetireArrangedExt;
    use differential_dataflow::input::Input;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::Probe;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let updates = updates.to_vec();
    let last_expiry = updates
        .iter()
        .map(|((k, v), _, _)| pair_expiry(k, v))
        .max()
        .unwrap_or(0);
    timely::execute(timely::Config::process(workers), move |worker| {
        let sink = Arc::clone(&sink);
        let (mut input, probe, lagging) = worker.dataflow::<Time, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<Pair, isize>();
            let arranged = pairs.arrange_by_key_retiring_named("Test", pair_expiry);
            let (probe, _) = arranged.stream.clone().probe();
            // A second reader of the trace that never advances holds its
            // compaction back: retirement then reads every record's
            // history, not one accumulated update per record.
            let lagging = lagging_reader.then(|| arranged.trace.clone());
            arranged
                .as_collection(|key, value| (*key, *value))
                .inspect(move |update| sink.lock().unwrap().push(*update));
            (input, probe, lagging)
        });
        for chunk in updates.chunks(batch) {
            if worker.index() == 0 {
                for (pair, time, diff) in chunk {
                    input.update_at(*pair, *time, *diff);
                }
            }
            if let Some((_, time, _)) = chunk.last() {
                input.advance_to(*time);
            }
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
        }
        // Ten more minutes-and-a-bit, each its own step of event time:
        // every record has expired, so each step may retire.
        for step in 1..=10 {
            input.advance_to(last_expiry + step * 70_000);
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
        }
        drop(lagging);
    })
    .expect("timely runs");
    let seen = seen.lock().unwrap().clone();
    seen
}

/// A deletion with no insertion before it breaks the horizon contract; the
/// record it leaves (count -1) is still retired, and does not keep a live
/// record of another minute from being retired either: the trace ends
/// empty. (The trigger once summed signed counts: +1 and -1 cancelled, and
/// neither record was ever retired.)
#[test]
fn records_left_with_negative_counts_are_retired_too() {
    for workers in [1, 2] {
        let updates = vec![((0, 1_000), 1_000, 1), ((5, 2_000), 2_000, -1)];
        let seen = run_retiring(&updates, 1, workers, false);
        let mut totals = std::collections::BTreeMap::<Pair, isize>::new();
        for (pair, time, diff) in &seen {
            assert!(
                *time >= pair_expiry(&pair.0, &pair.1) || *time == pair.1,
                "{pair:?} changed at {time}, before its expiry"
            );
            *totals.entry(*pair).or_insert(0) += diff;
        }
        totals.retain(|_, total| *total != 0);
        assert!(
            totals.is_empty(),
            "{workers} workers: left in the trace: {totals:?}"
        );
        assert!(
            seen.len() >= 4,
            "both records arrived and were retired: {seen:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn retiring_arrangement_retires_every_record_once_at_or_after_its_expiry(
        records in proptest::collection::vec(
            (0u8..6, 0u64..900_000, 1isize..=2, proptest::option::of(0u64..200_000)),
            1..80,
        ),
        batch in 1usize..25,
        workers in 1usize..=2,
        lagging_reader in any::<bool>(),
    ) {
        // Each record arrives at its value, some as two identical copies
        // (multiplicity 2); some are deleted (one copy) before they expire
        // (the horizon's guarantee: no update at or after expiry).
        let mut updates = Vec::new();
        for (key, value, copies, deleted_after) in &records {
            updates.push(((*key, *value), *value, *copies));
            if let Some(after) = deleted_after {
                let at = value + after % (pair_expiry(key, value) - value);
                updates.push(((*key, *value), at, -1));
            }
        }
        updates.sort_by_key(|(_, time, _)| *time);
        let seen = run_retiring(&updates, batch, workers, lagging_reader);

        // What came out beyond the input is the retirement.
        let mut retirement = std::collections::BTreeMap::<(Pair, Time), isize>::new();
        for (pair, time, diff) in &seen {
            *retirement.entry((*pair, *time)).or_insert(0) += diff;
        }
        for (pair, time, diff) in &updates {
            *retirement.entry((*pair, *time)).or_insert(0) -= diff;
        }
        retirement.retain(|_, diff| *diff != 0);
        let mut input_totals = std::collections::BTreeMap::<Pair, isize>::new();
        for (pair, _, diff) in &updates {
            *input_totals.entry(*pair).or_insert(0) += diff;
        }
        let mut retired_totals = std::collections::BTreeMap::<Pair, isize>::new();
        for ((pair, time), diff) in &retirement {
            prop_assert!(*time >= pair_expiry(&pair.0, &pair.1), "{pair:?} retired at {time}, before its expiry");
            prop_assert!(*diff < 0, "{pair:?} retirement at {time} adds {diff}");
            *retired_totals.entry(*pair).or_insert(0) += diff;
        }
        // Every record still live was retired, exactly once.
        for (pair, total) in &input_totals {
            prop_assert_eq!(retired_totals.get(pair).copied().unwrap_or(0), -total, "{:?}", pair);
        }
    }
}
