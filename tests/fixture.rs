//! The hand-checked fixture (datasets/fixtures/events.jsonl) through the
//! pipeline, as JSONL, CSV and Parquet, with 1 and 2 workers: no dead
//! letters, and hourly counts equal to datasets/fixtures/expected_hourly_counts.csv.

use std::path::{Path, PathBuf};

use adflow::counts::hourly_kind_counts;
use adflow::parsing::EventValidator;
use adflow::pipeline::Pipeline;
use adflow::sinks::{OutputFormat, SinkExt, SinkSpec};
use adflow::sources::discover;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/fixtures")
}

/// Expected rows, sorted the way the snapshot sink sorts them: by their
/// rendered columns (hour, then kind as text).
fn expected_csv() -> String {
    let text = std::fs::read_to_string(fixtures().join("expected_hourly_counts.csv"))
        .expect("read expected counts");
    let mut lines: Vec<&str> = text.lines().skip(1).collect();
    lines.sort_by_key(|line| {
        let mut cells = line.split(',');
        let hour = cells.next().unwrap_or_default();
        let kind = cells.next().unwrap_or_default();
        (hour, kind)
    });
    format!("hour,kind,count\n{}\n", lines.join("\n"))
}

fn backfill(input: &Path, workers: usize) -> String {
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().to_path_buf();
    let summary = Pipeline::new(discover(&[input.to_string_lossy()]).expect("discover"))
        .workers(workers)
        .run(move |_scope, streams| {
            hourly_kind_counts(streams.events).sink(
                SinkSpec::file("hourly", &out_dir, OutputFormat::Csv),
                &streams.probe,
            );
        })
        .expect("pipeline runs");
    assert_eq!(summary.dead_letters.total(), 0, "{input:?}");
    assert_eq!(summary.events.total(), 271);
    std::fs::read_to_string(out.path().join("hourly.csv")).expect("read output")
}

#[test]
fn fixture_hourly_counts_match_the_hand_checked_file() {
    let expected = expected_csv();
    let jsonl = fixtures().join("events.jsonl");
    for workers in [1, 2] {
        assert_eq!(
            backfill(&jsonl, workers),
            expected,
            "jsonl, {workers} workers"
        );
    }

    // The same events re-encoded by adflow's writers must give the same answer.
    let text = std::fs::read_to_string(&jsonl).expect("read fixture");
    let records: Vec<adflow::event::EventRecord> = text
        .lines()
        .map(|line| {
            let raw = adflow::parsing::json::parse_json(line.as_bytes()).expect("valid line");
            let event = EventValidator::default()
                .validate(&raw)
                .expect("valid event");
            record_from_json(line, event.ts)
        })
        .collect();
    for format in [
        adflow::write::FileFormat::Csv,
        adflow::write::FileFormat::CsvGz,
        adflow::write::FileFormat::Parquet,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = adflow::write::PartitionedWriter::new(
            dir.path(),
            format,
            adflow::write::WriteOptions::default(),
        );
        for record in &records {
            writer.write(record).expect("write");
        }
        writer.finish().expect("finish");
        for workers in [1, 2] {
            assert_eq!(
                backfill(dir.path(), workers),
                expected,
                "{format:?}, {workers} workers"
            );
        }
    }
}

/// The wire record of a fixture line (money kept as exact micros).
fn record_from_json(line: &str, ts: i64) -> adflow::event::EventRecord {
    let value: serde_json::Value = serde_json::from_str(line).expect("json");
    let text = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let micros = |key: &str| {
        value
            .get(key)
            .map(|v| adflow::money::parse_micros(&v.to_string()).expect("money"))
            .unwrap_or(0)
    };
    adflow::event::EventRecord {
        event_id: text("event_id"),
        kind: text("kind"),
        ts,
        user_id: text("user_id"),
        device_id: text("device_id"),
        campaign_id: text("campaign_id"),
        ad_id: text("ad_id"),
        publisher_id: text("publisher_id"),
        ip: text("ip"),
        user_agent: text("user_agent"),
        country: text("country"),
        device_type: text("device_type"),
        cost_micros: micros("cost"),
        revenue_micros: micros("revenue"),
        conversion_type: text("conversion_type"),
        order_id: text("order_id"),
    }
}
