//! adgen throughput: generating traffic straight to date-partitioned
//! Parquet, against a baseline in the same run that writes the same rows,
//! generated beforehand, with the same writer, and against generation alone
//! (no writing). `write-only` / `generate+write` is the share of the time the
//! writer takes; `generate-only` is the generator's own cost.
//!
//! ```text
//! cargo bench --bench adgen                 # full run (200K rows per iteration)
//! cargo bench --bench adgen -- --quick      # a quick estimate
//! ADGEN_BENCH_EVENTS=2000000 cargo bench --bench adgen -- --quick
//! ```
//!
//! One thread throughout: the generator and the writer run on one core.
//! Results are reported as elements (rows) per second.

use std::hint::black_box;

use adflow::event::EventRecord;
use adflow::write::{FileFormat, PartitionedWriter, WriteOptions};
use adflow_datagen::{
    generate_to_dir_with, GeneratedEvent, Generator, GeneratorConfig, OutputOptions,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

/// Fixed seed, as every adflow benchmark.
const SEED: u64 = 7;

fn events() -> u64 {
    std::env::var("ADGEN_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200_000)
}

fn config(events: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed: SEED,
        events,
        ..GeneratorConfig::default()
    }
}

/// Writes `records` to Parquet partitions under `dir`; returns the rows written.
fn write_records(records: &[EventRecord], dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut writer = PartitionedWriter::new(dir, FileFormat::Parquet, WriteOptions::default());
    for record in records {
        writer.write(record)?;
    }
    Ok(writer.finish()?.iter().map(|file| file.rows).sum())
}

fn adgen(c: &mut Criterion) {
    let events = events();
    let records: Vec<EventRecord> = Generator::new(config(events))
        .map(|event| event.record)
        .collect();

    // Check before timing: both paths write the same number of rows per kind.
    let check = || -> anyhow::Result<()> {
        let generated = tempfile::tempdir()?;
        let summary = generate_to_dir_with(
            config(events),
            generated.path(),
            FileFormat::Parquet,
            &OutputOptions::default(),
            |_| {},
        )?;
        let baseline = tempfile::tempdir()?;
        let written = write_records(&records, baseline.path())?;
        anyhow::ensure!(
            summary.rows == events && written == events,
            "row counts differ"
        );
        for (kind, rows) in &summary.rows_per_kind {
            let expected = records.iter().filter(|record| &record.kind == kind).count() as u64;
            anyhow::ensure!(*rows == expected, "{kind}: {rows} generated vs {expected}");
        }
        Ok(())
    };
    if let Err(error) = check() {
        panic!("adgen bench check failed: {error:#}");
    }

    let mut group = c.benchmark_group("adgen");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("generate+write-parquet", events), |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let options = OutputOptions::default();
                let summary = generate_to_dir_with(
                    config(events),
                    dir.path(),
                    FileFormat::Parquet,
                    &options,
                    |_| {},
                )
                .expect("generate");
                black_box(summary.rows);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("write-only-parquet", events), |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                black_box(write_records(&records, dir.path()).expect("write"));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("generate-only", events), |b| {
        b.iter(|| {
            let mut generator = Generator::new(config(events));
            let mut event = GeneratedEvent::default();
            let mut bytes = 0usize;
            while generator.next_into(&mut event) {
                bytes += event.record.event_id.len();
            }
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, adgen);
criterion_main!(benches);
