//! Events split by kind, once, for the families that each read only some
//! kinds.
//!
//! Timely hands every consumer of a stream its own copy of each batch, and
//! the deduplicated events are read by about ten operators that each keep
//! one or two kinds (impressions are nearly all of the traffic, conversions
//! a fraction of a percent). Splitting them once moves each event to the
//! one stream of its kind; consumers then copy and scan only the kinds
//! they read.
//!
//! ```
//! use adflow::event::{Event, EventKind};
//! use adflow_operators::kinds::SplitByKindExt;
//! use differential_dataflow::input::Input;
//! use std::sync::{Arc, Mutex};
//!
//! fn event(kind: &str, id: &str) -> Event {
//!     let line = format!(r#"{{"event_id":"{id}","kind":"{kind}","ts":"2026-11-01T10:00:00Z","user_id":"u","campaign_id":"c","ad_id":"a","order_id":"o","revenue":1}}"#);
//!     adflow::parsing::json::parse_json(line.as_bytes())
//!         .and_then(|fields| adflow::parsing::EventValidator::default().validate(&fields))
//!         .unwrap()
//! }
//! let clicks = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&clicks);
//! timely::execute_directly(move |worker| {
//!     let mut input = worker.dataflow::<u64, _, _>(|scope| {
//!         let (input, events) = scope.new_collection::<Event, isize>();
//!         let sink = Arc::clone(&sink);
//!         events
//!             .split_by_kind()
//!             .clicks
//!             .inspect(move |(event, _, _)| sink.lock().unwrap().push(event.kind));
//!         input
//!     });
//!     input.insert(event("impression", "i1"));
//!     input.insert(event("click", "k1"));
//!     input.insert(event("conversion", "c1"));
//! });
//! assert_eq!(*clicks.lock().unwrap(), vec![EventKind::Click]);
//! ```

use adflow::event::{Event, EventKind};
use adflow::pipeline::Time;
use differential_dataflow::collection::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

type Output = OutputBuilder<Time, CapacityContainerBuilder<Vec<(Event, Time, isize)>>>;

/// One collection per [`EventKind`].
#[derive(Clone)]
pub struct ByKind<'scope> {
    /// The impressions.
    pub impressions: VecCollection<'scope, Time, Event>,
    /// The clicks.
    pub clicks: VecCollection<'scope, Time, Event>,
    /// The conversions.
    pub conversions: VecCollection<'scope, Time, Event>,
    /// The page views.
    pub page_views: VecCollection<'scope, Time, Event>,
}

/// Splitting events by kind, once.
pub trait SplitByKindExt<'scope> {
    /// One collection per kind, in one operator named `Events: split by kind`.
    fn split_by_kind(self) -> ByKind<'scope>;

    /// As [`SplitByKindExt::split_by_kind`], named `{name}: split by kind`.
    fn split_by_kind_named(self, name: &str) -> ByKind<'scope>;
}

impl<'scope> SplitByKindExt<'scope> for VecCollection<'scope, Time, Event> {
    fn split_by_kind(self) -> ByKind<'scope> {
        ByKind::split(self, "Events")
    }

    fn split_by_kind_named(self, name: &str) -> ByKind<'scope> {
        ByKind::split(self, name)
    }
}

impl<'scope> ByKind<'scope> {
    /// Splits `events` by kind in one operator named `{name}: split by kind`.
    fn split(events: VecCollection<'scope, Time, Event>, name: &str) -> ByKind<'scope> {
        let mut builder =
            OperatorBuilder::new(format!("{name}: split by kind"), events.inner.scope());
        let mut input = builder.new_input(events.inner, Pipeline);
        let mut outputs: Vec<Output> = Vec::with_capacity(EventKind::ALL.len());
        let mut streams = Vec::with_capacity(EventKind::ALL.len());
        for _ in EventKind::ALL {
            let (output, stream) = builder.new_output();
            outputs.push(OutputBuilder::from(output));
            streams.push(stream.as_collection());
        }
        builder.build(move |_capabilities| {
            // Impressions are most of the traffic: they stay in the batch
            // they came in, which is handed on whole; the other kinds are
            // moved out to batches of their own.
            let mut others: [Vec<(Event, Time, isize)>; 3] = Default::default();
            move |_frontiers| {
                let [impressions, clicks, conversions, page_views] = outputs.as_mut_slice() else {
                    unreachable!("one output per kind");
                };
                let mut impressions = impressions.activate();
                let mut rest = [
                    clicks.activate(),
                    conversions.activate(),
                    page_views.activate(),
                ];
                input.for_each(|capability, data| {
                    data.retain(|update| {
                        let other = match update.0.kind {
                            EventKind::Impression => return true,
                            EventKind::Click => 0,
                            EventKind::Conversion => 1,
                            EventKind::PageView => 2,
                        };
                        others[other].push(*update);
                        false
                    });
                    if !data.is_empty() {
                        impressions.session(&capability).give_container(data);
                    }
                    for (output, batch) in rest.iter_mut().zip(others.iter_mut()) {
                        if !batch.is_empty() {
                            output.session(&capability).give_container(batch);
                            batch.clear();
                        }
                    }
                });
            }
        });
        let [impressions, clicks, conversions, page_views]: [VecCollection<'scope, Time, Event>;
            4] = streams
            .try_into()
            .unwrap_or_else(|_| unreachable!("one stream per kind"));
        ByKind {
            impressions,
            clicks,
            conversions,
            page_views,
        }
    }

    /// The collection of `kind`.
    pub fn of(&self, kind: EventKind) -> &VecCollection<'scope, Time, Event> {
        match kind {
            EventKind::Impression => &self.impressions,
            EventKind::Click => &self.clicks,
            EventKind::Conversion => &self.conversions,
            EventKind::PageView => &self.page_views,
        }
    }
}
