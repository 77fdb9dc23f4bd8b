//! Pre-aggregation against its sequential twin, consolidation: on random
//! streams (shuffled, batched, late corrections, deletions, 1 or more
//! workers) the collection it hands on is the collection it was given, and
//! each worker hands on the sum of its own share once per record and time,
//! never as zero.

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

/// Feeds `updates` in chunks of `batch`, worker `i` of `n` the `n`-th
/// updates from the `i`-th on, every worker advancing its input to each
/// chunk's last time; returns what every worker's pre-aggregation handed
/// on, by worker.
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
        let peers = worker.peers();
        for (chunk_index, chunk) in updates.chunks(batch.max(1)).enumerate() {
            let first = chunk_index * batch.max(1);
            for (offset, (record, time, diff)) in chunk.iter().enumerate() {
                if (first + offset) % peers == index {
                    input.update_at(*record, (*time).max(*input.time()), *diff);
                }
            }
            if let Some((_, last, _)) = chunk.last() {
                input.advance_to((*last).max(*input.time()));
            }
            input.flush();
            worker.step();
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
        // Each worker sums its own share, and nothing crosses workers.
        for (worker, mut once) in handed_on.into_iter().enumerate() {
            let mut sums = BTreeMap::new();
            for (record, time, diff) in updates.iter().skip(worker).step_by(workers) {
                *sums.entry((*record, *time)).or_insert(0) += diff;
            }
            sums.retain(|_, sum| *sum != 0);
            once.sort();
            let expected: Vec<(u8, Time, isize)> =
                sums.into_iter().map(|((record, time), sum)| (record, time, sum)).collect();
            prop_assert_eq!(once, expected, "worker {}", worker);
        }
    }
}
