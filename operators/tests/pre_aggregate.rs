//! Pre-aggregation against its sequential twin, consolidation: on random
//! streams (shuffled, batched, late corrections, deletions, 1 or more
//! workers) the collection it hands on is the collection it was given, and
//! each worker hands on each record and time at most once, never as zero.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use adflow::event::{Event, EventKind, Id};
use adflow::pipeline::Time;
use adflow::timestamp::HOUR_MS;
use adflow_operators::pre_aggregate::PreAggregateExt;
use adflow_operators::testing::{arb_events, arb_feed, multiset, run};
use differential_dataflow::input::Input;
use proptest::prelude::*;

/// A record most events share with others: how many collapse depends on
/// the stream.
type Slice = (i64, EventKind, Option<Id>);

fn slice(event: &Event) -> Slice {
    (event.ts.div_euclid(HOUR_MS), event.kind, event.campaign_id)
}

/// Feeds `updates` from worker 0 in chunks of `batch`, advancing the input
/// to each chunk's last time, and returns what every worker's
/// pre-aggregation handed on, by worker.
fn handed_on(
    updates: &[(u8, Time, isize)],
    batch: usize,
    workers: usize,
) -> Vec<Vec<(u8, Time, isize)>> {
    let seen = Arc::new(Mutex::new(vec![Vec::new(); workers]));
    let sink = Arc::clone(&seen);
    let updates = updates.to_vec();
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let sink = Arc::clone(&sink);
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, records) = scope.new_collection::<u8, isize>();
            records
                .pre_aggregate()
                .inspect(move |update| sink.lock().unwrap()[index].push(*update));
            input
        });
        if index == 0 {
            for chunk in updates.chunks(batch.max(1)) {
                for (record, time, diff) in chunk {
                    input.update_at(*record, (*time).max(*input.time()), *diff);
                }
                if let Some((_, last, _)) = chunk.last() {
                    input.advance_to((*last).max(*input.time()));
                }
                input.flush();
                worker.step();
            }
        }
    })
    .unwrap();
    let by_worker = std::mem::take(&mut *seen.lock().unwrap());
    by_worker
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_collection_is_unchanged(
        (events, feed) in arb_events(80).prop_flat_map(|events| {
            let len = events.len();
            (Just(events), arb_feed(len))
        })
    ) {
        let outcome = run(&feed, &events, |events| {
            events.map(|event| slice(&event)).pre_aggregate()
        });
        prop_assert_eq!(outcome.output, multiset(outcome.admitted.iter().map(slice)));
    }

    #[test]
    fn each_record_and_time_once_per_worker(
        mut updates in prop::collection::vec((0u8..6, 0u64..12, -2isize..3), 0..120),
        batch in 1usize..40,
        workers in 1usize..3,
    ) {
        updates.sort_by_key(|(_, time, _)| *time);
        let handed_on = handed_on(&updates, batch, workers);
        // Input from worker 0 only: the other workers hand on nothing.
        for other in &handed_on[1..] {
            prop_assert!(other.is_empty());
        }
        let mut sums = BTreeMap::new();
        for (record, time, diff) in &updates {
            *sums.entry((*record, *time)).or_insert(0) += diff;
        }
        sums.retain(|_, sum| *sum != 0);
        let mut once: Vec<(u8, Time, isize)> = handed_on[0].clone();
        once.sort();
        let expected: Vec<(u8, Time, isize)> =
            sums.into_iter().map(|((record, time), sum)| (record, time, sum)).collect();
        prop_assert_eq!(once, expected);
    }
}
