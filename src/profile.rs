//! Where a run spends its time: per timely operator, the wall time it was
//! scheduled for, summed over the workers of this process.
//!
//! Enabled with [`Pipeline::profile`](crate::pipeline::Pipeline::profile);
//! it reads timely's own scheduling log, so the operators need no change.
//! A scope's time includes the time of the operators inside it, which are
//! listed too (with a deeper `depth`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

/// Time spent in one operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorTime {
    /// The operator's name, as given to timely.
    pub name: String,
    /// Its address in the dataflow graph (dataflow index, then nested scopes).
    pub address: Vec<usize>,
    /// Scheduled wall time, summed over workers.
    pub elapsed: Duration,
    /// Times it was scheduled.
    pub schedulings: u64,
}

impl OperatorTime {
    /// Nesting depth: 2 for an operator directly in a dataflow.
    pub fn depth(&self) -> usize {
        self.address.len()
    }
}

#[derive(Default)]
struct Recorder {
    operators: HashMap<usize, OperatorTime>,
    started: HashMap<usize, Duration>,
}

/// A worker's recording, filled by timely's log while the worker runs.
pub struct WorkerProfile(Rc<RefCell<Recorder>>);

impl WorkerProfile {
    /// Starts recording on this worker; call before building dataflows.
    pub fn install(worker: &mut Worker) -> WorkerProfile {
        let recorder = Rc::new(RefCell::new(Recorder::default()));
        let sink = Rc::clone(&recorder);
        if let Some(mut registry) = worker.log_register() {
            registry.insert::<TimelyEventBuilder, _>("timely", move |_, events| {
                let Some(events) = events else { return };
                let mut recorder = sink.borrow_mut();
                for (at, event) in events.iter() {
                    match event {
                        TimelyEvent::Operates(op) => {
                            recorder.operators.insert(
                                op.id,
                                OperatorTime {
                                    name: op.name.clone(),
                                    address: op.addr.clone(),
                                    elapsed: Duration::ZERO,
                                    schedulings: 0,
                                },
                            );
                        }
                        TimelyEvent::Schedule(schedule) => match schedule.start_stop {
                            StartStop::Start => {
                                recorder.started.insert(schedule.id, *at);
                            }
                            StartStop::Stop => {
                                if let Some(start) = recorder.started.remove(&schedule.id) {
                                    if let Some(op) = recorder.operators.get_mut(&schedule.id) {
                                        op.elapsed += at.saturating_sub(start);
                                        op.schedulings += 1;
                                    }
                                }
                            }
                        },
                        _ => {}
                    }
                }
            });
        }
        WorkerProfile(recorder)
    }

    /// What was recorded so far (recording goes on).
    pub fn snapshot(&self, worker: &mut Worker) -> Vec<OperatorTime> {
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
        }
        let recorder = self.0.borrow();
        recorder.operators.values().cloned().collect()
    }

    /// Stops recording and returns what was recorded.
    pub fn finish(self, worker: &mut Worker) -> Vec<OperatorTime> {
        let recorded = self.snapshot(worker);
        if let Some(mut registry) = worker.log_register() {
            registry.remove("timely");
        }
        recorded
    }
}

/// The time spent in each operator between two snapshots of one worker.
pub fn since(before: &[OperatorTime], after: Vec<OperatorTime>) -> Vec<OperatorTime> {
    after
        .into_iter()
        .map(|mut op| {
            if let Some(old) = before
                .iter()
                .find(|old| old.address == op.address && old.name == op.name)
            {
                op.elapsed = op.elapsed.saturating_sub(old.elapsed);
                op.schedulings = op.schedulings.saturating_sub(old.schedulings);
            }
            op
        })
        .collect()
}

/// Adds `more` into `total`, matching operators by address and name.
pub fn merge(total: &mut Vec<OperatorTime>, more: Vec<OperatorTime>) {
    for op in more {
        match total
            .iter_mut()
            .find(|known| known.address == op.address && known.name == op.name)
        {
            Some(known) => {
                known.elapsed += op.elapsed;
                known.schedulings += op.schedulings;
            }
            None => total.push(op),
        }
    }
    total.sort_by_key(|op| std::cmp::Reverse(op.elapsed));
}
