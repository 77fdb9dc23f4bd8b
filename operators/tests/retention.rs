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
