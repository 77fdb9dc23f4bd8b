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
    /// Timely's worker-unique operator id (the same on every worker).
    pub id: usize,
    /// The operator's name, as given to timely.
    pub name: String,
    /// Its address in the dataflow graph (dataflow index, then nested scopes).
    pub address: Vec<usize>,
    /// Scheduled wall time, summed over workers.
    pub elapsed: Duration,
    /// Times it was scheduled.
    pub schedulings: u64,
    /// The names of the operators that feed it, in its scope: what tells
    /// one `Join` or `FlatMap` from another.
    #[serde(default)]
    pub inputs: Vec<String>,
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
    /// Each channel's (source, target) operator address.
    channels: Vec<(Vec<usize>, Vec<usize>)>,
}

impl Recorder {
    /// The operators, each with the names of those that feed it.
    fn operators(&self) -> Vec<OperatorTime> {
        let names: HashMap<&[usize], &str> = self
            .operators
            .values()
            .map(|op| (op.address.as_slice(), op.name.as_str()))
            .collect();
        let mut inputs: HashMap<&[usize], Vec<String>> = HashMap::new();
        for (source, target) in &self.channels {
            // A scope's own inputs come from outside it and are left out.
            if let Some(name) = names.get(source.as_slice()) {
                let feeding = inputs.entry(target.as_slice()).or_default();
                if !feeding.iter().any(|known| known == name) {
                    feeding.push((*name).to_owned());
                }
            }
        }
        self.operators
            .values()
            .map(|op| OperatorTime {
                inputs: inputs.remove(op.address.as_slice()).unwrap_or_default(),
                ..op.clone()
            })
            .collect()
    }
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
                                    id: op.id,
                                    name: op.name.clone(),
                                    address: op.addr.clone(),
                                    elapsed: Duration::ZERO,
                                    schedulings: 0,
                                    inputs: Vec::new(),
                                },
                            );
                        }
                        TimelyEvent::Channels(channel) => {
                            let address_of = |index: usize| {
                                let mut address = channel.scope_addr.clone();
                                address.push(index);
                                address
                            };
                            recorder
                                .channels
                                .push((address_of(channel.source.0), address_of(channel.target.0)));
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
        self.0.borrow().operators()
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

/// Updates a worker holds in differential arrangements: in the traces'
/// batches (as the spine reports batches, merges and drops) and in the
/// batchers (updates waiting for their time to complete). This is the
/// state of every `arrange`, `join`, `reduce`, `count` and `distinct`;
/// custom operators that keep their own state (dedup) report it themselves.
///
/// Install before building the dataflows whose arrangements it should see.
pub struct ArrangedState(Rc<RefCell<(ArrangedCounts, HashMap<usize, i64>)>>);

/// The counts of an [`ArrangedState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrangedCounts {
    /// Updates in trace batches.
    pub traces: i64,
    /// Updates in batchers.
    pub batchers: i64,
}

impl ArrangedCounts {
    /// Updates held in total.
    pub fn total(&self) -> i64 {
        self.traces + self.batchers
    }
}

impl ArrangedState {
    /// Starts counting on this worker.
    pub fn install(worker: &mut Worker) -> ArrangedState {
        use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
        let counts = Rc::new(RefCell::new((ArrangedCounts::default(), HashMap::new())));
        let sink = Rc::clone(&counts);
        let size = |length: usize| i64::try_from(length).unwrap_or(i64::MAX);
        if let Some(mut registry) = worker.log_register() {
            registry.insert::<DifferentialEventBuilder, _>(
                "differential/arrange",
                move |_, events| {
                    let Some(events) = events else { return };
                    let (counts, by_operator) = &mut *sink.borrow_mut();
                    for (_, event) in events.iter() {
                        let (operator, traces, batchers) = match event {
                            DifferentialEvent::Batch(batch) => {
                                (batch.operator, size(batch.length), 0)
                            }
                            DifferentialEvent::Merge(merge) => match merge.complete {
                                Some(merged) => (
                                    merge.operator,
                                    size(merged) - size(merge.length1) - size(merge.length2),
                                    0,
                                ),
                                None => continue,
                            },
                            DifferentialEvent::Drop(drop) => (drop.operator, -size(drop.length), 0),
                            DifferentialEvent::Batcher(batcher) => {
                                (batcher.operator, 0, batcher.records_diff as i64)
                            }
                            _ => continue,
                        };
                        counts.traces += traces;
                        counts.batchers += batchers;
                        *by_operator.entry(operator).or_insert(0) += traces + batchers;
                    }
                },
            );
        }
        ArrangedState(counts)
    }

    /// The counts now.
    pub fn counts(&self, worker: &mut Worker) -> ArrangedCounts {
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
        }
        self.0.borrow().0
    }

    /// Updates held per operator (by timely operator id, as in
    /// [`WorkerProfile`]'s log), largest first.
    pub fn by_operator(&self, worker: &mut Worker) -> Vec<(usize, i64)> {
        self.counts(worker);
        let mut operators: Vec<(usize, i64)> =
            self.0.borrow().1.iter().map(|(id, n)| (*id, *n)).collect();
        operators.sort_by_key(|(id, n)| (std::cmp::Reverse(*n), *id));
        operators
    }
}
