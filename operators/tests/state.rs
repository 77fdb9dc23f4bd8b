//! State stays bounded on an endless stream: the whole pipeline (`analyze`)
//! over adgen traffic at a constant rate, with the streaming horizon, holds
//! as many arranged updates after six simulated weeks as after two, on 1
//! and 2 workers, with events stamped at their tick or at the frontier
//! (`Stamping`); without
//! a horizon (a backfill) the same measure grows with the stream, which
//! shows it sees the state. See docs/operators.md, "Bounded state".
//!
//! The measure is differential's own arrangement log (every trace batch and
//! batcher of every `arrange`, `join`, `reduce`, `count`), sampled once per
//! simulated day. Dedup keeps its state in its own operator; its gauge is
//! checked in `tests/dedup.rs`.
//!
//! ```text
//! cargo test -p adflow-operators --test state
//! ```

use std::sync::{Arc, Mutex};

use adflow::compaction;
use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::pipeline::{Admission, EventClock, Stamping, Time, TimeConfig};
use adflow::profile::ArrangedState;
use adflow::timestamp::{Millis, DAY_MS, HOUR_MS};
use adflow_datagen::{Generator, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::attribution::AttributionConfig;
use adflow_operators::testing::analytics_rows;
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// Events per simulated day: enough that every family keeps state.
const PER_DAY: u64 = 3_000;

/// adgen traffic over `days` at a constant rate, from a fixed user pool.
fn traffic(days: i64) -> Vec<Event> {
    let config = GeneratorConfig {
        seed: 11,
        events: PER_DAY * days.unsigned_abs(),
        span_ms: days * DAY_MS,
        users: Some(2_000),
        ..GeneratorConfig::default()
    };
    let mut validator = EventValidator::default();
    Generator::new(config)
        .filter_map(|generated| validator.validate_record(&generated.record).ok())
        .collect()
}

/// The arranged updates at each day boundary, summed over `workers`,
/// feeding `events` in arrival order from worker 0 (every worker advances
/// its input with the same clock, so all sample at the same boundaries).
fn arranged_per_day(events: &[Event], time: TimeConfig, workers: usize) -> Vec<i64> {
    // Short windows, so the steady state is reached within the first week:
    // state is bounded by the longest window plus the horizon.
    let config = AnalyticsConfig {
        attribution: AttributionConfig {
            click_window: 2 * DAY_MS,
            view_window: DAY_MS,
            ..AttributionConfig::default()
        },
        ..AnalyticsConfig::default()
    }
    .with_horizon_of(&time);
    let events = events.to_vec();
    let samples = Arc::new(Mutex::new(Vec::<i64>::new()));
    let result = Arc::clone(&samples);
    // Arrangements merge as the pipeline's do (`Pipeline::run`), so the
    // measure sees the state a pipeline holds, not merges left pending.
    let mut timely = timely::Config::process(workers);
    compaction::install(&mut timely.worker, compaction::IDLE_MERGE_EFFORT);
    timely::execute(timely, move |worker| {
        let state = ArrangedState::install(worker);
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Event, isize>();
            analytics_rows(events.analyze(&config)).probe_with(&probe);
            input
        });
        let mut clock = EventClock::new(time);
        let first_day = events.first().map_or(0, |event| event.ts / DAY_MS);
        let mut sampled_day = first_day;
        let mut samples = Vec::new();
        for chunk in events.chunks(500) {
            for event in chunk {
                match clock.admit(event.ts) {
                    Admission::OnTime(at) | Admission::Correction(at) if worker.index() == 0 => {
                        input.update_at(*event, at, 1)
                    }
                    Admission::OnTime(_) | Admission::Correction(_) | Admission::Late => {}
                }
            }
            if let Some(watermark) = clock.advance() {
                input.advance_to(watermark);
            }
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
            let day = Millis::try_from(*input.time()).unwrap_or(0) / DAY_MS;
            if day > sampled_day {
                sampled_day = day;
                samples.push(state.counts(worker).total());
            }
        }
        let mut result = result.lock().unwrap_or_else(|e| e.into_inner());
        let days = result.len().max(samples.len());
        result.resize(days, 0);
        for (total, sample) in result.iter_mut().zip(samples) {
            *total += sample;
        }
    })
    .and_then(|guards| {
        guards
            .join()
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
    })
    .unwrap_or_else(|error| panic!("dataflow failed: {error}"));
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    samples
}

/// The mean of the last week of daily samples: the steady state, where a
/// single sample may catch a transient (a click flood's verdicts are held
/// until the horizon retires them).
fn last_week(samples: &[i64]) -> i64 {
    let week = &samples[samples.len().saturating_sub(7)..];
    week.iter().sum::<i64>() / i64::try_from(week.len().max(1)).unwrap_or(1)
}

#[test]
fn arranged_state_stays_flat_with_a_horizon_and_grows_without() {
    let (short, long) = (traffic(14), traffic(42));
    for stamping in [Stamping::EventTick, Stamping::Frontier] {
        let stream = TimeConfig {
            tick: HOUR_MS,
            allowed_lateness: Some(HOUR_MS),
            horizon: Some(DAY_MS),
            stamping,
            ..TimeConfig::backfill()
        };
        let backfill = TimeConfig {
            horizon: None,
            ..stream
        };
        for workers in [1, 2] {
            assert_bounded_with_a_horizon(&short, &long, stream, backfill, workers);
        }
    }
}

fn assert_bounded_with_a_horizon(
    short: &[Event],
    long: &[Event],
    stream: TimeConfig,
    backfill: TimeConfig,
    workers: usize,
) {
    let bounded_short = last_week(&arranged_per_day(short, stream, workers));
    let bounded_long = last_week(&arranged_per_day(long, stream, workers));
    let unbounded_short = last_week(&arranged_per_day(short, backfill, workers));
    let unbounded_long = last_week(&arranged_per_day(long, backfill, workers));
    println!(
        "{workers} worker(s), arranged updates, mean of the last week: horizon 1 day: {bounded_short} over 2 weeks, {bounded_long} over 6 weeks; \
         no horizon: {unbounded_short} over 2 weeks, {unbounded_long} over 6 weeks"
    );
    assert!(bounded_short > 0);
    // Three times the stream, the same state (a fifth of slack: the two
    // runs' last weeks carry different traffic and anomalies).
    assert!(
        bounded_long * 5 <= bounded_short * 6,
        "{workers} worker(s): state grew from {bounded_short} to {bounded_long}"
    );
    // Without a horizon it grows with the stream: the measure sees the state.
    assert!(
        unbounded_long >= 2 * unbounded_short,
        "{workers} worker(s): {unbounded_short} → {unbounded_long}"
    );
}
