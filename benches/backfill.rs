//! End-to-end backfill benchmark: the whole pipeline (dedup, fraud,
//! attribution under five models, metrics with rollups) over adgen events
//! from Parquet, against the sequential reference on the same data in the
//! same run; then 1% of the events held back and applied to a finished run.
//!
//! ```text
//! cargo bench --bench backfill                                  # 10M events, 1 and 2 workers
//! ADFLOW_E2E_EVENTS=1000000 cargo bench --bench backfill        # a quick look
//! ADFLOW_E2E_WORKERS=2 ADFLOW_E2E_LATE_PERCENT=1 cargo bench --bench backfill
//! ```
//!
//! Untimed: generating the events once (seed 7) into
//! `target/adflow-bench/backfill-<events>/` (reused by later runs), and
//! checking every answer against the reference after its time is taken.
//!
//! Timed, each from the Parquet files to a consolidated answer in memory:
//! - `reference`: read every file on one thread, then
//!   `reference::analytics::analyze` (plain sorts and loops, no dataflow);
//! - `reading only, W workers`: [`Pipeline`] reading, validating and
//!   feeding every event into a dataflow that drops them, the most any
//!   dataflow on this reader could do;
//! - `dataflow, W workers`: [`Pipeline`] with `analyze`, every output
//!   accumulated per worker as the sinks do;
//! - `late 1%`: a dataflow fed 99% of the events (in memory, on W workers,
//!   through the pipeline's clock) runs to completion; then the held-back
//!   1%, a seeded random sample from the whole history, arrives behind the
//!   frontier and is applied as corrections. Its time, from the first late
//!   insert until every output has caught up, is compared with re-running
//!   the whole backfill (the `dataflow, W workers` time). The final answer
//!   must again equal the reference on all events.
//!
//! With `ADFLOW_E2E_PROFILE=1` each worker prints the operators that took
//! the most time in the late phase.
//!
//! Throughput is input events per second of wall time. Results print as a
//! Markdown table for `docs/benchmarks.md`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use adflow::pipeline::TimeConfig;
use adflow::sources::discover;
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};
use adflow_operators::fraud::FraudConfig;
use adflow_operators::reference::analytics::analyze;
use adflow_operators::testing::analytics_rows;

#[path = "support/e2e.rs"]
mod e2e;

use e2e::{
    check, consolidate, dataset, env_list, env_or, late_run, pipeline_run, read_all, LateRun,
};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let events: u64 = env_or("ADFLOW_E2E_EVENTS", 10_000_000);
    let late_percent: f64 = env_or("ADFLOW_E2E_LATE_PERCENT", 1.0);
    let workers: Vec<usize> = env_list("ADFLOW_E2E_WORKERS", "1,2");

    let dir = dataset(events)?;
    let inputs = discover(&[dir.to_string_lossy()])?;
    let config = analytics_config()?;
    let mut table = Vec::new();

    let started = Instant::now();
    // Shared, not copied, with the workers of the late run.
    let all = Arc::new(read_all(&inputs));
    let expected = consolidate(analyze(&all, &config).into_iter().map(|row| (row, 1)));
    let reference = started.elapsed();
    println!(
        "reference: {} events, {} output rows in {reference:.2?}",
        all.len(),
        expected.len()
    );
    table.push(("reference (sequential)".to_owned(), reference, None));

    for &workers in &workers {
        // The floor of any dataflow on this reader: read, validate and feed
        // every event into a dataflow that drops them.
        let (reading, nothing) =
            pipeline_run(&inputs, workers, TimeConfig::backfill(), |events| {
                events.filter(|_| false)
            })?;
        anyhow::ensure!(nothing.is_empty(), "the reading-only dataflow kept events");
        table.push((format!("reading only, {workers} workers"), reading, None));

        let analytics = config.clone();
        let (elapsed, answer) =
            pipeline_run(&inputs, workers, TimeConfig::backfill(), move |events| {
                analytics_rows(events.analyze(&analytics))
            })?;
        check(
            &format!("dataflow, {workers} workers"),
            &answer,
            &expected,
            "reference",
        );
        table.push((
            format!("dataflow, {workers} workers"),
            elapsed,
            Some(reference),
        ));

        let analytics = config.clone();
        let profile = std::env::var_os("ADFLOW_E2E_PROFILE").is_some();
        let LateRun {
            initial,
            compacted,
            late,
            answer,
        } = late_run(&all, workers, late_percent, profile, move |events| {
            analytics_rows(events.analyze(&analytics))
        });
        check(
            &format!("late {late_percent}%, {workers} workers"),
            &answer,
            &expected,
            "reference",
        );
        println!(
            "late {late_percent}% on {workers} workers: first {:.2?} in memory, {compacted:.2?} idle merging, then the late events in {late:.2?}: {:.0}× faster than re-running the backfill ({elapsed:.2?})",
            initial,
            elapsed.as_secs_f64() / late.as_secs_f64()
        );
        table.push((
            format!("apply {late_percent}% late events to a finished run, {workers} workers"),
            late,
            None,
        ));
    }

    println!();
    println!("| run | wall time | events/s | vs reference |");
    println!("|---|---|---|---|");
    for (name, elapsed, baseline) in table {
        let rate = all.len() as f64 / elapsed.as_secs_f64();
        let ratio = baseline
            .map(|baseline| format!("{:.2}×", baseline.as_secs_f64() / elapsed.as_secs_f64()))
            .unwrap_or_default();
        println!("| {name} | {elapsed:.2?} | {:.3} M | {ratio} |", rate / 1e6);
    }
    Ok(())
}

/// The backfill example's defaults: the shipped datacenter ranges, every
/// model, backfill time (no horizon).
fn analytics_config() -> anyhow::Result<AnalyticsConfig> {
    let mut config = AnalyticsConfig::default().with_horizon_of(&TimeConfig::backfill());
    config.fraud.datacenter_cidrs = FraudConfig::load_datacenter_cidrs(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/fixtures/datacenter_cidrs.txt"),
    )?;
    Ok(config)
}
