//! The pipeline as a timely cluster: 2 processes × 1 worker on localhost,
//! and 1 process × 2 workers, write exactly the files that 1 process × 1
//! worker writes (every output, compared as sorted lines). Each run's
//! hourly metrics changelog (updates at every hourly time, which a sink
//! writes once the frontier passes them, not at the end) sums to that
//! snapshot and shows campaigns by name at every time.
//!
//! The test re-runs its own binary as the cluster's processes: the child
//! runs `cluster_process`, which does nothing unless `ADFLOW_CLUSTER_DATA`
//! is set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use adflow::event::Id;
use adflow::pipeline::{cluster_config, KindCounts, Pipeline, RunSummary, TimeConfig};
use adflow::sinks::{NamedOutputs, OutputFormat, SinkMode, SinkSet};
use adflow::sources::discover;
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use adflow_operators::analytics::{AnalyticsConfig, AnalyticsExt};

/// Runs the full pipeline over `data` into CSV files in `out`, as process
/// `process` of `processes` with `workers` threads each. The hourly metrics
/// also go to `changes/metrics_hourly.csv` as a changelog: every update
/// with its time, written once the frontier passes that time.
fn backfill(
    data: &Path,
    out: &Path,
    changes: &Path,
    workers: usize,
    processes: usize,
    process: usize,
    hostfile: Option<&Path>,
) -> RunSummary {
    let files = discover(&[data.to_string_lossy()]).expect("discover");
    let timely = cluster_config(workers, processes, process, hostfile).expect("cluster config");
    let config = AnalyticsConfig::default().with_horizon_of(&TimeConfig::backfill());
    let sinks = SinkSet::new(out, OutputFormat::Csv);
    let changelog = SinkSet::new(changes, OutputFormat::Csv).with_mode(SinkMode::Changelog);
    let (worker_sinks, worker_changelog) = (sinks.clone(), changelog.clone());
    let summary = Pipeline::new(files)
        .timely_config(timely)
        .run(move |_scope, streams| {
            let models = config.attribution.models.clone();
            let analytics = streams.events.analyze(&config);
            worker_changelog
                .attach(&streams.probe)
                .output("metrics_hourly", analytics.metrics.hourly.clone());
            analytics.emit(
                &models,
                streams.dead_letters,
                &mut worker_sinks.attach(&streams.probe),
            );
        })
        .expect("pipeline runs");
    for handle in sinks.handles().into_iter().chain(changelog.handles()) {
        let report = handle.report();
        assert!(report.is_ok(), "{report:?}");
    }
    summary
}

/// The rows a changelog (CSV text, `time` and `diff` last) sums to, as
/// sorted lines: what the snapshot of the same output holds; and how many
/// distinct times it has updates at.
fn changelog_sum(text: &str) -> (Vec<String>, usize) {
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let header = header
        .strip_suffix(",time,diff")
        .expect("time and diff columns last");
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    let mut times = BTreeSet::new();
    for line in lines {
        let (rest, diff) = line.rsplit_once(',').expect("diff column");
        let (row, time) = rest.rsplit_once(',').expect("time column");
        *sums.entry(row).or_default() += diff.parse::<i64>().expect("diff");
        times.insert(time);
    }
    let mut rows = vec![header.to_owned()];
    for (row, sum) in sums {
        assert!(sum >= 0, "{row} sums to {sum}");
        rows.extend(std::iter::repeat_n(
            row.to_owned(),
            usize::try_from(sum).unwrap_or(0),
        ));
    }
    rows.sort();
    (rows, times.len())
}

/// Checks the changelog in `changes` against the snapshot in `outputs`,
/// and that it names every campaign of `only` at every time it shows it:
/// the process that writes it must know the names another process read
/// before the frontier lets it write their rows.
fn check_changelog(changes: &Path, outputs: &[(String, Vec<String>)], only: &[String]) {
    let (_, hourly) = outputs
        .iter()
        .find(|(name, _)| name == "metrics_hourly.csv")
        .expect("hourly metrics written");
    let path = changes.join("metrics_hourly.csv");
    let text = std::fs::read_to_string(&path).expect("read changelog");
    let (sum, times) = changelog_sum(&text);
    assert!(
        &sum == hourly,
        "{} does not sum to the snapshot",
        path.display()
    );
    assert!(times > 24, "written over many hours: {times}");
    for campaign in only {
        let ad = format!("{campaign}-ad");
        let named = format!(",{campaign},{ad},");
        assert!(text.contains(&named), "{campaign} and its ad are named");
        for text_id in [campaign.as_str(), ad.as_str()] {
            let hex = format!(",{:016x},", Id::of(text_id).expect("an id").get());
            assert!(!text.contains(&hex), "{text_id} is shown as {hex}");
        }
    }
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
        Path::new(&var("ADFLOW_CLUSTER_CHANGES")),
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
    let single_changes = dir.path().join("single-changes");
    let single_summary = backfill(&data, &single, &single_changes, 1, 1, 0, None);
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

    check_changelog(&single_changes, &expected, &only);

    let threads = dir.path().join("threads");
    let threads_changes = dir.path().join("threads-changes");
    backfill(&data, &threads, &threads_changes, 2, 1, 0, None);
    assert!(
        sorted_outputs(&threads) == expected,
        "1 process × 2 workers differs"
    );
    check_changelog(&threads_changes, &expected, &only);

    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("write hostfile");
    let processes = dir.path().join("processes");
    let processes_changes = dir.path().join("processes-changes");
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
                .env("ADFLOW_CLUSTER_CHANGES", &processes_changes)
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
    check_changelog(&processes_changes, &expected, &only);
    let text = std::fs::read_to_string(&counts).expect("process 0 wrote the cluster's counts");
    let (events, dead_letters): (KindCounts, u64) = serde_json::from_str(&text).expect("counts");
    assert_eq!(events, single_summary.events);
    assert_eq!(dead_letters, single_summary.dead_letters.total());
    assert_eq!(dead_letters, 1);
}
