//! End-to-end checks of adgen's output: determinism, traffic shape, every
//! anomaly present and truthfully labelled, manifest consistent with files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use adflow::event::{AgentClass, EventRecord};
use adflow::money::parse_micros;
use adflow::timestamp::{parse_rfc3339, Millis, SECOND_MS};
use adflow::write::FileFormat;
use adflow_datagen::catalog::datacenter_networks;
use adflow_datagen::{
    generate_to_dir, read_labels, Anomaly, GeneratedEvent, GenerationSummary, Generator,
    GeneratorConfig, LABELS_FILE,
};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const EVENTS: u64 = 200_000;

fn config(events: u64) -> GeneratorConfig {
    GeneratorConfig {
        events,
        seed: 11,
        ..GeneratorConfig::default()
    }
}

/// 200K rows of the default traffic, generated once for all tests.
fn stream() -> &'static [GeneratedEvent] {
    static ROWS: OnceLock<Vec<GeneratedEvent>> = OnceLock::new();
    ROWS.get_or_init(|| Generator::new(config(EVENTS)).collect())
}

fn has(event: &GeneratedEvent, anomaly: Anomaly) -> bool {
    event.labels.iter().any(|label| label.anomaly == anomaly)
}

fn ip(text: &str) -> u32 {
    text.parse::<std::net::Ipv4Addr>()
        .map(u32::from)
        .unwrap_or(0)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let run = |name: &str, seed: u64, format: FileFormat| -> anyhow::Result<PathBuf> {
        let dir = base.path().join(name);
        let config = GeneratorConfig {
            seed,
            ..config(30_000)
        };
        generate_to_dir(config, &dir, format)?;
        Ok(dir)
    };
    for format in [FileFormat::Jsonl, FileFormat::Parquet, FileFormat::CsvGz] {
        let first = run(&format!("{format}-a"), 3, format)?;
        let second = run(&format!("{format}-b"), 3, format)?;
        let other = run(&format!("{format}-c"), 4, format)?;
        let files = |dir: &Path| -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
            let mut files = BTreeMap::new();
            let mut pending = vec![dir.to_path_buf()];
            while let Some(next) = pending.pop() {
                for entry in std::fs::read_dir(&next)? {
                    let path = entry?.path();
                    if path.is_dir() {
                        pending.push(path);
                    } else {
                        let relative = path.strip_prefix(dir)?.to_path_buf();
                        files.insert(relative, std::fs::read(&path)?);
                    }
                }
            }
            Ok(files)
        };
        let (a, b, c) = (files(&first)?, files(&second)?, files(&other)?);
        assert!(a.len() >= 3, "{format}: {:?}", a.keys().collect::<Vec<_>>());
        assert_eq!(a, b, "{format}: same seed, different bytes");
        assert_ne!(a.get(Path::new(LABELS_FILE)), c.get(Path::new(LABELS_FILE)));
    }
    Ok(())
}

#[test]
fn exact_row_count_and_unique_ids_apart_from_resends() {
    let rows = stream();
    assert_eq!(rows.len() as u64, EVENTS);
    let mut seen: HashMap<&str, &EventRecord> = HashMap::new();
    for row in rows {
        match seen.get(row.record.event_id.as_str()) {
            Some(original) => {
                assert!(
                    has(row, Anomaly::Duplicate),
                    "{} repeated without label",
                    row.record.event_id
                );
                assert_eq!(*original, &row.record, "a resend has the same content");
            }
            None => {
                assert!(
                    !has(row, Anomaly::Duplicate),
                    "{} labelled duplicate first",
                    row.record.event_id
                );
                seen.insert(&row.record.event_id, &row.record);
            }
        }
    }
}

#[test]
fn ctr_and_cvr_are_in_range() {
    let rows = stream();
    let count = |kind: &str, genuine: bool| {
        rows.iter()
            .filter(|row| row.record.kind == kind)
            .filter(|row| {
                !genuine
                    || !row.labels.iter().any(|label| {
                        label.anomaly.is_fraud() || label.anomaly == Anomaly::Duplicate
                    })
            })
            .count() as f64
    };
    let ctr = count("click", false) / count("impression", false);
    let genuine_ctr = count("click", true) / count("impression", true);
    let cvr = count("conversion", true) / count("click", true);
    assert!((0.01..=0.03).contains(&ctr), "CTR {ctr}");
    assert!(
        (0.01..=0.03).contains(&genuine_ctr),
        "genuine CTR {genuine_ctr}"
    );
    assert!((0.02..=0.05).contains(&cvr), "CVR {cvr}");
    let page_views = count("page_view", true) / count("click", true);
    assert!(
        (1.5..=2.5).contains(&page_views),
        "page views per click {page_views}"
    );
}

#[test]
fn a_feed_squeezed_into_a_minute_still_converts_within_it() {
    // The stream example's feed: a minute of event time, conversions at
    // most 15 s after their click.
    let config = GeneratorConfig {
        span_ms: 60 * SECOND_MS,
        max_conversion_delay_ms: 15 * SECOND_MS,
        ..config(100_000)
    };
    assert!(config.validate().is_ok());
    let rows: Vec<GeneratedEvent> = Generator::new(config).collect();
    let count = |kind: &str| rows.iter().filter(|row| row.record.kind == kind).count() as f64;
    // Most conversions land within the feed (those of its last seconds' clicks do not).
    let cvr = count("conversion") / count("click");
    assert!((0.015..=0.05).contains(&cvr), "CVR {cvr}");
}

#[test]
fn traffic_looks_like_a_platform() {
    let rows = stream();
    let mut users = HashMap::<&str, BTreeSet<Millis>>::new();
    let mut ads = HashMap::<&str, usize>::new();
    let mut countries = BTreeSet::new();
    let mut devices = BTreeSet::new();
    for row in rows {
        let record = &row.record;
        assert!(!record.user_id.is_empty() || !record.device_id.is_empty());
        if !record.user_id.is_empty() {
            users
                .entry(&record.user_id)
                .or_default()
                .insert(record.ts / adflow::timestamp::DAY_MS);
        }
        if record.kind == "impression" {
            *ads.entry(&record.ad_id).or_default() += 1;
            assert!(
                record.cost_micros >= 400 && record.cost_micros <= 6_000,
                "{record:?}"
            );
        }
        if record.kind == "click" {
            assert!(
                record.cost_micros >= 80_000 && record.cost_micros <= 2_400_000,
                "{record:?}"
            );
        }
        if record.kind == "conversion" {
            assert!(record.campaign_id.is_empty() && record.ad_id.is_empty());
            assert!(
                (5_000_000..=500_000_000).contains(&record.revenue_micros),
                "{record:?}"
            );
            assert!(!record.order_id.is_empty() && !record.conversion_type.is_empty());
        } else {
            assert!(
                record.ad_id.starts_with(&record.campaign_id)
                    && record.campaign_id.starts_with("cmp-")
            );
        }
        countries.insert(record.country.as_str());
        devices.insert(record.device_type.as_str());
    }
    let returning = users.values().filter(|days| days.len() >= 3).count();
    assert!(
        returning * 2 > users.len(),
        "{returning} of {} users seen on 3+ days",
        users.len()
    );
    let mut popularity: Vec<usize> = ads.values().copied().collect();
    popularity.sort_unstable_by(|a, b| b.cmp(a));
    let top: usize = popularity.iter().take(10).sum();
    let all: usize = popularity.iter().sum();
    assert!(
        top * 5 > all,
        "top 10 ads take {top} of {all} impressions: Zipf"
    );
    assert_eq!(countries.len(), 15);
    assert_eq!(
        devices,
        BTreeSet::from(["ctv", "desktop", "mobile", "tablet"])
    );
}

#[test]
fn every_anomaly_is_present_and_labelled_truthfully() {
    let rows = stream();
    let config = config(EVENTS);
    let networks = datacenter_networks();
    let in_datacenter = |text: &str| networks.iter().any(|network| network.contains(ip(text)));

    let mut per_code = BTreeMap::<Anomaly, usize>::new();
    let mut by_id: HashMap<&str, &EventRecord> = HashMap::new();
    let mut impression_actors = HashSet::new();
    for row in rows {
        for label in &row.labels {
            *per_code.entry(label.anomaly).or_default() += 1;
        }
        by_id.entry(&row.record.event_id).or_insert(&row.record);
        if row.record.kind == "impression" {
            impression_actors.insert(row.record.device_id.as_str());
        }
    }
    for anomaly in Anomaly::ALL {
        assert!(
            per_code.get(&anomaly).copied().unwrap_or(0) > 0,
            "no {anomaly} in {per_code:?}"
        );
    }

    let mut max_ts = Millis::MIN;
    let mut floods: HashMap<String, Vec<&EventRecord>> = HashMap::new();
    let mut conversions_by_device: HashMap<&str, Vec<Millis>> = HashMap::new();
    for row in rows {
        if row.record.kind == "conversion" {
            conversions_by_device
                .entry(&row.record.device_id)
                .or_default()
                .push(row.record.ts);
        }
    }
    for row in rows {
        let record = &row.record;
        let resend = has(row, Anomaly::Duplicate);
        // Signals visible in a row are labelled on its first copy.
        if !resend {
            assert_eq!(
                AgentClass::classify(&record.user_agent) == AgentClass::Bot,
                has(row, Anomaly::BotUserAgent),
                "{record:?}"
            );
            assert_eq!(
                record.user_agent.is_empty(),
                has(row, Anomaly::MissingUserAgent),
                "{record:?}"
            );
            assert_eq!(
                in_datacenter(&record.ip),
                has(row, Anomaly::DatacenterIp),
                "{record:?}"
            );
            let behind = max_ts.saturating_sub(record.ts);
            if behind > config.out_of_order_threshold_ms {
                assert!(
                    has(row, Anomaly::OutOfOrder) || has(row, Anomaly::Late),
                    "displaced by {behind} ms but unlabelled: {record:?}"
                );
            } else {
                assert!(!has(row, Anomaly::OutOfOrder), "{record:?}");
            }
        }
        max_ts = max_ts.max(record.ts);
        for label in &row.labels {
            match label.anomaly {
                Anomaly::Duplicate => assert_eq!(row.labels.len(), 1),
                Anomaly::Late => {
                    let delay: Millis = label
                        .detail
                        .split_whitespace()
                        .nth(1)
                        .and_then(|word| word.parse().ok())
                        .unwrap_or(-1);
                    assert!(
                        delay > config.max_jitter_ms && delay <= config.max_lateness_ms,
                        "{label:?}"
                    );
                }
                Anomaly::ClickFlood => {
                    assert_eq!(record.kind, "click");
                    let flood = label
                        .detail
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    floods.entry(flood).or_default().push(record);
                }
                Anomaly::DatacenterIp
                | Anomaly::ClickWithoutImpression
                | Anomaly::ClickInjection => {
                    assert_eq!(record.kind, "click", "{label:?}")
                }
                Anomaly::GeoMismatch => {
                    assert_eq!(record.kind, "conversion");
                    let click_id = label.detail.split_whitespace().nth(4).unwrap_or_default();
                    if let Some(click) = by_id.get(click_id) {
                        assert_eq!(click.kind, "click");
                        assert_ne!(click.country, record.country, "{label:?}");
                        assert_eq!(click.device_id, record.device_id);
                    }
                }
                _ => {}
            }
            if label.anomaly == Anomaly::ClickWithoutImpression {
                assert!(
                    !impression_actors.contains(record.device_id.as_str()),
                    "{record:?}"
                );
            }
            if label.anomaly == Anomaly::ClickInjection {
                let conversions = conversions_by_device.get(record.device_id.as_str());
                let converted_soon = conversions.is_some_and(|times| {
                    times
                        .iter()
                        .any(|&ts| ts - record.ts >= SECOND_MS && ts - record.ts <= 10 * SECOND_MS)
                });
                // The conversion may fall after the end of the run.
                let near_end = record.ts > max_ts - 60 * SECOND_MS;
                assert!(converted_soon || near_end, "{label:?} {record:?}");
            }
        }
    }
    assert!(!floods.is_empty());
    for (flood, clicks) in floods {
        let ips: BTreeSet<&str> = clicks.iter().map(|click| click.ip.as_str()).collect();
        let ads: BTreeSet<&str> = clicks.iter().map(|click| click.ad_id.as_str()).collect();
        let first = clicks.iter().map(|click| click.ts).min().unwrap_or(0);
        let last = clicks.iter().map(|click| click.ts).max().unwrap_or(0);
        assert_eq!(ips.len(), 1, "{flood}");
        assert_eq!(ads.len(), 1, "{flood}");
        assert!(
            last - first < 60 * SECOND_MS,
            "{flood} spans {} ms",
            last - first
        );
        assert!(
            (150..=420).contains(&clicks.len()),
            "{flood}: {} rows",
            clicks.len()
        );
    }
}

fn text_column(batch: &arrow::record_batch::RecordBatch, name: &str) -> Vec<String> {
    let column = batch
        .column_by_name(name)
        .map(|column| column.as_string::<i32>());
    match column {
        Some(column) => (0..column.len())
            .map(|i| {
                if column.is_null(i) {
                    String::new()
                } else {
                    column.value(i).to_owned()
                }
            })
            .collect(),
        None => panic!("no column {name}"),
    }
}

fn read_parquet(path: &Path) -> anyhow::Result<Vec<EventRecord>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    let mut records = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ts = batch
            .column_by_name("ts")
            .map(|c| c.as_primitive::<TimestampMillisecondType>().clone());
        let money = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| c.as_primitive::<Decimal128Type>().clone())
        };
        let (Some(ts), Some(cost), Some(revenue)) = (ts, money("cost"), money("revenue")) else {
            anyhow::bail!("missing columns in {}", path.display());
        };
        let mut columns: HashMap<&str, Vec<String>> = HashMap::new();
        for name in adflow::schema::FIELDS {
            if !matches!(name, "ts" | "cost" | "revenue") {
                columns.insert(name, text_column(&batch, name));
            }
        }
        let take = |name: &str, row: usize| columns[name][row].clone();
        for row in 0..batch.num_rows() {
            let micros = |array: &arrow::array::Decimal128Array| {
                if array.is_null(row) {
                    0
                } else {
                    i64::try_from(array.value(row)).unwrap_or(-1)
                }
            };
            records.push(EventRecord {
                event_id: take("event_id", row),
                kind: take("kind", row),
                ts: ts.value(row),
                user_id: take("user_id", row),
                device_id: take("device_id", row),
                campaign_id: take("campaign_id", row),
                ad_id: take("ad_id", row),
                publisher_id: take("publisher_id", row),
                ip: take("ip", row),
                user_agent: take("user_agent", row),
                country: take("country", row),
                device_type: take("device_type", row),
                cost_micros: micros(&cost),
                revenue_micros: micros(&revenue),
                conversion_type: take("conversion_type", row),
                order_id: take("order_id", row),
            });
        }
    }
    Ok(records)
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<EventRecord>> {
    let mut records = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line?)?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let money = |key: &str| {
            value
                .get(key)
                .map_or(Ok(0), |number| parse_micros(&number.to_string()))
        };
        records.push(EventRecord {
            event_id: text("event_id"),
            kind: text("kind"),
            ts: parse_rfc3339(&text("ts")).unwrap_or(-1),
            user_id: text("user_id"),
            device_id: text("device_id"),
            campaign_id: text("campaign_id"),
            ad_id: text("ad_id"),
            publisher_id: text("publisher_id"),
            ip: text("ip"),
            user_agent: text("user_agent"),
            country: text("country"),
            device_type: text("device_type"),
            cost_micros: money("cost").map_err(|e| anyhow::anyhow!("{e:?}"))?,
            revenue_micros: money("revenue").map_err(|e| anyhow::anyhow!("{e:?}"))?,
            conversion_type: text("conversion_type"),
            order_id: text("order_id"),
        });
    }
    Ok(records)
}

/// Checks a generated directory against the manifest and the labels, and
/// returns its rows in file order.
fn check_directory(
    dir: &Path,
    read: fn(&Path) -> anyhow::Result<Vec<EventRecord>>,
) -> anyhow::Result<Vec<EventRecord>> {
    let manifest = GenerationSummary::read(dir)?;
    let mut rows = Vec::new();
    let mut per_kind = BTreeMap::<String, u64>::new();
    for file in &manifest.files {
        let path = dir.join(&file.path);
        let records = read(&path)?;
        assert_eq!(records.len() as u64, file.rows, "{}", file.path);
        for record in &records {
            assert_eq!(
                adflow::timestamp::format_date(record.ts),
                file.date,
                "{}",
                file.path
            );
            *per_kind.entry(record.kind.clone()).or_default() += 1;
        }
        rows.extend(records);
    }
    assert_eq!(rows.len() as u64, manifest.rows);
    for (kind, count) in &manifest.rows_per_kind {
        assert_eq!(per_kind.get(kind).copied().unwrap_or(0), *count, "{kind}");
    }
    assert_eq!(
        per_kind.values().sum::<u64>(),
        manifest.rows_per_kind.values().sum::<u64>()
    );

    let labels = read_labels(dir.join(LABELS_FILE))?;
    let ids: HashSet<&str> = rows.iter().map(|record| record.event_id.as_str()).collect();
    let mut per_code = BTreeMap::<String, u64>::new();
    for label in &labels {
        assert!(
            ids.contains(label.event_id.as_str()),
            "label for a missing row: {label:?}"
        );
        assert!(Anomaly::parse(&label.label).is_some(), "{label:?}");
        *per_code.entry(label.label.clone()).or_default() += 1;
    }
    for (code, count) in &manifest.labels_per_code {
        assert_eq!(per_code.get(code).copied().unwrap_or(0), *count, "{code}");
    }
    assert_eq!(labels.len() as u64, manifest.labels);
    Ok(rows)
}

#[test]
fn parquet_output_matches_manifest_labels_and_stream() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let summary = generate_to_dir(config(EVENTS), dir.path(), FileFormat::Parquet)?;
    assert_eq!(summary.rows, EVENTS);
    assert!(
        summary.files.len() >= 7,
        "a week of traffic: {:?}",
        summary.files
    );
    let mut written = check_directory(dir.path(), read_parquet)?;
    let mut expected: Vec<EventRecord> = stream().iter().map(|row| row.record.clone()).collect();
    let key = |record: &EventRecord| (record.event_id.clone(), record.ts);
    written.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        written, expected,
        "Parquet holds exactly the generated rows"
    );
    Ok(())
}

#[test]
fn jsonl_output_is_partitioned_in_arrival_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    generate_to_dir(config(EVENTS / 4), dir.path(), FileFormat::Jsonl)?;
    let written = check_directory(dir.path(), read_jsonl)?;
    // Within each file rows keep arrival order: per date, the stream's order.
    let mut stream_by_date: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let rows: Vec<GeneratedEvent> = Generator::new(config(EVENTS / 4)).collect();
    for row in &rows {
        stream_by_date
            .entry(adflow::timestamp::format_date(row.record.ts))
            .or_default()
            .push(&row.record.event_id);
    }
    let mut files_by_date: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for record in &written {
        files_by_date
            .entry(adflow::timestamp::format_date(record.ts))
            .or_default()
            .push(&record.event_id);
    }
    assert_eq!(files_by_date, stream_by_date);
    let out_of_order = written
        .windows(2)
        .filter(|pair| pair[1].ts < pair[0].ts)
        .count();
    assert!(out_of_order > 0, "arrival order is not event-time order");
    Ok(())
}

#[test]
fn refuses_to_overwrite_previous_output() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    generate_to_dir(config(1_000), dir.path(), FileFormat::Csv)?;
    assert!(generate_to_dir(config(1_000), dir.path(), FileFormat::Csv).is_err());
    let options = adflow_datagen::OutputOptions {
        replace_existing: true,
        ..adflow_datagen::OutputOptions::default()
    };
    let summary = adflow_datagen::generate_to_dir_with(
        config(2_000),
        dir.path(),
        FileFormat::Jsonl,
        &options,
        |_| {},
    )?;
    assert_eq!(summary.rows, 2_000);
    check_directory(dir.path(), read_jsonl)?;
    let leftovers = walk_extensions(dir.path());
    assert!(!leftovers.contains("csv"), "{leftovers:?}");
    Ok(())
}

fn walk_extensions(dir: &Path) -> BTreeSet<String> {
    let mut extensions = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(extension) = path.extension() {
                extensions.insert(extension.to_string_lossy().into_owned());
            }
        }
    }
    extensions
}

#[test]
fn clean_traffic_has_no_labels() {
    let config = GeneratorConfig {
        anomalies: adflow_datagen::AnomalyRates::none(),
        ..config(30_000)
    };
    let mut previous = Millis::MIN;
    let mut displaced = 0;
    for row in Generator::new(config) {
        assert!(row.labels.is_empty(), "{row:?}");
        assert_eq!(
            AgentClass::classify(&row.record.user_agent),
            AgentClass::Browser
        );
        if row.record.ts < previous {
            displaced += 1;
        }
        previous = previous.max(row.record.ts);
    }
    // Only sub-threshold network jitter remains.
    assert!(displaced < 3_000, "{displaced}");
}
