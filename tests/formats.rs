//! Parquet reads as the other formats do. The same adgen events read from
//! JSONL and from Parquet are the same events: adgen's Parquet
//! dictionary-encodes its low-cardinality columns (campaign, ad, publisher,
//! user agent, country, …), which the reader decodes as Arrow dictionaries
//! and hashes once per entry, where the JSONL path hashes every row's text.
//! And records with faults (missing, empty, null or malformed fields, money
//! that is negative or not whole micros, too much text) are dead-lettered
//! for the same reasons from CSV and from Parquet, plain or
//! dictionary-encoded, as from JSON lines.

use std::path::Path;
use std::sync::Arc;

use adflow::dead_letter::Position;
use adflow::event::Event;
use adflow::parsing::EventValidator;
use adflow::sources::{discover, FileSource, Parsed, Progress, RecordSource, WorkPlan};
use adflow::write::FileFormat;
use adflow_datagen::{generate_to_dir, GeneratorConfig};
use proptest::prelude::*;

/// Every record of `dir`'s files, read by one worker's source in plan order.
fn read_records(dir: &Path) -> Vec<Parsed> {
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
    while source.read_batch(&mut records, 512) {}
    records
}

fn read_all(dir: &Path) -> Vec<Event> {
    let mut events: Vec<Event> = read_records(dir)
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

/// A generated record as every format writes it: `None` is null, and money
/// is an integer of billionths, so that some values are not whole micros.
#[derive(Clone, Debug)]
struct WireRecord {
    texts: Vec<(&'static str, Option<String>)>,
    ts: Option<i64>,
    money: Vec<(&'static str, Option<i128>)>,
}

/// Money at nine decimal places, as a JSON number literal.
fn billionths_literal(value: i128) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    format!(
        "{sign}{}.{:09}",
        magnitude / 1_000_000_000,
        magnitude % 1_000_000_000
    )
}

impl WireRecord {
    /// A JSON line: null as `null`, money as a number literal.
    fn json(&self) -> String {
        let mut fields = serde_json::Map::new();
        for (name, text) in &self.texts {
            let value = text
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::from);
            fields.insert((*name).to_owned(), value);
        }
        fields.insert(
            "ts".to_owned(),
            self.ts
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        );
        let mut line = serde_json::Value::Object(fields).to_string();
        // serde_json has no exact decimals; splice the money in as literals.
        for (name, value) in &self.money {
            let literal = value.map_or("null".to_owned(), billionths_literal);
            line.pop();
            line.push_str(&format!(",\"{name}\":{literal}}}"));
        }
        line
    }

    /// The CSV header of every record's columns.
    fn csv_header(&self) -> String {
        let names = self.texts.iter().map(|(name, _)| *name);
        let names = names
            .chain(["ts"])
            .chain(self.money.iter().map(|(name, _)| *name));
        names.collect::<Vec<_>>().join(",")
    }

    /// A CSV line: text quoted, null as an empty cell.
    fn csv(&self) -> String {
        let texts = self.texts.iter().map(|(_, text)| {
            text.as_ref().map_or(String::new(), |text| {
                format!("\"{}\"", text.replace('"', "\"\""))
            })
        });
        let ts = self.ts.map_or(String::new(), |ts| ts.to_string());
        let money = self
            .money
            .iter()
            .map(|(_, value)| value.map_or(String::new(), billionths_literal));
        texts.chain([ts]).chain(money).collect::<Vec<_>>().join(",")
    }
}

/// Writes `records` as one Parquet file with text as `Utf8`, `ts` as
/// `Int64` and money as `Decimal128(20, 9)`, every column dictionary-encoded
/// or none.
fn write_parquet(path: &Path, records: &[WireRecord], dictionary: bool) {
    use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::file::properties::WriterProperties;

    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (at, (name, _)) in records[0].texts.iter().enumerate() {
        let values: StringArray = records.iter().map(|r| r.texts[at].1.clone()).collect();
        fields.push(Field::new(*name, DataType::Utf8, true));
        columns.push(Arc::new(values));
    }
    fields.push(Field::new("ts", DataType::Int64, true));
    columns.push(Arc::new(
        records.iter().map(|r| r.ts).collect::<Int64Array>(),
    ));
    for (at, (name, _)) in records[0].money.iter().enumerate() {
        let values: Decimal128Array = records.iter().map(|r| r.money[at].1).collect();
        let values = values
            .with_precision_and_scale(20, 9)
            .expect("valid precision");
        fields.push(Field::new(*name, DataType::Decimal128(20, 9), true));
        columns.push(Arc::new(values));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("valid batch");
    let properties = WriterProperties::builder()
        .set_dictionary_enabled(dictionary)
        // Several row groups and batches per file, as in real files.
        .set_max_row_group_row_count(Some(97))
        .build();
    write_batch(path, &batch, Some(properties));
}

/// Writes `batch` as the Parquet file `path`.
fn write_batch(
    path: &Path,
    batch: &arrow::array::RecordBatch,
    properties: Option<parquet::file::properties::WriterProperties>,
) {
    let file = std::fs::File::create(path).expect("create");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), properties).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}

/// Every record of `dir`'s one file, in file order, as an event or as the
/// reason and detail of its dead letter; checks that the dead letter of
/// the record at `index` is at `position(index)`.
fn read_outcomes(
    dir: &Path,
    position: fn(u64) -> Position,
) -> Vec<Result<Event, (adflow::dead_letter::Reason, String)>> {
    read_records(dir)
        .into_iter()
        .zip(0..)
        .map(|(record, index)| {
            record.map_err(|letter| {
                assert_eq!(letter.position, position(index), "{letter}");
                (letter.reason, letter.detail)
            })
        })
        .collect()
}

/// Mostly one of `valid`, sometimes one of `invalid` or null.
fn pick(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    let owned = |text: &&str| Some((*text).to_owned());
    prop_oneof![
        1 => Just(None),
        1 => proptest::sample::select(invalid).prop_map(move |text| owned(&text)),
        24 => proptest::sample::select(valid).prop_map(move |text| owned(&text)),
    ]
}

fn wire_record() -> impl Strategy<Value = WireRecord> {
    let base = 1_793_527_200_000_i64;
    let ids = (
        pick(&["e-1", "e-2", "e-3", "e-4", "e-5", "e-6", "e-7"], &[""]),
        pick(
            &["impression", "click", "conversion", "page_view"],
            &["teleport", ""],
        ),
        pick(
            &[
                "u-1", "u-2", "u,3", "u \"q\"", "ü-7", " u-1 ", "u\\x", "u\tt",
            ],
            &[""],
        ),
        pick(&["d-1", "d-2"], &[""]),
        pick(&["cmp-1", "cmp-2", "cmp,\"3\"", "kampagne-ü"], &[""]),
        pick(&["ad-1", "ad-2"], &[""]),
        pick(&["pub-1"], &[""]),
    );
    let context = (
        pick(&["10.0.0.1", " 10.0.0.2 ", "2001:db8::1"], &["1.2.3", ""]),
        pick(&["Mozilla/5.0", "curl/8.0", "Googlebot/2.1"], &[""]),
        pick(&["DE", "us"], &["XXX", ""]),
        pick(&["mobile", "desktop", "toaster"], &[""]),
        pick(&["purchase", "signup"], &[""]),
        pick(&["o-1", "o-2"], &[""]),
    );
    let ts = prop_oneof![
        1 => Just(None),
        // Before 2000 and after 2100: out of range whatever the reference
        // (a time in range but far from the others is judged against the
        // reference of its unit, and a row group is a unit of its own).
        1 => Just(Some(0)),
        1 => Just(Some(4_200_000_000_000)),
        12 => (0..7 * 86_400_000_i64).prop_map(move |offset| Some(base + offset)),
    ];
    let amount = || {
        prop_oneof![
            2 => Just(None),
            8 => (0..5_000_i128).prop_map(|cents| Some(cents * 10_000_000)),
            1 => (1..5_000_i128).prop_map(|cents| Some(-cents * 10_000_000)),
            1 => (1..999_i128).prop_map(Some),
        ]
    };
    // One record in fifty carries 70 KB of user agent: too large.
    let oversized = proptest::bool::weighted(1.0 / 50.0);
    (ids, context, ts, amount(), amount(), oversized).prop_map(
        |(
            (event_id, kind, user_id, device_id, campaign_id, ad_id, publisher_id),
            (ip, user_agent, country, device_type, conversion_type, order_id),
            ts,
            cost,
            revenue,
            oversized,
        )| {
            let user_agent = match oversized {
                true => Some("x".repeat(70_000)),
                false => user_agent,
            };
            WireRecord {
                texts: vec![
                    ("event_id", event_id),
                    ("kind", kind),
                    ("user_id", user_id),
                    ("device_id", device_id),
                    ("campaign_id", campaign_id),
                    ("ad_id", ad_id),
                    ("publisher_id", publisher_id),
                    ("ip", ip),
                    ("user_agent", user_agent),
                    ("country", country),
                    ("device_type", device_type),
                    ("conversion_type", conversion_type),
                    ("order_id", order_id),
                ],
                ts,
                money: vec![("cost", cost), ("revenue", revenue)],
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// CSV lines and Parquet rows, plain or dictionary-encoded, are
    /// accepted and rejected exactly as the same records written as JSON
    /// lines: the same events, and dead letters with the same reason and
    /// detail (only a record too large is measured differently: a line's
    /// bytes against a row's text).
    #[test]
    fn csv_and_parquet_records_read_as_their_json_lines_do(
        records in proptest::collection::vec(wire_record(), 1..300)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsonl = dir.path().join("jsonl");
        std::fs::create_dir(&jsonl).expect("mkdir");
        let lines: Vec<String> = records.iter().map(WireRecord::json).collect();
        std::fs::write(jsonl.join("events.jsonl"), lines.join("\n") + "\n").expect("write");
        let expected = read_outcomes(&jsonl, |index| Position::Line(index + 1));
        prop_assert_eq!(expected.len(), records.len());
        let csv = dir.path().join("csv");
        std::fs::create_dir(&csv).expect("mkdir");
        let mut text = records[0].csv_header();
        for record in &records {
            text.push('\n');
            text.push_str(&record.csv());
        }
        std::fs::write(csv.join("events.csv"), text + "\n").expect("write");
        for layout in ["csv", "parquet", "parquet with dictionaries"] {
            let read = match layout {
                // Line 1 is the header.
                "csv" => read_outcomes(&csv, |index| Position::Line(index + 2)),
                _ => {
                    let dictionary = layout.ends_with("dictionaries");
                    let parquet = dir.path().join(format!("parquet-{dictionary}"));
                    std::fs::create_dir(&parquet).expect("mkdir");
                    write_parquet(&parquet.join("events.parquet"), &records, dictionary);
                    read_outcomes(&parquet, Position::Row)
                }
            };
            prop_assert_eq!(read.len(), records.len());
            for (row, (read, expected)) in read.iter().zip(&expected).enumerate() {
                match (read, expected) {
                    (Err((read, _)), Err((expected, _)))
                        if *expected == adflow::dead_letter::Reason::RecordTooLarge =>
                    {
                        prop_assert_eq!(read, expected, "row {} ({})", row, layout);
                    }
                    _ => prop_assert_eq!(read, expected, "row {} ({})", row, layout),
                }
            }
        }
    }
}

/// A Parquet column whose type no field accepts makes every row of its
/// file a `schema_mismatch` dead letter: none is read, none vanishes.
#[test]
fn a_column_of_the_wrong_type_dead_letters_every_row() {
    use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};

    let rows = 250;
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "event_id",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|row| format!("e-{row}")),
            )),
        ),
        (
            "kind",
            Arc::new(StringArray::from(vec!["impression"; rows])),
        ),
        (
            "ts",
            Arc::new(Int64Array::from(vec![1_793_527_200_000; rows])),
        ),
        ("user_id", Arc::new(StringArray::from(vec!["u-1"; rows]))),
        (
            "campaign_id",
            Arc::new(StringArray::from(vec!["cmp-1"; rows])),
        ),
        ("ad_id", Arc::new(StringArray::from(vec!["ad-1"; rows]))),
        ("country", Arc::new(BooleanArray::from(vec![true; rows]))),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), false))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, array)| array).collect(),
    )
    .expect("valid batch");
    let dir = tempfile::tempdir().expect("tempdir");
    write_batch(&dir.path().join("events.parquet"), &batch, None);
    let read = read_outcomes(dir.path(), Position::Row);
    assert_eq!(read.len(), rows);
    for outcome in read {
        let (reason, detail) = outcome.expect_err("no row of a mismatched file is read");
        assert_eq!(reason, adflow::dead_letter::Reason::SchemaMismatch);
        assert_eq!(detail, "column country has type Boolean");
    }
}
