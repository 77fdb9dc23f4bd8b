//! Sequential reference of the dedup family: the rules of
//! [`crate::dedup`] applied to the final multiset of events by sorting and
//! looping. The horizon plays no part: it bounds the dataflow's state, it
//! must not change its answer.

use std::collections::BTreeMap;

use adflow::event::{Event, EventKind, Id};
use adflow::timestamp::Millis;

use crate::dedup::{DedupConfig, Duplicate, DuplicateReason};

/// Deduplicates `events` (a multiset: a repeated event is a resent copy):
/// returns the kept events and the duplicates, both sorted.
///
/// ```
/// use adflow_operators::dedup::DedupConfig;
/// use adflow_operators::reference::dedup::dedup;
/// use adflow_operators::testing::{arb_event};
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::deterministic();
/// let event = arb_event().new_tree(&mut runner).unwrap().current();
/// let (unique, duplicates) = dedup(&[event, event], &DedupConfig::default());
/// assert_eq!(unique, vec![event]);
/// assert_eq!(duplicates.len(), 1);
/// assert_eq!((duplicates[0].event_id, duplicates[0].kept), (event.event_id, event.event_id));
/// ```
pub fn dedup(events: &[Event], config: &DedupConfig) -> (Vec<Event>, Vec<Duplicate>) {
    let window = config.window.max(0);
    let mut unique = Vec::new();
    let mut duplicates = Vec::new();

    let mut by_event_id = BTreeMap::new();
    for event in events {
        by_event_id
            .entry(event.event_id)
            .or_insert_with(Vec::new)
            .push(*event);
    }
    let mut kept = Vec::new();
    for copies in by_event_id.values_mut() {
        chain(
            copies,
            window,
            DuplicateReason::EventId,
            &mut kept,
            &mut duplicates,
        );
    }

    let mut by_order: BTreeMap<(Option<Id>, Option<Id>, Id), Vec<Event>> = BTreeMap::new();
    for event in kept {
        match event.order_id {
            Some(order) if event.kind == EventKind::Conversion => {
                let identity = match event.user_id {
                    Some(user) => (Some(user), None),
                    None => (None, event.device_id),
                };
                by_order
                    .entry((identity.0, identity.1, order))
                    .or_default()
                    .push(event);
            }
            _ => unique.push(event),
        }
    }
    for copies in by_order.values_mut() {
        chain(
            copies,
            window,
            DuplicateReason::OrderId,
            &mut unique,
            &mut duplicates,
        );
    }

    unique.sort();
    duplicates.sort();
    (unique, duplicates)
}

/// The copies of one key, one at a time in `(ts, Event)` order: kept if
/// there is no anchor or it is at or past the anchor's window, else a
/// duplicate of the anchor.
fn chain(
    copies: &mut [Event],
    window: Millis,
    reason: DuplicateReason,
    kept: &mut Vec<Event>,
    duplicates: &mut Vec<Duplicate>,
) {
    copies.sort_by_key(|event| (event.ts, *event));
    let mut anchor: Option<Event> = None;
    for copy in copies.iter() {
        match anchor {
            Some(first) if copy.ts < first.ts.saturating_add(window) => {
                duplicates.push(Duplicate::of(copy, &first, reason));
            }
            _ => {
                anchor = Some(*copy);
                kept.push(*copy);
            }
        }
    }
}
