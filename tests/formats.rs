//! The same adgen events read from JSONL and from Parquet are the same
//! events. adgen's Parquet dictionary-encodes its low-cardinality columns
//! (campaign, ad, publisher, user agent, country, …), which the reader
//! decodes as Arrow dictionaries and hashes once per entry; the JSONL path
//! hashes every row's text. Both must give identical `Event`s.

use std::path::Path;
use std::sync::Arc;

use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::sources::{discover, FileSource, Progress, RecordSource, WorkPlan};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};

fn read_all(dir: &Path) -> Vec<Event> {
    let plan = Arc::new(WorkPlan::new(
        discover(&[dir.to_string_lossy()]).expect("discover"),
    ));
    let mut source = FileSource::new(
        plan,
        0,
        1,
        EventValidator::default(),
        Arc::new(Progress::default()),
    );
    let mut records = Vec::new();
    while source.read_batch(&mut records, 4096) {}
    let mut events: Vec<Event> = records
        .into_iter()
        .map(|record| record.expect("adgen writes only valid events"))
        .collect();
    events.sort();
    events
}

#[test]
fn parquet_and_jsonl_of_the_same_events_read_the_same() {
    let config = GeneratorConfig {
        seed: 11,
        events: 30_000,
        ..GeneratorConfig::default()
    };
    let jsonl = tempfile::tempdir().expect("tempdir");
    let parquet = tempfile::tempdir().expect("tempdir");
    generate_to_dir(config.clone(), jsonl.path(), FileFormat::Jsonl).expect("adgen writes");
    generate_to_dir(config, parquet.path(), FileFormat::Parquet).expect("adgen writes");
    let from_jsonl = read_all(jsonl.path());
    let from_parquet = read_all(parquet.path());
    assert_eq!(from_jsonl.len(), 30_000);
    assert!(
        from_parquet == from_jsonl,
        "the two formats read differently"
    );
}
