//! What the workers and sinks of one process share to restart without loss
//! or double counting: whether replay is over, when the sinks may
//! reconcile their topics, whether offsets may be committed, and the
//! event time that idle workers follow.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crate::pipeline::Time;
use crate::timestamp::Millis;

/// Shared by every worker of a [`KafkaPipeline`](crate::kafka::KafkaPipeline) run.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Workers still reading below the offsets committed by the last run.
    replaying: AtomicUsize,
    /// Every event read during replay is at a time before this.
    resume_time: AtomicU64,
    /// Kafka sinks that write (one per output topic on every worker).
    sinks: AtomicUsize,
    /// Of those, how many have reconciled their topic with the replayed state.
    reconciled: AtomicUsize,
    /// A sink could not deliver: offsets must not be committed any more.
    failed: AtomicBool,
    /// The largest event-time basis any worker advanced its clock from
    /// (the least of its active partitions' largest event times, or what
    /// its idle partitions vouch for); `Millis::MIN` before any.
    basis: AtomicI64,
    /// Per worker: every result at a time before this has been produced by
    /// its sinks and acknowledged by the broker.
    emitted: Vec<AtomicU64>,
}

impl Resume {
    /// State for `workers` workers, all replaying until they say otherwise.
    pub(crate) fn new(workers: usize) -> Resume {
        Resume {
            replaying: AtomicUsize::new(workers),
            resume_time: AtomicU64::new(0),
            sinks: AtomicUsize::new(0),
            reconciled: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            basis: AtomicI64::new(Millis::MIN),
            emitted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A worker has read up to its committed offsets; everything it read so
    /// far entered the dataflow before `bound`.
    pub(crate) fn replay_done(&self, bound: Time) {
        self.resume_time.fetch_max(bound, Ordering::SeqCst);
        self.replaying.fetch_sub(1, Ordering::SeqCst);
    }

    /// Once every worker has replayed: the time a sink's input frontier must
    /// pass before its state holds every replayed event.
    pub(crate) fn reconcile_at(&self) -> Option<Time> {
        (self.replaying.load(Ordering::SeqCst) == 0)
            .then(|| self.resume_time.load(Ordering::SeqCst))
    }

    /// A writing sink exists; commits wait for it to reconcile.
    pub(crate) fn register_sink(&self) {
        self.sinks.fetch_add(1, Ordering::SeqCst);
    }

    /// A sink's topic now equals its state.
    pub(crate) fn sink_reconciled(&self) {
        self.reconciled.fetch_add(1, Ordering::SeqCst);
    }

    /// A sink lost messages: from now on no offset is committed, so that a
    /// restart replays and reconciles what this run could not deliver.
    pub(crate) fn sink_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether offsets may be committed: every sink has reconciled and none
    /// has failed. (Whether the results of given offsets are emitted is the
    /// probe's to say.)
    pub(crate) fn committable(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
            && self.reconciled.load(Ordering::SeqCst) >= self.sinks.load(Ordering::SeqCst)
    }

    /// Worker `worker`'s sinks have produced, and the broker acknowledged,
    /// every result at a time before `time` (`Time::MAX`: all of them).
    pub(crate) fn emitted(&self, worker: usize, time: Time) {
        if let Some(emitted) = self.emitted.get(worker) {
            emitted.fetch_max(time, Ordering::SeqCst);
        }
    }

    /// Every result at a time before this has been emitted, by every worker.
    pub(crate) fn emitted_through(&self) -> Time {
        self.emitted
            .iter()
            .map(|emitted| emitted.load(Ordering::SeqCst))
            .min()
            .unwrap_or(Time::MAX)
    }

    /// Notes the event-time basis a worker advanced its clock from.
    pub(crate) fn share_basis(&self, basis: Millis) {
        self.basis.fetch_max(basis, Ordering::SeqCst);
    }

    /// The largest basis any worker advanced from: a worker whose partitions
    /// are all idle follows it, so that it does not hold the frontier back.
    pub(crate) fn shared_basis(&self) -> Option<Millis> {
        let basis = self.basis.load(Ordering::SeqCst);
        (basis != Millis::MIN).then_some(basis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_after_the_last_worker_and_commits_after_every_sink() {
        let resume = Resume::new(2);
        resume.register_sink();
        resume.replay_done(30);
        assert_eq!(resume.reconcile_at(), None);
        resume.replay_done(20);
        assert_eq!(resume.reconcile_at(), Some(30));
        assert!(!resume.committable());
        resume.sink_reconciled();
        assert!(resume.committable());
        resume.sink_failed();
        assert!(!resume.committable());
    }

    #[test]
    fn results_are_emitted_once_every_worker_has_flushed_past_them() {
        let resume = Resume::new(2);
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
}
