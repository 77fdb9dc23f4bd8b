//! Bounded state without custom state: retire inputs, freeze outputs.
//!
//! See `docs/operators.md`. To keep an endless stream's state flat, an
//! operator's input is *retired*: every update is cancelled again at the
//! record's expiry time, so its accumulation returns to zero and
//! arrangement compaction forgets it once the frontier passes. Retiring an
//! input would also retract results that are already final, so outputs are
//! *frozen*: updates at or after a result's own expiry are dropped. Both are
//! exact as long as no event can change a result after its expiry, which the
//! pipeline's horizon guarantees (later events are dead-lettered `late`).

use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::difference::Abelian;
use differential_dataflow::Data;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

use adflow::pipeline::Time;

/// Retiring inputs and freezing outputs by a per-record expiry time.
///
/// ```
/// use adflow_operators::retention::RetentionExt;
/// use differential_dataflow::input::Input;
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, values) = scope.new_collection::<u64, isize>();
///         let sink = Arc::clone(&sink);
///         // Each value lives for 10 time units after its own value.
///         values
///             .retire_after("Example", |value: &u64| value + 10)
///             .inspect(move |update| sink.lock().unwrap().push(*update));
///         input
///     });
///     input.insert(5);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, vec![(5, 0, 1), (5, 15, -1)]);
/// ```
pub trait RetentionExt<'scope, D: Data, R: Abelian + 'static> {
    /// Adds, for every update, its negation at `max(time, expiry(record))`.
    fn retire_after<F>(self, name: &str, expiry: F) -> VecCollection<'scope, Time, D, R>
    where
        F: Fn(&D) -> Time + 'static;

    /// Drops the updates whose time is at or after `expiry(record)`.
    fn freeze_after<F>(self, name: &str, expiry: F) -> VecCollection<'scope, Time, D, R>
    where
        F: Fn(&D) -> Time + 'static;
}

impl<'scope, D: Data, R: Abelian + 'static> RetentionExt<'scope, D, R>
    for VecCollection<'scope, Time, D, R>
{
    fn retire_after<F>(self, name: &str, expiry: F) -> VecCollection<'scope, Time, D, R>
    where
        F: Fn(&D) -> Time + 'static,
    {
        let cancellations = self
            .inner
            .clone()
            .unary(Pipeline, &format!("Retire: {name}"), move |_, _| {
                move |input, output| {
                    input.for_each(|time, data| {
                        let mut session = output.session(&time);
                        for (record, time, mut diff) in data.drain(..) {
                            // Moving an update later than its capability is allowed.
                            let at = expiry(&record).max(time);
                            diff.negate();
                            session.give((record, at, diff));
                        }
                    });
                }
            })
            .as_collection();
        self.concat(cancellations)
    }

    fn freeze_after<F>(self, name: &str, expiry: F) -> VecCollection<'scope, Time, D, R>
    where
        F: Fn(&D) -> Time + 'static,
    {
        self.inner
            .unary(Pipeline, &format!("Freeze: {name}"), move |_, _| {
                move |input, output| {
                    input.for_each(|time, data| {
                        let mut session = output.session(&time);
                        for update in data.drain(..) {
                            if update.1 < expiry(&update.0) {
                                session.give(update);
                            }
                        }
                    });
                }
            })
            .as_collection()
    }
}
