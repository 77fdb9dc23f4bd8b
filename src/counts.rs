//! Events counted per kind and hour: the simplest continuously maintained
//! result, and what the backfill writes until the metrics operators of
//! `adflow-operators` replace it.

use differential_dataflow::collection::VecCollection;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};
use crate::pipeline::Time;
use crate::sinks::{Column, ColumnType, OutputRecord, Value};
use crate::timestamp::{hour_start, Millis};

/// The number of events of one kind in one UTC hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HourlyKindCount {
    /// Start of the hour.
    pub hour: Millis,
    /// Event kind.
    pub kind: EventKind,
    /// Events of that kind whose time falls in the hour.
    pub count: i64,
}

impl OutputRecord for HourlyKindCount {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("hour", ColumnType::Time),
            Column::new("kind", ColumnType::Text),
            Column::new("count", ColumnType::I64),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Time(self.hour),
            Value::Text(self.kind.as_str().to_owned()),
            Value::I64(self.count),
        ]
    }

    /// One count per hour and kind.
    fn key_columns() -> usize {
        2
    }

    /// Counted per key: one row each.
    fn one_row_per_key() -> bool {
        true
    }
}

/// Counts events per (hour, kind), maintained incrementally: a late or
/// retracted event changes its hour's count by retraction and assertion.
///
/// ```
/// use adflow::counts::{hourly_kind_counts, HourlyKindCount};
/// use adflow::prelude::*;
/// use differential_dataflow::input::Input;
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<Time, _, _>(|scope| {
///         let (input, events) = scope.new_collection::<Event, isize>();
///         let sink = Arc::clone(&sink);
///         hourly_kind_counts(events)
///             .inspect(move |(count, _, diff)| sink.lock().unwrap().push((count.clone(), *diff)));
///         input
///     });
///     let click = |id: &str, ts: i64| {
///         let raw = format!(r#"{{"event_id":"{id}","kind":"click","ts":{ts},"user_id":"u","campaign_id":"c","ad_id":"a"}}"#);
///         adflow::parsing::json::parse_json(raw.as_bytes())
///             .and_then(|fields| adflow::parsing::EventValidator::default().validate(&fields))
///             .unwrap()
///     };
///     input.insert(click("a", 1_793_527_200_000));
///     input.insert(click("b", 1_793_527_201_000));
/// });
/// let seen = seen.lock().unwrap();
/// let expected = HourlyKindCount { hour: 1_793_527_200_000, kind: EventKind::Click, count: 2 };
/// assert_eq!(*seen, vec![(expected, 1)]);
/// ```
pub fn hourly_kind_counts<'scope>(
    events: VecCollection<'scope, Time, Event>,
) -> VecCollection<'scope, Time, HourlyKindCount> {
    events
        .map(|event| ((hour_start(event.ts), event.kind), ()))
        .reduce_named("HourlyKindCounts", |_key, input, output| {
            let count: isize = input.iter().map(|(_, diff)| *diff).sum();
            output.push((i64::try_from(count).unwrap_or(i64::MAX), 1));
        })
        .map(|((hour, kind), count)| HourlyKindCount { hour, kind, count })
}
