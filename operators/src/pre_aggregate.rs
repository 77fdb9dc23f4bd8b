//! Summing updates in a hash table on the worker that has them, before an
//! arrangement sorts them.
//!
//! An arrangement's batcher sorts every update it receives and only then
//! adds up the ones with the same record and time. Where many updates of
//! one time share a record — every impression of an hour adds one to its
//! hourly row, and that is nearly all of the traffic — summing them first
//! in a small hash table is cheaper than sorting them, and the exchange in
//! front of the arrangement then carries one update per record and time
//! instead of one per event. The table of a time is handed on once the
//! input frontier has passed that time, which is also when the arrangement
//! downstream would first have published it: results wait for one more
//! hop of the updates (the exchange behind this operator), not for any
//! later time.
//!
//! The tables hash with [`PrehashedHasher`](adflow::hashing::PrehashedHasher)
//! (FxHash): fast on keys built from ids and small fields, but not for
//! records an adversary picks freely (raw strings from input), which could
//! make one table's lookups slow.

use std::collections::BTreeMap;
use std::hash::Hash;

use adflow::hashing::PrehashedMap;
use adflow::pipeline::Time;
use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::difference::Semigroup;
use differential_dataflow::Data;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

type Output<D, R> = OutputBuilder<Time, CapacityContainerBuilder<Vec<(D, Time, R)>>>;

/// Local pre-aggregation of a collection's updates.
///
/// ```
/// use adflow_operators::pre_aggregate::PreAggregateExt;
/// use differential_dataflow::input::Input;
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, words) = scope.new_collection::<&'static str, isize>();
///         let sink = Arc::clone(&sink);
///         words
///             .pre_aggregate()
///             .inspect(move |update| sink.lock().unwrap().push(*update));
///         input
///     });
///     for word in ["ad", "ad", "ad", "click"] {
///         input.insert(word);
///     }
///     input.remove("click");
/// });
/// // One update per record and time; the click cancelled out entirely.
/// assert_eq!(*seen.lock().unwrap(), vec![("ad", 0, 3)]);
/// ```
pub trait PreAggregateExt<'scope, D, R> {
    /// Sums the updates of each record and time on the worker that has
    /// them, and hands each sum on (unless it is zero) once the input
    /// frontier has passed its time; named `Pre-aggregate`.
    fn pre_aggregate(self) -> VecCollection<'scope, Time, D, R>;

    /// As [`PreAggregateExt::pre_aggregate`], named `name`.
    fn pre_aggregate_named(self, name: &str) -> VecCollection<'scope, Time, D, R>;
}

impl<'scope, D, R> PreAggregateExt<'scope, D, R> for VecCollection<'scope, Time, D, R>
where
    D: Data + Hash,
    R: Semigroup + 'static,
{
    fn pre_aggregate(self) -> VecCollection<'scope, Time, D, R> {
        self.pre_aggregate_named("Pre-aggregate")
    }

    fn pre_aggregate_named(self, name: &str) -> VecCollection<'scope, Time, D, R> {
        let mut builder = OperatorBuilder::new(name.to_owned(), self.inner.scope());
        let mut input = builder.new_input(self.inner, Pipeline);
        let (output, stream) = builder.new_output();
        let mut output: Output<D, R> = OutputBuilder::from(output);
        builder.build(move |_capabilities| {
            // The sums of each time the frontier has not passed yet, and a
            // capability at the least of those times.
            let mut pending: BTreeMap<Time, PrehashedMap<D, R>> = BTreeMap::new();
            let mut held: Option<Capability<Time>> = None;
            move |frontiers| {
                input.for_each(|capability, data| {
                    // A message sent under no capability claims no time;
                    // differential never sends one.
                    let Some(&least) = capability.least() else {
                        return;
                    };
                    if held.as_ref().is_none_or(|held| least < *held.time()) {
                        held = Some(capability.delayed(&least, 0));
                    }
                    // The updates of a message nearly always share one
                    // time: look its table up once per run of them.
                    let mut current: Option<(Time, &mut PrehashedMap<D, R>)> = None;
                    for (record, time, diff) in data.drain(..) {
                        // Differential's updates are never before their
                        // message's time.
                        let time = time.max(least);
                        let sums = match current {
                            Some((at, sums)) if at == time => sums,
                            _ => pending.entry(time).or_default(),
                        };
                        match sums.get_mut(&record) {
                            Some(sum) => sum.plus_equals(&diff),
                            None => {
                                sums.insert(record, diff);
                            }
                        }
                        current = Some((time, sums));
                    }
                });
                let bound = frontiers[0].frontier().iter().min().copied();
                if let Some(capability) = &held {
                    let mut handle = output.activate();
                    let mut session = handle.session(capability);
                    while let Some(entry) = pending.first_entry() {
                        if bound.is_some_and(|bound| *entry.key() >= bound) {
                            break;
                        }
                        let (time, sums) = entry.remove_entry();
                        for (record, sum) in sums {
                            if !sum.is_zero() {
                                session.give((record, time, sum));
                            }
                        }
                    }
                }
                match (pending.keys().next(), held.as_mut()) {
                    (Some(next), Some(capability)) => capability.downgrade(next),
                    _ => held = None,
                }
            }
        });
        stream.as_collection()
    }
}
