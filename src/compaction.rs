//! Merging arrangements while their worker has nothing else to do.
//!
//! Differential keeps each arrangement as a few batches of geometrically
//! growing sizes and merges them a little at a time, paid for by the
//! updates that arrive. When updates stop, the merges stop too, half done:
//! the next few updates then pay for merges of millions of records that
//! the quiet period could have finished. That was part of why a late 1%
//! of events took anywhere from 106 to 397 ms after a backfill.
//!
//! [`install`] turns on differential's idle merging: an arrangement with a
//! merge in progress does `effort` records of it each time it is
//! scheduled and schedules itself again, so an idle worker finishes the
//! merges, as Materialize's workers do. It also counts those requests on
//! the worker's thread, so that [`settle`] can step a worker until every
//! arrangement it maintains has finished its merges.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::trace::ExertionLogic;
use timely::worker::Worker;

/// Records of merge work an arrangement with a merge in progress does per
/// scheduling: small next to the tens of thousands of updates a busy
/// scheduling brings, so it barely slows a busy worker down.
pub const IDLE_MERGE_EFFORT: usize = 10_000;

thread_local! {
    /// Schedulings on this thread in which an arrangement asked for merge
    /// work. Each worker is a thread, and runs its arrangements' logic.
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
    /// Whether [`settle`] is running on this thread.
    static SETTLING: Cell<bool> = const { Cell::new(false) };
}

/// Sets `config` (the workers', before the dataflows are built) so that
/// arrangements with a merge in progress do `effort` records of it per
/// scheduling until it is done, whether or not updates arrive.
///
/// ```
/// use std::time::Duration;
/// use adflow::compaction::{install, settle, IDLE_MERGE_EFFORT};
/// use differential_dataflow::input::Input;
/// use differential_dataflow::operators::CountTotal;
/// use timely::dataflow::operators::Probe;
/// use timely::dataflow::ProbeHandle;
///
/// let mut config = timely::Config::process(2);
/// install(&mut config.worker, IDLE_MERGE_EFFORT);
/// timely::execute(config, |worker| {
///     let probe = ProbeHandle::new();
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, numbers) = scope.new_collection::<u64, isize>();
///         numbers
///             .arrange_by_self_named("Numbers")
///             .count_total_core::<isize>()
///             .probe_with(&probe);
///         input
///     });
///     // One batch per round, each a hundred times smaller than the one
///     // before: each lands in a layer of its own, so no merge starts
///     // while updates arrive, and three batches are left side by side.
///     for (round, size) in [20_000u64, 200, 2].into_iter().enumerate() {
///         let round = round as u64;
///         if worker.index() == 0 {
///             for n in 0..size {
///                 input.insert(round * 100_000 + n);
///             }
///         }
///         input.advance_to(round + 1);
///         input.flush();
///         worker.step_while(|| probe.less_than(&(round + 1)));
///     }
///     // Idle now: the frontier moving on schedules the arrangement, and
///     // settling merges the batches into one.
///     input.advance_to(4);
///     input.flush();
///     let merging = settle(worker, Duration::from_secs(10), || !probe.less_than(&4));
///     assert!(merging.is_some_and(|steps| steps > 0));
/// })
/// .unwrap();
/// ```
pub fn install(config: &mut timely::WorkerConfig, effort: usize) {
    differential_dataflow::configure(
        config,
        &differential_dataflow::Config {
            idle_merge_effort: Some(isize::try_from(effort).unwrap_or(isize::MAX)),
        },
    );
    // Busy, work only while a layer holds a merge in progress (two
    // batches). Differential's own rule also works while more than one
    // layer holds a batch, which merges each small new batch into the
    // largest at once: after a backfill, a late 1% then paid for
    // rewriting millions of records. Finishing started merges keeps the
    // geometric sizes, and with them the amortized cost of each update.
    // Settling, work until one batch is left: the merges the next updates
    // would start are done before they arrive.
    let logic: ExertionLogic = Arc::new(move |layers| {
        let settling = SETTLING.with(Cell::get);
        let mut non_empty = 0;
        let work = layers.iter().any(|&(_, batches, length)| {
            non_empty += usize::from(length > 0);
            batches > 1 || (settling && non_empty > 1)
        });
        work.then(|| {
            REQUESTS.with(|requests| requests.set(requests.get() + 1));
            effort
        })
    });
    config.set("differential/default_exert_logic".to_owned(), logic);
}

/// Steps `worker`, whose configuration went through [`install`], until
/// every arrangement it maintains is a single batch, merging the batches
/// left side by side too (which a busy worker leaves for later): call it
/// when the worker is idle, so that the next updates start no large merge.
/// Returns how many steps did merge work, or `None` if `limit` passed
/// first.
///
/// An arrangement asks for work only when it is scheduled, which an idle
/// one is not. So the caller first advances the dataflow's inputs (by a
/// tick, with no data), and `caught_up` tells when that frontier has
/// reached the outputs (a probe): on its way it scheduled every operator
/// upstream of them.
pub fn settle(
    worker: &mut Worker,
    limit: Duration,
    mut caught_up: impl FnMut() -> bool,
) -> Option<usize> {
    let requests = || REQUESTS.with(Cell::get);
    let started = Instant::now();
    SETTLING.with(|settling| settling.set(true));
    let mut merging_steps = 0;
    let mut reached = false;
    let settled = loop {
        let before = requests();
        worker.step();
        // Arrangements that still have work asked for it at the end of
        // their last scheduling and were scheduled again in this step.
        if requests() == before {
            if reached {
                break Some(merging_steps);
            }
        } else {
            merging_steps += 1;
        }
        reached = reached || caught_up();
        if started.elapsed() > limit {
            break None;
        }
    };
    SETTLING.with(|settling| settling.set(false));
    settled
}
