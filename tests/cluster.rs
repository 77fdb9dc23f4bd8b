//! The pipeline as a timely cluster: 2 processes × 1 worker on localhost,
//! and 1 process × 2 workers, write exactly the files that 1 process × 1
//! worker writes (every output, compared as sorted lines).
//!
//! The test re-runs its own binary as the cluster's processes: the child
//! runs `cluster_process`, which does nothing unless `ADFLOW_CLUSTER_DATA`
//! is set.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use adflow::pipeline::{cluster_config, KindCounts, Pipeline, RunSummary, TimeConfig};
use adflow::sinks::{OutputFormat, SinkSet};
use adflow::sources::discover;
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};

/// Runs the full pipeline over `data` into CSV files in `out`, as process
/// `process` of `processes` with `workers` threads each.
fn backfill(
    data: &Path,
    out: &Path,
    workers: usize,
    processes: usize,
    process: usize,
    hostfile: Option<&Path>,
) -> RunSummary {
    let files = discover(&[data.to_string_lossy()]).expect("discover");
    let timely = cluster_config(workers, processes, process, hostfile).expect("cluster config");
    let config = AnalyticsConfig::default().with_horizon_of(&TimeConfig::backfill());
    let sinks = SinkSet::new(out, OutputFormat::Csv);
    let worker_sinks = sinks.clone();
    let summary = Pipeline::new(files)
        .timely_config(timely)
        .run(move |_scope, streams| {
            let models = config.attribution.models.clone();
            streams.events.analyze(&config).emit(
                &models,
                streams.dead_letters,
                &mut worker_sinks.attach(&streams.probe),
            );
        })
        .expect("pipeline runs");
    for handle in sinks.handles() {
        let report = handle.report();
        assert!(report.is_ok(), "{report:?}");
    }
    summary
}

/// Every file in `dir`, each as its sorted lines.
fn sorted_outputs(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read output dir")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read output");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), lines)
        })
        .collect()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// One process of the cluster, when run by `cluster_matches_one_worker`.
#[test]
fn cluster_process() {
    let Ok(data) = std::env::var("ADFLOW_CLUSTER_DATA") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let process = var("ADFLOW_CLUSTER_PROCESS")
        .parse()
        .expect("process index");
    let summary = backfill(
        Path::new(&data),
        Path::new(&var("ADFLOW_CLUSTER_OUT")),
        1,
        2,
        process,
        Some(Path::new(&var("ADFLOW_CLUSTER_HOSTS"))),
    );
    // Process 0 reports the whole cluster's counts; the parent checks them.
    if let Some(cluster) = summary.cluster {
        let counts = serde_json::to_string(&(cluster.events, cluster.dead_letters.total()))
            .expect("counts as JSON");
        std::fs::write(var("ADFLOW_CLUSTER_SUMMARY"), counts).expect("write counts");
    }
}

#[test]
fn cluster_matches_one_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = GeneratorConfig {
        seed: 5,
        events: 30_000,
        ..GeneratorConfig::default()
    };
    generate_to_dir(config, &data, FileFormat::Parquet).expect("adgen writes");
    std::fs::write(data.join("bad.jsonl"), "not json\n").expect("write a bad line");
    // Campaigns each in one file only, so one worker's source alone sees
    // each name: output written by process 0 must name the ones process 1
    // read (broadcast before their events, `adflow::names`).
    let only: Vec<String> = (0..4)
        .map(|file| format!("cmp-only-in-file-{file}"))
        .collect();
    for (file, campaign) in only.iter().enumerate() {
        let line = format!(
            r#"{{"event_id":"only-{file}","kind":"click","ts":"2026-11-02T10:00:00Z","user_id":"u-only","campaign_id":"{campaign}","ad_id":"{campaign}-ad","cost":1}}"#
        );
        std::fs::write(data.join(format!("only-{file}.jsonl")), line + "\n")
            .expect("write a one-campaign file");
    }

    let single = dir.path().join("single");
    let single_summary = backfill(&data, &single, 1, 1, 0, None);
    assert!(single_summary.cluster.is_none());
    let expected = sorted_outputs(&single);
    assert_eq!(expected.len(), 13, "every output is written");
    assert!(expected.iter().all(|(_, lines)| !lines.is_empty()));
    let (_, daily) = expected
        .iter()
        .find(|(name, _)| name == "metrics_daily.csv")
        .expect("daily metrics written");
    for campaign in &only {
        let named = format!(",{campaign},{campaign}-ad,");
        assert!(
            daily.iter().any(|line| line.contains(&named)),
            "{campaign} is shown by name"
        );
    }

    let threads = dir.path().join("threads");
    backfill(&data, &threads, 2, 1, 0, None);
    assert!(
        sorted_outputs(&threads) == expected,
        "1 process × 2 workers differs"
    );

    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("write hostfile");
    let processes = dir.path().join("processes");
    let counts = dir.path().join("cluster-counts.json");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|process| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "cluster_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("ADFLOW_CLUSTER_DATA", &data)
                .env("ADFLOW_CLUSTER_OUT", &processes)
                .env("ADFLOW_CLUSTER_HOSTS", &hosts)
                .env("ADFLOW_CLUSTER_PROCESS", process.to_string())
                .env("ADFLOW_CLUSTER_SUMMARY", &counts)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a cluster process")
        })
        .collect();
    for (process, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("cluster process ends");
        assert!(output.status.success(), "process {process} failed");
    }
    assert!(
        sorted_outputs(&processes) == expected,
        "2 processes × 1 worker differ"
    );
    let text = std::fs::read_to_string(&counts).expect("process 0 wrote the cluster's counts");
    let (events, dead_letters): (KindCounts, u64) = serde_json::from_str(&text).expect("counts");
    assert_eq!(events, single_summary.events);
    assert_eq!(dead_letters, single_summary.dead_letters.total());
    assert_eq!(dead_letters, 1);
}
