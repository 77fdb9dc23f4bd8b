//! Backfill and replay share one pipeline definition
//! (`Analytics::emit`): on the same adgen events, plus a file of bad
//! lines, every output's final contents are identical, whatever the time
//! configuration (hourly backfill ticks, or the stream's one-second ticks,
//! watermark and horizon), the worker count, or the replay speed.

use std::collections::BTreeMap;
use std::sync::Arc;

use adflow::parsing::EventValidator;
use adflow::pipeline::{Pipeline, TimeConfig};
use adflow::sources::replay::Replay;
use adflow::sources::{discover, InputFile, Progress, WorkPlan};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::outputs::output_names;
use adflow_operators::testing::CapturedOutputs;

type Outputs = BTreeMap<String, BTreeMap<String, isize>>;

fn run(pipeline: Pipeline, time: &TimeConfig) -> Outputs {
    let config = AnalyticsConfig::default().with_horizon_of(time);
    let captured = CapturedOutputs::default();
    let worker_captured = captured.clone();
    let summary = pipeline
        .run(move |_scope, streams| {
            let models = config.attribution.models.clone();
            streams.events.analyze(&config).emit(
                &models,
                streams.dead_letters,
                &mut worker_captured.attach(&streams.probe),
            );
        })
        .expect("pipeline runs");
    assert_eq!(summary.dead_letters.total(), 2, "the two bad lines");
    captured.finish()
}

fn replay(files: &[InputFile], workers: usize, speedup: Option<f64>) -> Outputs {
    let time = TimeConfig::stream();
    let progress = Arc::new(Progress::default());
    let validator = EventValidator::new(time.reference, time.max_clock_skew);
    let log = Replay::load(
        &WorkPlan::new(files.to_vec()),
        &validator,
        Arc::clone(&progress),
    )
    .speedup(speedup);
    let pipeline = Pipeline::replay(log, progress).workers(workers);
    run(pipeline, &time)
}

#[test]
fn backfill_and_replay_give_identical_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = GeneratorConfig {
        seed: 11,
        events: 40_000,
        ..GeneratorConfig::default()
    };
    generate_to_dir(config, dir.path(), FileFormat::Parquet).expect("adgen writes");
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "not json\n{\"event_id\":\"x\",\"kind\":\"click\"}\n",
    )
    .expect("write bad lines");
    let files = discover(&[dir.path().to_string_lossy()]).expect("discover");

    let time = TimeConfig::backfill();
    let backfill = run(Pipeline::new(files.clone()).time(time).workers(1), &time);
    let names: Vec<_> = backfill.keys().cloned().collect();
    let mut expected = output_names(&AnalyticsConfig::default().attribution.models);
    expected.sort();
    assert_eq!(names, expected, "every output is captured");
    for name in [
        "metrics_hourly",
        "attribution_linear",
        "fraud_flags",
        "duplicates",
    ] {
        assert!(!backfill[name].is_empty(), "{name} has rows");
    }
    assert_eq!(backfill["dead_letters"].len(), 2);

    for (workers, speedup) in [(2, None), (1, Some(2e6))] {
        let replayed = replay(&files, workers, speedup);
        for name in &names {
            assert!(
                replayed[name] == backfill[name],
                "{name} differs with {workers} workers at speed-up {speedup:?}"
            );
        }
    }
}
