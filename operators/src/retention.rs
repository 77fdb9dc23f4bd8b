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
//!
//! Cancelling holds a copy of every record until its expiry. Where records
//! are most of the traffic and live in one arrangement, and nothing can
//! match them after their expiry, [`RetireArrangedExt`] retires them from
//! the arrangement's own trace instead, at or after their expiry, and holds
//! nothing per record.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::{cursor_list, Cursor, Navigable};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::{SpanOf, TraceReader};
use differential_dataflow::{Data, ExchangeData};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::{ConnectLoop, Feedback};
use timely::progress::frontier::AntichainRef;
use timely::progress::{Antichain, Timestamp};
use timely::PartialOrder;

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

/// Events within this many milliseconds of each other count as expiring
/// together (2^16 ms, about a minute): retirement is tallied per such
/// bucket, so its bookkeeping is one counter per minute of expiry, not per
/// record.
const EXPIRY_BUCKET_SHIFT: u32 = 16;

/// A scan of the trace starts once this fraction (1/16) of its live
/// records has expired, so each record is visited a bounded number of
/// times over its life however fast event time moves.
const SCAN_WHEN_EXPIRED_ONE_IN: isize = 16;

/// The arrangement of a `(key, value)` collection that
/// [`RetireArrangedExt::arrange_by_key_retiring_named`] returns.
pub type RetiringArrangement<'scope, K, V> =
    Arranged<'scope, TraceAgent<ValSpine<K, V, Time, isize>>>;

type Update<K, V> = ((K, V), Time, isize);

/// Arranging by key and retiring each record from the trace itself, after
/// its expiry.
///
/// [`RetentionExt::retire_after`] holds every record's cancellation, a
/// whole copy of the record, in the arrangement's batcher until its expiry:
/// a stream keeps each record twice. This arrangement holds none. It counts
/// its live records per expiry minute as they are sealed, and once at least
/// a sixteenth of them has expired it reads its own trace and feeds the
/// cancellation of every expired record back into its input, at the input
/// frontier of that moment.
///
/// Records are therefore retired *at or after* their expiry, not at it:
/// use it only where nothing downstream depends on when, as attribution's
/// touches (a touch past its window joins with no conversion, and outputs
/// are frozen at their own expiry). The horizon must guarantee that no
/// update of a record (a deletion) is admitted at or after its expiry.
///
/// ```
/// use adflow_operators::retention::RetireArrangedExt;
/// use timely::dataflow::operators::Probe;
/// use differential_dataflow::input::Input;
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, pairs) = scope.new_collection::<(u32, u64), isize>();
///         let sink = Arc::clone(&sink);
///         // Each pair expires 100 s after its value.
///         let arranged = pairs
///             .arrange_by_key_retiring_named("Example", |_key, value| value + 100_000);
///         let (probe, _) = arranged.stream.clone().probe();
///         arranged
///             .as_collection(|key, value| (*key, *value))
///             .inspect(move |update| sink.lock().unwrap().push(*update));
///         (input, probe)
///     });
///     input.insert((1, 5_000));
///     input.insert((2, 900_000));
///     // Event time moves on, a minute at a time, until the expired pair
///     // has been retired.
///     for minute in 1..=20 {
///         input.advance_to(minute * 60_000);
///         input.flush();
///         worker.step_while(|| probe.less_than(input.time()));
///         if sink.lock().unwrap().iter().any(|(_, _, diff)| *diff < 0) {
///             break;
///         }
///     }
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// // (1, 5000) expired at 105,000 and was retired at or after that time;
/// // (2, 900000) was not.
/// assert_eq!(seen.len(), 3);
/// assert_eq!(seen[0], ((1, 5_000), 0, 1));
/// assert_eq!((seen[1].0, seen[1].2), ((1, 5_000), -1));
/// assert!((105_000..=20 * 60_000).contains(&seen[1].1));
/// assert_eq!(seen[2], ((2, 900_000), 0, 1));
/// ```
pub trait RetireArrangedExt<'scope, K: ExchangeData, V: ExchangeData> {
    /// Arranges by key; each record is cancelled at or after
    /// `expiry(key, value)`.
    fn arrange_by_key_retiring_named<F>(
        self,
        name: &str,
        expiry: F,
    ) -> RetiringArrangement<'scope, K, V>
    where
        F: Fn(&K, &V) -> Time + 'static;
}

impl<'scope, K, V> RetireArrangedExt<'scope, K, V> for VecCollection<'scope, Time, (K, V), isize>
where
    K: ExchangeData + Hashable,
    V: ExchangeData,
{
    fn arrange_by_key_retiring_named<F>(
        self,
        name: &str,
        expiry: F,
    ) -> RetiringArrangement<'scope, K, V>
    where
        F: Fn(&K, &V) -> Time + 'static,
    {
        // The trace is read by the operator that feeds the arrangement, so
        // the sealed batches come back through a loop (one tick later, which
        // does not matter: they only say what the trace holds) and the
        // trace itself reaches the operator once it exists.
        let scope = self.scope();
        let (loop_handle, sealed) =
            scope.feedback::<Vec<SpanOf<TraceAgent<ValSpine<K, V, Time, isize>>>>>(1);
        let trace_slot = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&trace_slot);
        let mut builder = OperatorBuilder::new(format!("Retire: {name}"), scope);
        let mut records = builder.new_input(self.inner, Pipeline);
        // No connection from the sealed batches to the output: the
        // cancellations are given at the records' frontier, under a
        // capability the operator holds. Connected, the arrangement's own
        // pending times would hold back its input, one tick per round.
        let mut sealed = builder.new_input_connection(sealed, Pipeline, []);
        let (output, fed) = builder.new_output_connection([(0, Antichain::from_elem(0))]);
        let mut output =
            OutputBuilder::<_, CapacityContainerBuilder<Vec<Update<K, V>>>>::from(output);
        builder.build(move |mut capabilities| {
            let mut held = capabilities.pop();
            let mut retirement = Retirement::default();
            let mut trace = None;
            move |frontiers| {
                let mut output = output.activate();
                records.for_each(|time, data| output.session(&time).give_container(data));
                sealed.for_each(|_time, spans| {
                    for span in spans.drain(..) {
                        retirement.absorb(span, &expiry);
                    }
                });
                if trace.is_none() {
                    trace = slot.borrow_mut().take();
                }
                let Some(trace) = trace.as_mut() else { return };
                retirement.follow(trace);
                match (frontiers[0].frontier().as_option().copied(), held.as_mut()) {
                    (Some(now), Some(capability)) => {
                        if capability.time() < &now {
                            capability.downgrade(&now);
                        }
                        // A record's multiplicity is all this reader needs,
                        // not when its updates happened, so it lets the
                        // trace merge the times of everything up to the
                        // input frontier, not only of what it has seen.
                        trace.set_logical_compaction(AntichainRef::new(&[now]));
                        if let Some(sealed) = retirement.due() {
                            let mut session = output.session(capability);
                            retirement
                                .retire(trace, sealed, now, &expiry, |update| session.give(update));
                        }
                    }
                    (None, _) => held = None,
                    (Some(_), None) => {}
                }
                trace.set_physical_compaction(retirement.upper.borrow());
            }
        });
        let arranged = fed.as_collection().arrange_by_key_named(name);
        *trace_slot.borrow_mut() = Some(arranged.trace.clone());
        arranged.stream.clone().connect_loop(loop_handle);
        arranged
    }
}

/// What one worker knows of its shard of a retiring arrangement.
struct Retirement {
    /// The trace holds every update at times before this.
    upper: Antichain<Time>,
    /// Live records (their summed multiplicities) per expiry bucket.
    live_by_bucket: BTreeMap<Time, isize>,
    /// Live records in all buckets.
    live: isize,
    /// The time of the last cancellations fed back, until the trace holds
    /// them: scanning before would cancel the same records twice.
    in_flight: Option<Time>,
}

impl Default for Retirement {
    fn default() -> Self {
        Self {
            upper: Antichain::from_elem(Time::minimum()),
            live_by_bucket: BTreeMap::new(),
            live: 0,
            in_flight: None,
        }
    }
}

impl Retirement {
    /// Counts the records a sealed span adds to (or, cancellations, removes
    /// from) the trace.
    fn absorb<K, V, F>(&mut self, span: SpanOf<TraceAgent<ValSpine<K, V, Time, isize>>>, expiry: &F)
    where
        K: ExchangeData,
        V: ExchangeData,
        F: Fn(&K, &V) -> Time,
    {
        if PartialOrder::less_than(&self.upper, span.upper()) {
            self.upper.clone_from(span.upper());
        }
        let Some(batch) = span.inner else { return };
        let mut cursor = batch.cursor();
        while let Some(key) = cursor.get_key(&batch) {
            while let Some(value) = cursor.get_val(&batch) {
                let mut count = 0;
                cursor.map_times(&batch, |_time, diff| count += *diff);
                if count != 0 {
                    let bucket = expiry(key, value) >> EXPIRY_BUCKET_SHIFT;
                    let live = self.live_by_bucket.entry(bucket).or_default();
                    *live += count;
                    if *live == 0 {
                        self.live_by_bucket.remove(&bucket);
                    }
                    self.live += count;
                }
                cursor.step_val(&batch);
            }
            cursor.step_key(&batch);
        }
    }

    /// Moves the upper bound past the times the trace has sealed without
    /// updates (the arrangement sends no batch for those), and notes when
    /// the last cancellations have been sealed.
    fn follow<K: ExchangeData, V: ExchangeData>(
        &mut self,
        trace: &mut TraceAgent<ValSpine<K, V, Time, isize>>,
    ) {
        trace.advance_upper(&mut self.upper);
        if self
            .in_flight
            .is_some_and(|time| !self.upper.less_equal(&time))
        {
            self.in_flight = None;
        }
    }

    /// The time through which to retire, if enough records have expired to
    /// be worth a scan. Only records whose every update the trace already
    /// holds can be retired: those that expired before its upper bound
    /// (updates after expiry are not admitted). Later ones may still have
    /// an update on its way, as a deletion, and are left for a later scan.
    fn due(&self) -> Option<Time> {
        if self.in_flight.is_some() {
            return None;
        }
        let sealed = *self.upper.as_option()?;
        // Only buckets expired in full: their every record is due. Counted
        // by magnitude: a record left with a negative count (a deletion
        // that broke the horizon contract) must be retired too, and must
        // not hide a positive one of another bucket from the sum.
        let expired: isize = self
            .live_by_bucket
            .range(..(sealed >> EXPIRY_BUCKET_SHIFT))
            .map(|(_, live)| live.saturating_abs())
            .fold(0, isize::saturating_add);
        (expired > 0 && expired.saturating_mul(SCAN_WHEN_EXPIRED_ONE_IN) >= self.live)
            .then_some(sealed)
    }

    /// Gives, at `now`, the cancellation of every record of the trace
    /// that expired before `sealed`.
    fn retire<K, V, F>(
        &mut self,
        trace: &mut TraceAgent<ValSpine<K, V, Time, isize>>,
        sealed: Time,
        now: Time,
        expiry: &F,
        mut give: impl FnMut(Update<K, V>),
    ) where
        K: ExchangeData,
        V: ExchangeData,
        F: Fn(&K, &V) -> Time,
    {
        let Some(batches) = trace.batches_through(self.upper.borrow()) else {
            return;
        };
        let (mut cursor, storage) = cursor_list(batches);
        while let Some(key) = cursor.get_key(&storage) {
            while let Some(value) = cursor.get_val(&storage) {
                if expiry(key, value) < sealed {
                    let mut count = 0;
                    cursor.map_times(&storage, |_time, diff| count += *diff);
                    if count != 0 {
                        give(((key.clone(), value.clone()), now, -count));
                    }
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        self.in_flight = Some(now);
    }
}
