//! The checked-in fixtures are valid and agree with their expected counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adflow::event::{EventKind, BOT_AGENT_PATTERNS};
use adflow::money::parse_micros;
use adflow::schema::FIELDS;
use adflow::timestamp::{format_rfc3339, hour_start, parse_rfc3339};
use adflow_datagen::catalog::{datacenter_networks, DATACENTER_CIDRS};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn every_fixture_line_is_a_valid_event() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(fixture("events.jsonl"))?;
    let mut lines = 0;
    for (number, line) in text.lines().enumerate() {
        let at = || format!("events.jsonl:{}", number + 1);
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)?;
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let in_order: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|field| object.contains_key(*field))
            .collect();
        assert_eq!(
            keys.len(),
            in_order.len(),
            "{}: unknown keys {keys:?}",
            at()
        );
        assert!(line.len() < adflow::schema::MAX_RECORD_BYTES);
        let text = |key: &str| {
            object
                .get(key)
                .and_then(|value| value.as_str())
                .unwrap_or_default()
        };
        assert!(text("event_id").starts_with("fx-"), "{}", at());
        let kind = EventKind::parse(text("kind"));
        assert!(kind.is_some(), "{}", at());
        let ts = parse_rfc3339(text("ts"));
        assert_eq!(
            ts.map(format_rfc3339).as_deref(),
            Some(text("ts")),
            "{}",
            at()
        );
        assert!(
            !text("user_id").is_empty() || !text("device_id").is_empty(),
            "{}",
            at()
        );
        for money in ["cost", "revenue"] {
            if let Some(value) = object.get(money) {
                assert!(value.is_number(), "{}: {money} must be a JSON number", at());
                assert!(parse_micros(&value.to_string()).is_ok(), "{}", at());
            }
        }
        match kind {
            Some(EventKind::Conversion) => {
                assert!(
                    object.contains_key("revenue") && object.contains_key("order_id"),
                    "{}",
                    at()
                );
                assert!(!object.contains_key("campaign_id"), "{}", at());
            }
            Some(EventKind::Impression | EventKind::Click) => {
                assert!(object.contains_key("cost"), "{}", at())
            }
            _ => {}
        }
        lines += 1;
    }
    assert!((200..=300).contains(&lines), "{lines} lines");
    Ok(())
}

#[test]
fn expected_hourly_counts_match_the_events() -> anyhow::Result<()> {
    let mut counted = BTreeMap::<(String, String), u64>::new();
    for line in std::fs::read_to_string(fixture("events.jsonl"))?.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let ts = value["ts"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        *counted
            .entry((format_rfc3339(hour_start(ts)), kind))
            .or_default() += 1;
    }
    let text = std::fs::read_to_string(fixture("expected_hourly_counts.csv"))?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("hour,kind,count"));
    let mut expected = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 3, "{line}");
        expected.insert(
            (cells[0].to_owned(), cells[1].to_owned()),
            cells[2].parse::<u64>()?,
        );
    }
    assert_eq!(counted, expected);
    Ok(())
}

#[test]
fn fixture_has_its_documented_quirks() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(fixture("events.jsonl"))?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut ids = BTreeMap::<&str, usize>::new();
    for row in &rows {
        *ids.entry(row["event_id"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(
        ids.values().filter(|&&copies| copies == 2).count(),
        3,
        "three resends"
    );
    let times: Vec<&str> = rows
        .iter()
        .map(|row| row["ts"].as_str().unwrap_or_default())
        .collect();
    assert!(
        times.windows(2).any(|pair| pair[1] < pair[0]),
        "some rows out of order"
    );
    assert!(
        times.iter().any(|ts| ts.starts_with("2026-11-02")),
        "a conversion the next day"
    );
    let bots = rows
        .iter()
        .filter(|row| {
            let agent = row["user_agent"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            BOT_AGENT_PATTERNS
                .iter()
                .any(|pattern| agent.contains(pattern))
        })
        .count();
    assert!(bots > 0);
    Ok(())
}

#[test]
fn datacenter_fixture_is_the_generators_list() -> anyhow::Result<()> {
    let on_disk = std::fs::read_to_string(fixture("datacenter_cidrs.txt"))?;
    assert_eq!(on_disk, DATACENTER_CIDRS);
    assert!(datacenter_networks().len() >= 10);
    Ok(())
}
