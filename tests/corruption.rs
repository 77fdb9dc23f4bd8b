//! Bad input never crashes and never vanishes: thousands of randomly
//! corrupted lines go through the pipeline, and every line comes out either
//! as an event or as a dead letter with a reason and its line number.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use adflow::dead_letter::{DeadLetter, Position, Reason};
use adflow::pipeline::{Pipeline, RunSummary};
use adflow::sources::discover;
use differential_dataflow::collection::VecCollection;

const LINES: usize = 4000;

/// SplitMix64: a tiny deterministic generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn valid_json(rng: &mut Rng, i: usize) -> String {
    let kinds = ["impression", "click", "conversion", "page_view"];
    let kind = kinds[rng.below(4)];
    let ts = 1_793_527_200_000u64 + rng.below(86_400_000) as u64;
    serde_json::json!({
        "event_id": format!("e-{i}"),
        "kind": kind,
        "ts": if i % 2 == 0 { serde_json::json!(ts) } else { serde_json::json!(adflow::timestamp::format_rfc3339(ts as i64)) },
        "user_id": format!("u-{}", rng.below(50)),
        "campaign_id": "cmp-1",
        "ad_id": "cmp-1-ad-2",
        "ip": "10.1.2.3",
        "user_agent": "Mozilla/5.0",
        "country": "FR",
        "device_type": "mobile",
        "cost": 0.25,
        "revenue": if kind == "conversion" { 19.99 } else { 0.0 },
    })
    .to_string()
}

/// One corruption, chosen at random, applied to a valid line.
fn corrupt(rng: &mut Rng, line: &str) -> Vec<u8> {
    let mut bytes = line.as_bytes().to_vec();
    match rng.below(12) {
        0 => {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            // A flipped bit may produce a newline: keep one line per record.
            for b in &mut bytes {
                if *b == b'\n' {
                    *b = b' ';
                }
            }
        }
        2 => return line.replace("\"cmp-1\"", "{\"nested\":true}").into_bytes(),
        3 => return line.replace("\"mobile\"", "[1,2]").into_bytes(),
        4 => {
            let mut huge = line.replace("Mozilla/5.0", &"A".repeat(70_000));
            huge.truncate(huge.len() - rng.below(3));
            return huge.into_bytes();
        }
        5 => bytes.insert(rng.below(bytes.len()), 0xFF),
        6 => return line.replace("\"kind\"", "\"knid\"").into_bytes(),
        7 => return line.replace("0.25", "-0.25").into_bytes(),
        8 => {
            return line
                .replace("\"ts\":", "\"ts\":\"soon\",\"x\":")
                .into_bytes()
        }
        9 => return line.replace("\"FR\"", "\"FRA\"").into_bytes(),
        10 => return Vec::new(),
        _ => {
            return line
                .replace("\"ts\":", "\"ts\":4102444800001,\"x\":")
                .into_bytes()
        }
    }
    bytes
}

fn write_corrupted_jsonl(path: &Path, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut file = std::fs::File::create(path).expect("create test file");
    for i in 0..LINES {
        let line = valid_json(&mut rng, i);
        let bytes = if rng.below(2) == 0 {
            corrupt(&mut rng, &line)
        } else {
            line.into_bytes()
        };
        file.write_all(&bytes).expect("write");
        file.write_all(b"\n").expect("write");
    }
    LINES
}

/// Runs the pipeline and collects every dead letter it emitted.
fn run(path: &Path, workers: usize) -> (RunSummary, Vec<DeadLetter>) {
    let inputs = discover(&[path.to_string_lossy()]).expect("discover");
    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&collected);
    let summary = Pipeline::new(inputs)
        .workers(workers)
        .run(move |_scope, streams| {
            let sink = Arc::clone(&sink);
            let dead: VecCollection<_, DeadLetter> = streams.dead_letters;
            dead.inspect(move |(letter, _time, diff)| {
                assert_eq!(*diff, 1);
                sink.lock().expect("lock").push(letter.clone());
            })
            .probe_with(&streams.probe);
            streams.events.probe_with(&streams.probe);
        })
        .expect("pipeline runs");
    let letters = std::mem::take(&mut *collected.lock().expect("lock"));
    (summary, letters)
}

#[test]
fn every_corrupted_jsonl_line_is_an_event_or_a_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corrupted.jsonl");
    let lines = write_corrupted_jsonl(&path, 7);
    let mut previous: Option<RunSummary> = None;
    for workers in [1, 2] {
        let (summary, letters) = run(&path, workers);
        assert_eq!(summary.records(), lines as u64, "workers = {workers}");
        assert_eq!(letters.len() as u64, summary.dead_letters.total());
        assert!(summary.events.total() > lines as u64 / 3);
        assert!(summary.dead_letters.total() > lines as u64 / 4);
        for reason in [
            Reason::MalformedJson,
            Reason::RecordTooLarge,
            Reason::InvalidUtf8,
            Reason::WrongType,
            Reason::MissingField,
            Reason::NegativeMoney,
            Reason::BadTimestamp,
            Reason::InvalidField,
            Reason::TimestampOutOfRange,
        ] {
            assert!(
                summary.dead_letters.get(reason) > 0,
                "no {reason} dead letters"
            );
        }
        // Each dead letter names a distinct line of the file, with an excerpt
        // capped at 256 bytes even for the 70 KB lines.
        let mut positions = BTreeMap::new();
        for letter in &letters {
            assert!(letter.excerpt.len() <= 256 + 3);
            let Position::Line(line) = letter.position else {
                panic!("not a line position: {letter}");
            };
            assert!((1..=lines as u64).contains(&line));
            assert!(
                positions.insert(line, letter.reason).is_none(),
                "line {line} twice"
            );
        }
        if let Some(previous) = previous {
            assert_eq!(previous.events, summary.events);
            assert_eq!(previous.dead_letters, summary.dead_letters);
        }
        previous = Some(summary);
    }
}

#[test]
fn every_corrupted_csv_line_is_an_event_or_a_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corrupted.csv");
    let mut rng = Rng(11);
    let mut text = String::from("event_id,kind,ts,user_id,campaign_id,ad_id,country,cost\n");
    for i in 0..LINES {
        let mut line = format!(
            "e-{i},click,2026-11-01T10:{:02}:00Z,u-{},cmp-1,\"ad,\"\"2\"\"\",DE,0.5",
            rng.below(60),
            rng.below(9)
        );
        match rng.below(6) {
            0 => line.truncate(rng.below(line.len())),
            1 => line.push_str(",extra"),
            2 => line = line.replacen('"', "", 1),
            3 => line = line.replace("0.5", "x0.5"),
            _ => {}
        }
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write");
    let (summary, letters) = run(&path, 2);
    assert_eq!(summary.records(), LINES as u64);
    assert!(summary.dead_letters.get(Reason::MalformedCsv) > 0);
    assert!(summary.dead_letters.get(Reason::BadMoney) > 0);
    assert!(letters
        .iter()
        .all(|letter| matches!(letter.position, Position::Line(line) if line >= 2)));
}

#[test]
fn unreadable_files_become_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("broken.jsonl.gz");
    std::fs::write(&gz, b"\x1f\x8b\x08\x00garbage that is not deflate").expect("write");
    let parquet = dir.path().join("broken.parquet");
    std::fs::write(&parquet, b"PAR1 this is not a parquet file PAR1").expect("write");
    let (summary, letters) = run(dir.path(), 2);
    assert_eq!(summary.events.total(), 0);
    assert_eq!(summary.dead_letters.get(Reason::UnreadableSource), 2);
    assert_eq!(letters.len(), 2);
}

/// A corrupt clock at the start of a file (a device reset to 2000-01-01)
/// does not become the file's reference time: the records after it are
/// read, and a corrupt clock after the first few is dead-lettered.
#[test]
fn a_corrupt_clock_first_in_a_file_does_not_reject_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reset_clock.jsonl");
    let mut rng = Rng(5);
    let mut lines = Vec::new();
    let line = |i: usize, ts: &str| {
        format!(r#"{{"event_id":"e-{i}","kind":"page_view","ts":"{ts}","user_id":"u-1"}}"#)
    };
    lines.push(line(0, "2000-01-01T00:00:05Z"));
    for i in 1..500 {
        let mut text = valid_json(&mut rng, i);
        if i == 400 {
            text = line(i, "2000-01-01T00:00:05Z");
        }
        lines.push(text);
    }
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let (summary, letters) = run(&path, 1);
    assert_eq!(summary.events.total(), 499, "{letters:?}");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::TimestampOutOfRange);
    assert_eq!(letters[0].position, Position::Line(401));
}
