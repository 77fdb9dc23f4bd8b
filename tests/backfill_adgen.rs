//! A backfill of 1M adgen events from Parquet counts exactly what adgen
//! wrote, per kind, with 1 and 2 workers; the hourly counts agree too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use adflow::counts::{hourly_kind_counts, HourlyKindCount};
use adflow::event::EventKind;
use adflow::pipeline::Pipeline;
use adflow::sources::discover;
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};

#[test]
fn backfill_of_a_million_parquet_events_counts_what_adgen_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = GeneratorConfig {
        seed: 3,
        events: 1_000_000,
        ..GeneratorConfig::default()
    };
    let generated = generate_to_dir(config, dir.path(), FileFormat::Parquet).expect("adgen writes");
    assert_eq!(generated.rows, 1_000_000);
    let inputs = discover(&[dir.path().to_string_lossy()]).expect("discover");
    assert!(inputs.len() > 1, "partitioned by date into several files");

    let mut hourly_per_run = Vec::new();
    for workers in [1, 2] {
        let hourly = Arc::new(Mutex::new(BTreeMap::<HourlyKindCount, isize>::new()));
        let sink = Arc::clone(&hourly);
        let summary = Pipeline::new(inputs.clone())
            .workers(workers)
            .run(move |_scope, streams| {
                let sink = Arc::clone(&sink);
                hourly_kind_counts(streams.events)
                    .inspect(move |(count, _time, diff)| {
                        *sink.lock().expect("lock").entry(count.clone()).or_default() += diff;
                    })
                    .probe_with(&streams.probe);
            })
            .expect("pipeline runs");

        assert_eq!(summary.dead_letters.total(), 0, "workers = {workers}");
        for kind in EventKind::ALL {
            assert_eq!(
                Some(&summary.events.get(kind)),
                generated.rows_per_kind.get(kind.as_str()),
                "{kind} with {workers} workers"
            );
        }
        let mut hourly = std::mem::take(&mut *hourly.lock().expect("lock"));
        hourly.retain(|_, diff| *diff != 0);
        assert!(hourly.values().all(|diff| *diff == 1));
        let mut per_kind = BTreeMap::new();
        for count in hourly.keys() {
            *per_kind.entry(count.kind).or_insert(0u64) += count.count as u64;
        }
        for kind in EventKind::ALL {
            assert_eq!(per_kind.get(&kind).copied(), Some(summary.events.get(kind)));
        }
        hourly_per_run.push(hourly);
    }
    assert_eq!(hourly_per_run[0], hourly_per_run[1]);
}
