//! What the workers of a run tell each other to restart without loss or
//! double counting: whether replay is over, when the sinks may reconcile
//! their topics, whether offsets may be committed, the event time that idle
//! workers follow, and whether the run is stopping or has failed.
//!
//! Each worker owns one [`WorkerStatus`], whose fields only ever grow. The
//! workers of a process share a [`Resume`] holding every worker's status;
//! a worker writes its own there, and [`Gossip`] broadcasts it through a
//! small dataflow of its own to every worker of the cluster, whose
//! processes merge it into theirs. So the decisions below read the same
//! way in one process and in several: remote statuses arrive a little
//! later, and as every field only grows, a late or repeated status never
//! takes back what a worker has learnt.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Input;
use timely::dataflow::InputHandle;
use timely::worker::Worker;

use crate::pipeline::Time;
use crate::timestamp::Millis;

/// What one worker has told the others. Every field only grows
/// ([`WorkerStatus::merge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerStatus {
    /// The worker has built its dataflow (so `sinks` is complete) and
    /// started reading.
    started: bool,
    /// It has read up to the offsets committed by the last run, and every
    /// event it read until then entered the dataflow before this time.
    replayed: Option<Time>,
    /// It stopped before it had read up to those offsets: the sinks' state
    /// is partial, so no topic may be reconciled with it and no offset
    /// committed.
    abandoned: bool,
    /// Its Kafka sinks that write (one per output topic).
    sinks: usize,
    /// Of those, how many have reconciled their topic with the replayed state.
    reconciled: usize,
    /// One of its sinks could not deliver: offsets must not be committed.
    sink_failed: bool,
    /// It could not start (its source did not open) or was aborted: the
    /// run fails.
    fatal: bool,
    /// It was asked to finish or stop (as [`super::Shutdown`]'s states).
    shutdown: u8,
    /// The largest event-time basis it advanced its clock from;
    /// `Millis::MIN` before any.
    basis: Millis,
    /// Every result at a time before this has been produced by its sinks
    /// and acknowledged by the broker.
    emitted: Time,
}

impl Default for WorkerStatus {
    fn default() -> Self {
        WorkerStatus {
            started: false,
            replayed: None,
            abandoned: false,
            sinks: 0,
            reconciled: 0,
            sink_failed: false,
            fatal: false,
            shutdown: 0,
            basis: Millis::MIN,
            emitted: 0,
        }
    }
}

impl WorkerStatus {
    /// Everything either status says.
    fn merge(&mut self, other: &WorkerStatus) {
        self.started |= other.started;
        self.replayed = self.replayed.max(other.replayed);
        self.abandoned |= other.abandoned;
        self.sinks = self.sinks.max(other.sinks);
        self.reconciled = self.reconciled.max(other.reconciled);
        self.sink_failed |= other.sink_failed;
        self.fatal |= other.fatal;
        self.shutdown = self.shutdown.max(other.shutdown);
        self.basis = self.basis.max(other.basis);
        self.emitted = self.emitted.max(other.emitted);
    }
}

/// Every worker's status, as this process knows it; shared by its workers.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    workers: Mutex<Vec<WorkerStatus>>,
}

impl Resume {
    fn lock(&self) -> MutexGuard<'_, Vec<WorkerStatus>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes worker `worker`'s own status.
    fn update(&self, worker: usize, change: impl FnOnce(&mut WorkerStatus)) {
        if let Some(status) = self.lock().get_mut(worker) {
            change(status);
        }
    }

    /// The cluster has `peers` workers.
    pub(crate) fn size(&self, peers: usize) {
        let mut workers = self.lock();
        if workers.len() < peers {
            workers.resize(peers, WorkerStatus::default());
        }
    }

    /// Worker `worker`'s status as this process knows it.
    fn status(&self, worker: usize) -> WorkerStatus {
        self.lock().get(worker).copied().unwrap_or_default()
    }

    /// Folds in what worker `worker` told the cluster.
    fn merge(&self, worker: usize, status: &WorkerStatus) {
        self.update(worker, |known| known.merge(status));
    }

    /// As if worker `worker`, in another process, had told that it has
    /// started and replayed before `bound`.
    #[cfg(test)]
    pub(crate) fn hear_replayed(&self, worker: usize, bound: Time) {
        let status = WorkerStatus {
            started: true,
            replayed: Some(bound),
            ..WorkerStatus::default()
        };
        self.merge(worker, &status);
    }

    /// Whether `holds` holds for any worker's status as known here.
    fn any_worker(&self, holds: impl Fn(&WorkerStatus) -> bool) -> bool {
        self.lock().iter().any(holds)
    }

    /// Whether every worker of the cluster has started, and `all` holds
    /// for each.
    fn every_worker(&self, all: impl Fn(&WorkerStatus) -> bool) -> bool {
        let workers = self.lock();
        !workers.is_empty() && workers.iter().all(|status| status.started && all(status))
    }

    /// Worker `worker` has built its dataflow and starts reading.
    pub(crate) fn started(&self, worker: usize) {
        self.update(worker, |status| status.started = true);
    }

    /// Worker `worker` has read up to its committed offsets; everything it
    /// read so far entered the dataflow before `bound`.
    pub(crate) fn replay_done(&self, worker: usize, bound: Time) {
        self.update(worker, |status| status.replayed = Some(bound));
    }

    /// Worker `worker` stopped before it had read up to its committed
    /// offsets.
    pub(crate) fn abandon_replay(&self, worker: usize) {
        self.update(worker, |status| status.abandoned = true);
    }

    /// Whether a worker stopped before it had replayed.
    fn replay_abandoned(&self) -> bool {
        self.any_worker(|status| status.abandoned)
    }

    /// Once every worker has replayed: the time a sink's input frontier must
    /// pass before its state holds every replayed event. Never if a worker
    /// stopped before it had.
    pub(crate) fn reconcile_at(&self) -> Option<Time> {
        if !self.every_worker(|status| status.replayed.is_some()) || self.replay_abandoned() {
            return None;
        }
        self.lock()
            .iter()
            .filter_map(|status| status.replayed)
            .max()
    }

    /// Whether every sink of worker `worker` has reconciled its topic.
    pub(crate) fn sinks_reconciled(&self, worker: usize) -> bool {
        let status = self.status(worker);
        status.reconciled >= status.sinks
    }

    /// Whether offsets may be committed: every worker's sinks have
    /// reconciled and none has failed. (Whether the results of given
    /// offsets are emitted is [`Resume::emitted_through`]'s to say.)
    pub(crate) fn committable(&self) -> bool {
        !self.commits_ended() && self.every_worker(|status| status.reconciled >= status.sinks)
    }

    /// Whether no offset will be committed in this run any more: a sink
    /// has failed, or a worker stopped before it had replayed.
    pub(crate) fn commits_ended(&self) -> bool {
        self.any_worker(|status| status.sink_failed || status.abandoned)
    }

    /// Worker `worker`'s sinks have produced, and the broker acknowledged,
    /// every result at a time before `time` (`Time::MAX`: all of them).
    pub(crate) fn emitted(&self, worker: usize, time: Time) {
        self.update(worker, |status| status.emitted = status.emitted.max(time));
    }

    /// Every result at a time before this has been emitted, by every worker.
    pub(crate) fn emitted_through(&self) -> Time {
        self.lock()
            .iter()
            .map(|status| status.emitted)
            .min()
            .unwrap_or(0)
    }

    /// Notes the event-time basis worker `worker` advanced its clock from.
    pub(crate) fn share_basis(&self, worker: usize, basis: Millis) {
        self.update(worker, |status| status.basis = status.basis.max(basis));
    }

    /// The largest basis any worker advanced from: a worker whose partitions
    /// are all idle follows it, so that it does not hold the frontier back.
    pub(crate) fn shared_basis(&self) -> Option<Millis> {
        let basis = self.lock().iter().map(|status| status.basis).max()?;
        (basis != Millis::MIN).then_some(basis)
    }

    /// Worker `worker` was asked to finish or stop (`state`, as
    /// [`super::Shutdown`] keeps it; an abort is told as a failure,
    /// [`Resume::fail_run`]).
    pub(crate) fn shut_down(&self, worker: usize, state: u8) {
        self.update(worker, |status| {
            status.shutdown = status.shutdown.max(state)
        });
    }

    /// The furthest any worker was asked to shut down: a stop asked of one
    /// process stops the cluster.
    pub(crate) fn shutdown(&self) -> u8 {
        self.lock()
            .iter()
            .map(|status| status.shutdown)
            .max()
            .unwrap_or(0)
    }

    /// Worker `worker` cannot run or was aborted: every worker aborts.
    pub(crate) fn fail_run(&self, worker: usize) {
        self.update(worker, |status| status.fatal = true);
    }

    /// Whether a worker could not run.
    pub(crate) fn run_failed(&self) -> bool {
        self.any_worker(|status| status.fatal)
    }

    /// Whether every worker knows that the run failed.
    fn all_know_run_failed(&self) -> bool {
        self.lock().iter().all(|status| status.fatal)
    }
}

/// A sink's view of [`Resume`]: its worker's status.
#[derive(Clone, Debug)]
pub(crate) struct WorkerResume {
    resume: Arc<Resume>,
    worker: usize,
}

impl WorkerResume {
    /// Worker `worker`'s part of `resume`.
    pub(crate) fn new(resume: &Arc<Resume>, worker: usize) -> WorkerResume {
        WorkerResume {
            resume: Arc::clone(resume),
            worker,
        }
    }

    /// A writing sink exists; commits wait for it to reconcile.
    pub(crate) fn register_sink(&self) {
        self.resume.update(self.worker, |status| status.sinks += 1);
    }

    /// A sink's topic now equals its state.
    pub(crate) fn sink_reconciled(&self) {
        self.resume
            .update(self.worker, |status| status.reconciled += 1);
    }

    /// A sink lost messages: from now on no offset is committed, so that a
    /// restart replays and reconciles what this run could not deliver.
    pub(crate) fn sink_failed(&self) {
        self.resume
            .update(self.worker, |status| status.sink_failed = true);
    }

    /// See [`Resume::reconcile_at`].
    pub(crate) fn reconcile_at(&self) -> Option<Time> {
        self.resume.reconcile_at()
    }

    /// Whether the sink will never reconcile in this run: the run failed,
    /// or a worker stopped before it had replayed.
    pub(crate) fn never_reconciles(&self) -> bool {
        self.resume.run_failed() || self.resume.replay_abandoned()
    }
}

/// A worker's line to the others: it broadcasts the worker's status to
/// every worker of the cluster whenever it has changed, and folds what the
/// others broadcast into this process's [`Resume`].
pub(crate) struct Gossip {
    input: InputHandle<u64, CapacityContainerBuilder<Vec<(usize, WorkerStatus)>>>,
    resume: Arc<Resume>,
    worker: usize,
    told: Option<WorkerStatus>,
}

impl Gossip {
    /// Builds the gossip dataflow on `worker`.
    pub(crate) fn install(worker: &mut Worker, resume: &Arc<Resume>) -> Gossip {
        let index = worker.index();
        let heard = Arc::clone(resume);
        let input = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, statuses) = scope.new_input::<Vec<(usize, WorkerStatus)>>();
            statuses
                .broadcast()
                .sink(Pipeline, "Kafka: worker statuses", move |(input, _)| {
                    input.for_each(|_time, statuses| {
                        for (worker, status) in statuses.iter() {
                            heard.merge(*worker, status);
                        }
                    });
                });
            input
        });
        Gossip {
            input,
            resume: Arc::clone(resume),
            worker: index,
            told: None,
        }
    }

    /// Broadcasts this worker's status if it changed since it was last told.
    /// The worker's next steps send it.
    pub(crate) fn tell(&mut self) {
        let status = self.resume.status(self.worker);
        if self.told != Some(status) {
            self.told = Some(status);
            self.input.send((self.worker, status));
            self.input.flush();
        }
    }

    /// Marks the run failed, tells the others, and steps `worker` until
    /// every worker knows (each does the same on learning it) or half a
    /// second has passed: enough for the news to leave this process, and
    /// a peer that is busy (or gone) is not waited for.
    pub(crate) fn fail_run(&mut self, worker: &mut Worker) {
        self.resume.fail_run(self.worker);
        self.tell();
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.resume.all_know_run_failed() && Instant::now() < deadline {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(workers: usize) -> Resume {
        let resume = Resume::default();
        resume.size(workers);
        for worker in 0..workers {
            resume.started(worker);
        }
        resume
    }

    #[test]
    fn reconciles_after_the_last_worker_and_commits_after_every_sink() {
        let resume = Arc::new(started(2));
        let sink = WorkerResume::new(&resume, 1);
        sink.register_sink();
        resume.replay_done(0, 30);
        assert_eq!(resume.reconcile_at(), None);
        resume.replay_done(1, 20);
        assert_eq!(resume.reconcile_at(), Some(30));
        assert!(!resume.committable());
        sink.sink_reconciled();
        assert!(resume.committable());
        sink.sink_failed();
        assert!(!resume.committable());
    }

    #[test]
    fn a_worker_stopped_before_it_replayed_stops_reconciliation_and_commits() {
        let resume = Arc::new(started(2));
        WorkerResume::new(&resume, 0).register_sink();
        resume.replay_done(0, 30);
        resume.abandon_replay(1);
        assert_eq!(resume.reconcile_at(), None);
        assert!(!resume.committable() && resume.commits_ended());
        assert!(WorkerResume::new(&resume, 0).never_reconciles());
    }

    #[test]
    fn nothing_is_decided_before_every_worker_has_started() {
        let resume = Resume::default();
        resume.size(2);
        resume.started(0);
        resume.replay_done(0, 10);
        assert_eq!(resume.reconcile_at(), None);
        assert!(!resume.committable(), "worker 1's sinks are not known yet");
        resume.merge(
            1,
            &WorkerStatus {
                started: true,
                replayed: Some(40),
                ..WorkerStatus::default()
            },
        );
        assert_eq!(resume.reconcile_at(), Some(40));
        assert!(resume.committable());
    }

    #[test]
    fn results_are_emitted_once_every_worker_has_flushed_past_them() {
        let resume = started(2);
        assert_eq!(resume.emitted_through(), 0);
        resume.emitted(1, 50);
        assert_eq!(resume.emitted_through(), 0);
        resume.emitted(0, 70);
        assert_eq!(resume.emitted_through(), 50);
        resume.emitted(1, 40);
        assert_eq!(resume.emitted_through(), 50, "never moves back");
        resume.emitted(1, Time::MAX);
        resume.emitted(0, Time::MAX);
        assert_eq!(resume.emitted_through(), Time::MAX);
    }

    #[test]
    fn a_late_or_repeated_status_never_takes_back_what_was_learnt() {
        let resume = started(2);
        let old = resume.status(1);
        resume.emitted(1, 90);
        resume.share_basis(1, 5_000);
        resume.shut_down(1, 2);
        resume.merge(1, &old);
        let now = resume.status(1);
        assert_eq!((now.emitted, now.basis, now.shutdown), (90, 5_000, 2));
        assert_eq!(resume.shutdown(), 2);
        assert_eq!(resume.shared_basis(), Some(5_000));
        assert!(!resume.run_failed());
        resume.fail_run(0);
        assert!(resume.run_failed() && !resume.all_know_run_failed());
    }
}
