//! Tests: dataflow sinks on two workers, every format read back.

use std::fs;
use std::path::{Path, PathBuf};

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow::array::{
    Array, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use differential_dataflow::input::Input;
use serde::{Deserialize, Serialize};
use timely::dataflow::ProbeHandle;

use super::*;
use crate::dead_letter::{Position, Reason};

/// A record using every column type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Spend {
    campaign: String,
    clicks: i64,
    spend: Micros,
    at: Millis,
    active: bool,
    note: Option<String>,
    /// Written as an F64 of `ctr_milli / 1000`.
    ctr_milli: i64,
}

impl OutputRecord for Spend {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("campaign", ColumnType::Text),
            Column::new("clicks", ColumnType::I64),
            Column::new("spend", ColumnType::Money),
            Column::new("at", ColumnType::Time),
            Column::new("active", ColumnType::Bool),
            Column::new("note", ColumnType::Text),
            Column::new("ctr", ColumnType::F64),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![
            Value::Text(self.campaign.clone()),
            Value::I64(self.clicks),
            Value::Money(self.spend),
            Value::Time(self.at),
            Value::Bool(self.active),
            self.note.clone().map_or(Value::Null, Value::Text),
            Value::F64(self.ctr_milli as f64 / 1000.0),
        ]
    }
}

/// 2026-11-23T13:37:00.125Z
const AT: Millis = 1_795_441_020_125;

fn spend(campaign: &str, clicks: i64, micros: Micros) -> Spend {
    Spend {
        campaign: campaign.to_owned(),
        clicks,
        spend: micros,
        at: AT + clicks,
        active: clicks % 2 == 0,
        note: (clicks > 2).then(|| format!("note \"{campaign}\"\nline two")),
        ctr_milli: clicks * 125,
    }
}

fn a() -> Spend {
    spend("alpha", 1, 12_500_000)
}
fn b() -> Spend {
    spend("beta", 2, 250_000)
}
fn c() -> Spend {
    spend("gamma", 3, -1)
}
fn d() -> Spend {
    spend("delta", 4, 0)
}

/// Round 0: insert a, b, c, d. Round 1: retract b, insert a again, insert
/// and retract d at once (no net change), retract d. Final: a ×2, c.
fn snapshot_rounds() -> Vec<Vec<(Spend, isize)>> {
    vec![
        vec![(a(), 1), (b(), 1), (c(), 1), (d(), 1)],
        vec![(b(), -1), (a(), 1), (d(), 1), (d(), -1), (d(), -1)],
    ]
}

/// Runs a two-worker dataflow whose worker 0 alone feeds `rounds` (round `i`
/// at time `i`); every worker steps until its sink probe has passed each
/// round and then calls `after_round(worker, i, handle)`. With `spread`, the
/// updates are first consolidated, which hashes them across both workers, so
/// that the sink receives updates on every worker. Returns each worker's
/// final report, worker 0 first.
fn run<D, F>(
    spec: SinkSpec,
    rounds: Vec<Vec<(D, isize)>>,
    spread: bool,
    after_round: F,
) -> Vec<SinkReport>
where
    D: OutputRecord + std::hash::Hash + Sync,
    F: Fn(usize, usize, &SinkHandle) + Send + Sync + 'static,
{
    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let reached = std::rc::Rc::new(std::cell::Cell::new(0_usize));
        let counter = std::rc::Rc::clone(&reached);
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, collection) = scope.new_collection::<D, isize>();
            let collection = if spread {
                collection
                    .consolidate()
                    .inspect(move |_| counter.set(counter.get() + 1))
            } else {
                collection
            };
            let handle = collection.sink(spec.clone(), &probe);
            (input, handle)
        });
        for (round, updates) in rounds.iter().enumerate() {
            let next = u64::try_from(round).expect("small") + 1;
            if worker.index() == 0 {
                for (record, diff) in updates {
                    input.update(record.clone(), *diff);
                }
            }
            // Every worker advances its (otherwise empty) input.
            input.advance_to(next);
            input.flush();
            worker.step_while(|| probe.less_than(&next));
            after_round(worker.index(), round, &handle);
        }
        drop(input);
        worker.step_while(|| !probe.done());
        assert!(handle.is_finished(), "probe done before the sink finished");
        if spread {
            assert!(
                reached.get() > 0,
                "worker {} got no updates",
                worker.index()
            );
        }
        handle
    })
    .expect("timely starts");
    guards
        .join()
        .into_iter()
        .map(|handle| handle.expect("worker succeeds").report())
        .collect()
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("dir readable")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Checks the reports of a finished two-worker sink that wrote `rows` rows
/// to `path`: worker 0 wrote it all, worker 1 nothing.
fn assert_reports(reports: &[SinkReport], path: &Path, rows: u64) {
    assert_eq!(reports.len(), 2);
    let writer = &reports[0];
    assert!(writer.is_ok(), "{:?}", writer.errors);
    assert_eq!(writer.rows, rows);
    assert_eq!(writer.path.as_deref(), Some(path));
    let other = &reports[1];
    assert!(other.is_ok());
    assert_eq!((other.rows, other.path.as_ref()), (0, None));
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .expect("jsonl readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

#[test]
fn snapshot_jsonl_writes_final_contents_once_with_two_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("spend", dir.path(), OutputFormat::Jsonl);
    let reports = run(spec, snapshot_rounds(), true, |_, _, _| {});

    let path = dir.path().join("spend.jsonl");
    assert_eq!(entries(dir.path()), ["spend.jsonl"]);
    assert_reports(&reports, &path, 3);

    let text = fs::read_to_string(&path).expect("readable");
    let lines: Vec<&str> = text.lines().collect();
    // Sorted by `Ord` (campaign first); `a` has multiplicity 2.
    assert_eq!(
        lines[0],
        r#"{"campaign":"alpha","clicks":1,"spend":12.5,"at":"2026-11-23T13:37:00.126Z","active":false,"note":null,"ctr":0.125}"#
    );
    assert_eq!(lines[1], lines[0]);
    assert_eq!(
        lines[2],
        r#"{"campaign":"gamma","clicks":3,"spend":-0.000001,"at":"2026-11-23T13:37:00.128Z","active":false,"note":"note \"gamma\"\nline two","ctr":0.375}"#
    );
    assert_eq!(lines.len(), 3);
    let parsed = read_jsonl(&path);
    assert_eq!(parsed[2]["note"], "note \"gamma\"\nline two");
    assert_eq!(parsed[2]["spend"].as_f64(), Some(-0.000_001));
}

#[test]
fn snapshot_csv_writes_header_and_final_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("spend", dir.path(), OutputFormat::Csv);
    let reports = run(spec, snapshot_rounds(), true, |_, _, _| {});

    let path = dir.path().join("spend.csv");
    assert_eq!(entries(dir.path()), ["spend.csv"]);
    assert_reports(&reports, &path, 3);

    let mut reader = ::csv::Reader::from_path(&path).expect("csv readable");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        ["campaign", "clicks", "spend", "at", "active", "note", "ctr"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|record| record.expect("row").iter().map(str::to_owned).collect())
        .collect();
    let alpha = [
        "alpha",
        "1",
        "12.5",
        "2026-11-23T13:37:00.126Z",
        "false",
        "",
        "0.125",
    ];
    let gamma = [
        "gamma",
        "3",
        "-0.000001",
        "2026-11-23T13:37:00.128Z",
        "false",
        "note \"gamma\"\nline two",
        "0.375",
    ];
    assert_eq!(rows, [alpha.to_vec(), alpha.to_vec(), gamma.to_vec()]);
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = fs::File::open(path).expect("parquet readable");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn column<'a, A: 'static>(batch: &'a RecordBatch, name: &str) -> &'a A {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<A>()
        .unwrap_or_else(|| panic!("column {name} has type {:?}", batch.schema()))
}

#[test]
fn snapshot_parquet_writes_typed_final_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("spend", dir.path(), OutputFormat::Parquet);
    let reports = run(spec, snapshot_rounds(), true, |_, _, _| {});

    let path = dir.path().join("spend.parquet");
    assert_eq!(entries(dir.path()), ["spend.parquet"]);
    assert_reports(&reports, &path, 3);

    let batches = read_parquet(&path);
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 3);
    let schema = batch.schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [
            &DataType::Utf8,
            &DataType::Int64,
            &DataType::Decimal128(18, 6),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            &DataType::Boolean,
            &DataType::Utf8,
            &DataType::Float64,
        ]
    );
    let campaign = column::<StringArray>(batch, "campaign");
    assert_eq!(
        (0..3).map(|i| campaign.value(i)).collect::<Vec<_>>(),
        ["alpha", "alpha", "gamma"]
    );
    let clicks = column::<Int64Array>(batch, "clicks");
    assert_eq!(clicks.values().to_vec(), [1, 1, 3]);
    let money = column::<Decimal128Array>(batch, "spend");
    assert_eq!(money.values().to_vec(), [12_500_000i128, 12_500_000, -1]);
    assert_eq!(money.value_as_string(2), "-0.000001");
    let at = column::<TimestampMillisecondArray>(batch, "at");
    assert_eq!(at.values().to_vec(), [AT + 1, AT + 1, AT + 3]);
    let active = column::<BooleanArray>(batch, "active");
    assert!(!active.value(0) && !active.value(2));
    let note = column::<StringArray>(batch, "note");
    assert!(note.is_null(0) && note.is_null(1));
    assert_eq!(note.value(2), "note \"gamma\"\nline two");
    let ctr = column::<Float64Array>(batch, "ctr");
    assert_eq!(ctr.values().to_vec(), [0.125, 0.125, 0.375]);
}

/// Round 0: insert a, b. Round 1: retract b, insert c. Round 2: retract and
/// re-insert a at the same time (no net change). Round 3: retract a twice.
fn changelog_rounds() -> Vec<Vec<(Spend, isize)>> {
    vec![
        vec![(a(), 1), (b(), 1)],
        vec![(b(), -1), (c(), 1)],
        vec![(a(), -1), (a(), 1)],
        vec![(a(), -2)],
    ]
}

#[test]
fn changelog_jsonl_has_inserts_and_retractions_in_time_order_flushed_per_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("changes.jsonl");
    let spec =
        SinkSpec::file("changes", dir.path(), OutputFormat::Jsonl).with_mode(SinkMode::Changelog);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_in_worker = std::sync::Arc::clone(&seen);
    let watched = path.clone();
    let reports = run(
        spec,
        changelog_rounds(),
        true,
        move |worker, round, handle| {
            // The probe has passed the round's time, on either worker: its rows
            // are on disk.
            let lines = fs::read_to_string(&watched).map_or(0, |text| text.lines().count());
            let rows = handle.report().rows;
            seen_in_worker
                .lock()
                .expect("unpoisoned")
                .push((worker, round, rows, lines));
        },
    );
    assert_eq!(entries(dir.path()), ["changes.jsonl"]);
    assert_reports(&reports, &path, 5);
    let mut seen = seen.lock().expect("unpoisoned").clone();
    seen.sort();
    // Worker 0 writes and counts rows; worker 1's handle stays empty, but
    // its probe too only passes a time once that time's rows are written.
    assert_eq!(
        seen,
        [
            (0, 0, 2, 2),
            (0, 1, 4, 4),
            (0, 2, 4, 4),
            (0, 3, 5, 5),
            (1, 0, 0, 2),
            (1, 1, 0, 4),
            (1, 2, 0, 4),
            (1, 3, 0, 5),
        ]
    );

    let rows: Vec<(String, u64, i64)> = read_jsonl(&path)
        .iter()
        .map(|row| {
            (
                row["campaign"].as_str().expect("text").to_owned(),
                row["time"].as_u64().expect("time"),
                row["diff"].as_i64().expect("diff"),
            )
        })
        .collect();
    let expected = [
        ("alpha", 0, 1),
        ("beta", 0, 1),
        ("beta", 1, -1),
        ("gamma", 1, 1),
        ("alpha", 3, -2),
    ];
    let expected: Vec<(String, u64, i64)> = expected
        .iter()
        .map(|(name, time, diff)| (name.to_string(), *time, *diff))
        .collect();
    assert_eq!(rows, expected);
    // The record's own columns come first.
    let first = read_jsonl(&path).remove(0);
    assert_eq!(first["spend"].to_string(), "12.5");
}

#[test]
fn changelog_parquet_has_time_and_diff_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec =
        SinkSpec::file("changes", dir.path(), OutputFormat::Parquet).with_mode(SinkMode::Changelog);
    let reports = run(spec, changelog_rounds(), false, |_, _, _| {});
    let path = dir.path().join("changes.parquet");
    assert_reports(&reports, &path, 5);

    let batches = read_parquet(&path);
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 5);
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names[7..], ["time", "diff"]);
    assert_eq!(
        column::<Int64Array>(batch, "time").values().to_vec(),
        [0, 0, 1, 1, 3]
    );
    assert_eq!(
        column::<Int64Array>(batch, "diff").values().to_vec(),
        [1, 1, -1, 1, -2]
    );
}

#[test]
fn changelog_of_empty_input_writes_header_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec =
        SinkSpec::file("empty", dir.path(), OutputFormat::Csv).with_mode(SinkMode::Changelog);
    let reports = run(
        spec,
        vec![Vec::<(Spend, isize)>::new()],
        false,
        |_, _, _| {},
    );
    let path = dir.path().join("empty.csv");
    assert_reports(&reports, &path, 0);
    assert_eq!(
        fs::read_to_string(&path).expect("readable"),
        "campaign,clicks,spend,at,active,note,ctr,time,diff\n"
    );
}

#[test]
fn snapshot_negative_multiplicity_is_recorded_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("spend", dir.path(), OutputFormat::Jsonl);
    let reports = run(spec, vec![vec![(a(), 1), (b(), -2)]], false, |_, _, _| {});
    let report = &reports[0];
    assert!(report.finished);
    assert_eq!(report.rows, 1);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    match &report.errors[0] {
        SinkError::NegativeMultiplicity {
            sink,
            record,
            multiplicity,
        } => {
            assert_eq!(sink, "spend");
            assert!(record.contains("beta"), "{record}");
            assert_eq!(*multiplicity, -2);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let campaigns: Vec<serde_json::Value> = read_jsonl(&dir.path().join("spend.jsonl"))
        .into_iter()
        .map(|row| row["campaign"].clone())
        .collect();
    assert_eq!(campaigns, ["alpha"]);
    assert!(reports[1].errors.is_empty());
}

#[test]
fn unwritable_dir_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    fs::write(&file, "not a directory").expect("writable");
    let bad_dir = file.join("sub");

    for mode in [SinkMode::Snapshot, SinkMode::Changelog] {
        let spec = SinkSpec::file("spend", &bad_dir, OutputFormat::Jsonl).with_mode(mode);
        let reports = run(spec.clone(), snapshot_rounds(), true, |_, _, _| {});
        let report = &reports[0];
        assert!(report.finished, "{mode:?}");
        assert_eq!((report.rows, report.path.as_ref()), (0, None));
        assert_eq!(report.errors.len(), 1, "{mode:?}: {:?}", report.errors);
        match &report.errors[0] {
            SinkError::Io { target, .. } => assert!(target.ends_with("spend.jsonl"), "{target}"),
            other => panic!("unexpected error {other:?}"),
        }

        let error = write_records(&[a()], &spec).expect_err("cannot write");
        assert!(matches!(error, SinkError::Io { .. }), "{error:?}");
    }
    assert_eq!(entries(dir.path()), ["a-file"]);
}

#[test]
fn render_table_aligns_titles_and_truncates() {
    let records = [a(), c(), b()];
    let text = render_table("top spend", &records, 2);
    let expected = "\
top spend (3 rows)
campaign | clicks |     spend | at                       | active | note                   |   ctr
---------+--------+-----------+--------------------------+--------+------------------------+------
alpha    |      1 |      12.5 | 2026-11-23T13:37:00.126Z | false  |                        | 0.125
gamma    |      3 | -0.000001 | 2026-11-23T13:37:00.128Z | false  | note \"gamma\"\\nline two | 0.375
… 1 more row
";
    assert_eq!(text, expected);
    // Every table line but the title and the tail has the same width.
    let widths: Vec<usize> = text
        .lines()
        .skip(1)
        .take(4)
        .map(|line| line.chars().count())
        .collect();
    assert_eq!(widths[0], widths[1]);
    assert_eq!(widths[1], widths[2]);
    assert_eq!(widths[2], widths[3]);

    let empty: [Spend; 0] = [];
    assert_eq!(
        render_table("none", &empty, 5),
        "none (0 rows)\ncampaign | clicks | spend | at | active | note | ctr\n---------+--------+-------+----+--------+------+----\n"
    );
}

#[test]
fn table_sink_writes_the_rendered_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("spend", dir.path(), OutputFormat::Table).with_table_rows(1);
    let reports = run(spec, snapshot_rounds(), true, |_, _, _| {});
    let path = dir.path().join("spend.txt");
    assert_reports(&reports, &path, 3);
    let expected = render_table("spend", &[a(), a(), c()], 1);
    assert_eq!(fs::read_to_string(&path).expect("readable"), expected);
    assert!(expected.ends_with("… 2 more rows\n"), "{expected}");
}

#[test]
fn write_records_writes_atomically_and_reports_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = [a(), b()];
    for format in OutputFormat::ALL {
        let spec = SinkSpec::file("out", dir.path(), format);
        let path = write_records(&records, &spec).expect("written");
        let expected: PathBuf = dir.path().join(format!("out.{}", format.extension()));
        assert_eq!(path.as_ref(), Some(&expected));
        assert_eq!(spec.path(), Some(expected));
    }
    assert_eq!(
        entries(dir.path()),
        ["out.csv", "out.jsonl", "out.parquet", "out.txt"]
    );
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")).len(), 2);

    let to_stdout = SinkSpec::stdout("out", OutputFormat::Parquet);
    assert!(matches!(
        write_records(&records, &to_stdout),
        Err(SinkError::NeedsDirectory { .. })
    ));
    let to_stdout = SinkSpec::stdout("out", OutputFormat::Jsonl);
    assert_eq!(write_records(&records, &to_stdout).expect("stdout"), None);

    let bad_name = SinkSpec::file("../escape", dir.path(), OutputFormat::Csv);
    assert!(matches!(
        write_records(&records, &bad_name),
        Err(SinkError::InvalidName { .. })
    ));
}

/// A record whose values do not match its columns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Broken {
    arity: bool,
}

impl OutputRecord for Broken {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("n", ColumnType::I64),
            Column::new("m", ColumnType::Money),
        ]
    }

    fn values(&self) -> Vec<Value> {
        if self.arity {
            vec![Value::I64(1)]
        } else {
            vec![Value::I64(1), Value::Text("1.5".into())]
        }
    }
}

#[test]
fn malformed_rows_are_errors_and_leave_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for format in OutputFormat::ALL {
        let spec = SinkSpec::file("broken", dir.path(), format);
        match write_records(&[Broken { arity: true }], &spec) {
            Err(SinkError::Arity {
                expected: 2,
                found: 1,
                ..
            }) => {}
            other => panic!("{format}: {other:?}"),
        }
        match write_records(&[Broken { arity: false }], &spec) {
            Err(SinkError::TypeMismatch {
                column: "m",
                expected: ColumnType::Money,
                found: "text",
                ..
            }) => {}
            other => panic!("{format}: {other:?}"),
        }
    }
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn money_beyond_decimal_18_6_is_a_parquet_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("huge", dir.path(), OutputFormat::Parquet);
    let huge = spend("huge", 1, i64::MAX);
    assert!(matches!(
        write_records(std::slice::from_ref(&huge), &spec),
        Err(SinkError::Arrow { .. })
    ));
    assert!(entries(dir.path()).is_empty());
    // Text formats write it exactly.
    let spec = SinkSpec::file("huge", dir.path(), OutputFormat::Jsonl);
    write_records(&[huge], &spec).expect("written");
    let text = fs::read_to_string(dir.path().join("huge.jsonl")).expect("readable");
    assert!(text.contains(r#""spend":9223372036854.775807,"#), "{text}");
}

#[test]
fn output_format_names_round_trip() {
    for format in OutputFormat::ALL {
        assert_eq!(
            format.to_string().parse::<OutputFormat>().ok(),
            Some(format)
        );
    }
    assert_eq!(
        "JSONL".parse::<OutputFormat>().ok(),
        Some(OutputFormat::Jsonl)
    );
    assert_eq!(OutputFormat::Table.extension(), "txt");
    assert_eq!(OutputFormat::Parquet.extension(), "parquet");
    match "xml".parse::<OutputFormat>() {
        Err(SinkError::UnknownFormat { text }) => assert_eq!(text, "xml"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_values_render_exactly() {
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    struct Odd;
    impl OutputRecord for Odd {
        fn columns() -> Vec<Column> {
            vec![
                Column::new("nan", ColumnType::F64),
                Column::new("big", ColumnType::F64),
                Column::new("text", ColumnType::Text),
                Column::new("none", ColumnType::Time),
                Column::new("yes", ColumnType::Bool),
            ]
        }
        fn values(&self) -> Vec<Value> {
            vec![
                Value::F64(f64::NAN),
                Value::F64(1e300),
                Value::Text("tab\t\"quote\" \u{1F600}".into()),
                Value::Null,
                Value::Bool(true),
            ]
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("odd", dir.path(), OutputFormat::Jsonl);
    write_records(&[Odd], &spec).expect("written");
    let text = fs::read_to_string(dir.path().join("odd.jsonl")).expect("readable");
    assert_eq!(
        text,
        "{\"nan\":null,\"big\":1e+300,\"text\":\"tab\\t\\\"quote\\\" \u{1F600}\",\"none\":null,\"yes\":true}\n"
    );
    let parsed = read_jsonl(&dir.path().join("odd.jsonl"));
    assert_eq!(parsed[0]["text"], "tab\t\"quote\" \u{1F600}");
}

#[test]
fn dead_letters_are_output_records() {
    let letter = DeadLetter::new(
        "events.jsonl",
        Position::Line(12),
        Reason::MalformedJson,
        "expected value",
        b"{\"kind\": oops",
    );
    let names: Vec<&str> = DeadLetter::columns().iter().map(|c| c.name).collect();
    assert_eq!(names, ["source", "position", "reason", "detail", "excerpt"]);
    assert_eq!(
        letter.values(),
        [
            Value::Text("events.jsonl".into()),
            Value::Text("line 12".into()),
            Value::Text("malformed_json".into()),
            Value::Text("expected value".into()),
            Value::Text("{\"kind\": oops".into()),
        ]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("dead_letters", dir.path(), OutputFormat::Csv);
    write_records(&[letter], &spec).expect("written");
    assert_eq!(
        fs::read_to_string(dir.path().join("dead_letters.csv")).expect("readable"),
        "source,position,reason,detail,excerpt\nevents.jsonl,line 12,malformed_json,expected value,\"{\"\"kind\"\": oops\"\n"
    );
}

/// Campaign and ad columns show a remembered name; every other id column
/// shows the hash, even for an id whose text a campaign shares, so that
/// it renders the same whatever else was read.
#[test]
fn only_campaign_and_ad_columns_show_names() {
    let text = "sinks-test-shared-text";
    let id = Id::of(text).expect("an id");
    let hex = Value::Text(format!("{:016x}", id.get()));
    assert_eq!(Value::named(id), hex, "not yet remembered");
    crate::names::remember(id, text);
    assert_eq!(Value::named(id), Value::Text(text.to_owned()));
    assert_eq!(Value::named(Some(id)), Value::Text(text.to_owned()));
    assert_eq!(Value::from(id), hex);
    assert_eq!(Value::named(None), Value::Null);
}

/// A campaign's clicks: the campaign column shows its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct CampaignClicks {
    campaign: Id,
    clicks: i64,
}

impl OutputRecord for CampaignClicks {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("campaign", ColumnType::Text),
            Column::new("clicks", ColumnType::I64),
        ]
    }

    fn values(&self) -> Vec<Value> {
        vec![Value::named(self.campaign), Value::I64(self.clicks)]
    }
}

/// Files list campaigns by name, as a reader looks for them, not in the
/// order of their ids' hashes (the records' `Ord`), in both modes.
#[test]
fn sinks_write_rows_in_the_order_of_their_rendered_columns() {
    let records: Vec<CampaignClicks> = (1..=12)
        .flat_map(|number| {
            let name = format!("sinks-order-cmp-{number:02}");
            let campaign = Id::of(&name).expect("an id");
            crate::names::remember(campaign, &name);
            [2, 1].map(|clicks| CampaignClicks { campaign, clicks })
        })
        .collect();
    let mut by_name: Vec<(String, String)> = records
        .iter()
        .map(|record| {
            (
                crate::names::id_text(record.campaign),
                record.clicks.to_string(),
            )
        })
        .collect();
    by_name.sort();
    let mut by_record = records.clone();
    by_record.sort();
    let record_order: Vec<String> = by_record
        .iter()
        .map(|record| crate::names::id_text(record.campaign))
        .collect();
    let name_order: Vec<String> = by_name.iter().map(|(name, _)| name.clone()).collect();
    assert_ne!(
        record_order, name_order,
        "the case needs hashes out of name order"
    );

    for mode in [SinkMode::Snapshot, SinkMode::Changelog] {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SinkSpec::file("clicks", dir.path(), OutputFormat::Csv).with_mode(mode);
        let round = records.iter().map(|record| (record.clone(), 1)).collect();
        let reports = run(spec, vec![round], true, |_, _, _| {});
        let rows = u64::try_from(records.len()).expect("small");
        assert_reports(&reports, &dir.path().join("clicks.csv"), rows);
        let mut reader = ::csv::Reader::from_path(dir.path().join("clicks.csv")).expect("csv");
        let rows: Vec<(String, String)> = reader
            .records()
            .map(|row| {
                let row = row.expect("row");
                (row[0].to_owned(), row[1].to_owned())
            })
            .collect();
        assert_eq!(rows, by_name, "{mode:?}");
    }
}

/// Natural text order is a total order consistent with equality, on
/// random texts of digits, zeros and letters.
#[test]
fn natural_text_order_is_total() {
    use proptest::prelude::*;
    use proptest::test_runner::TestRunner;
    let text = || proptest::string::string_regex("[0a9b1]{0,6}").expect("regex");
    TestRunner::default()
        .run(&(text(), text(), text()), |(a, b, c)| {
            let cmp = |x: &str, y: &str| Value::Text(x.into()).total_cmp(&Value::Text(y.into()));
            prop_assert_eq!(cmp(&a, &b), cmp(&b, &a).reverse());
            prop_assert_eq!(cmp(&a, &b).is_eq(), a == b);
            let letters = |text: &str| text.replace(|c: char| c.is_ascii_digit(), "x");
            let (la, lb) = (letters(&a), letters(&b));
            prop_assert_eq!(cmp(&la, &lb), la.cmp(&lb), "without digits: byte order");
            let number = |text: &str| format!("ad-{}", text.len() * 7);
            prop_assert_eq!(
                cmp(&number(&a), &number(&b)),
                (a.len() * 7).cmp(&(b.len() * 7)),
                "numbers by value"
            );
            if cmp(&a, &b).is_le() && cmp(&b, &c).is_le() {
                prop_assert!(cmp(&a, &c).is_le());
            }
            Ok(())
        })
        .expect("a total order");
}

/// `sort_rows_by` puts rows in `compare_rows` order, on random rows of mixed
/// kinds (texts with shared prefixes and digit runs, numbers, floats with
/// signs, zeros and NaN, nulls), several lengths, and more columns than it
/// turns into numbers, so that its fallback is exercised too; and it keeps
/// every row with its payload.
#[test]
fn sorted_rows_follow_compare_rows() {
    use proptest::prelude::*;
    use proptest::test_runner::TestRunner;
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::I64),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(1.5),
            Just(-2.0),
            Just(f64::NAN),
            Just(f64::INFINITY)
        ]
        .prop_map(Value::F64),
        proptest::string::string_regex("(cmp-|ad-)?[0a9b1]{0,3}")
            .expect("regex")
            .prop_map(Value::Text),
        (-2i64..2).prop_map(Value::Time),
        (-2i64..2).prop_map(Value::Money),
    ];
    // Any kind in any column: a column of one kind, as outputs have, is
    // the simpler case of the same encoding.
    let row = proptest::collection::vec(value, 0..=SORT_KEY_COLUMNS + 2);
    TestRunner::default()
        .run(&proptest::collection::vec(row, 0..40), |rows| {
            let mut sorted: Vec<(Vec<Value>, usize)> = rows.iter().cloned().zip(0..).collect();
            sort_rows_by(&mut sorted, |(row, _)| {
                std::borrow::Cow::Borrowed(row.as_slice())
            });
            for pair in sorted.windows(2) {
                prop_assert!(
                    compare_rows(&pair[0].0, &pair[1].0).is_le(),
                    "{:?} before {:?}",
                    pair[0].0,
                    pair[1].0
                );
            }
            let mut payloads: Vec<usize> = sorted.iter().map(|(_, payload)| *payload).collect();
            prop_assert!(sorted
                .iter()
                .all(|(row, payload)| compare_rows(row, &rows[*payload]).is_eq()));
            payloads.sort_unstable();
            prop_assert_eq!(payloads, (0..rows.len()).collect::<Vec<_>>());
            Ok(())
        })
        .expect("rows in compare_rows order");
}

/// A record that takes its time to render, or panics when negative: a
/// writing thread that is slow, or that dies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Paced(i64);

impl OutputRecord for Paced {
    fn columns() -> Vec<Column> {
        vec![Column::new("value", ColumnType::I64)]
    }

    fn values(&self) -> Vec<Value> {
        assert!(self.0 >= 0, "a negative Paced cannot be rendered");
        std::thread::sleep(std::time::Duration::from_millis(20));
        vec![Value::I64(self.0)]
    }
}

#[test]
fn a_snapshot_written_on_its_thread_is_complete_when_the_probe_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paced.csv");
    let spec = SinkSpec::file("paced", dir.path(), OutputFormat::Csv);
    // About a second of rendering (sorting renders each row too): had the
    // probe passed before the thread finished, `run` would have found the
    // handle unfinished.
    let rows: Vec<(Paced, isize)> = (0..25).map(|value| (Paced(value), 1)).collect();
    let reports = run(spec, vec![rows], false, |_, _, _| {});
    assert_reports(&reports, &path, 25);
    let text = fs::read_to_string(&path).expect("csv readable");
    let expected: Vec<String> = std::iter::once("value".to_owned())
        .chain((0..25).map(|value| value.to_string()))
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn a_writing_thread_that_panics_is_an_error_and_the_run_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SinkSpec::file("paced", dir.path(), OutputFormat::Csv);
    let reports = run(
        spec,
        vec![vec![(Paced(1), 1), (Paced(-1), 1)]],
        false,
        |_, _, _| {},
    );
    let report = &reports[0];
    assert!(report.finished);
    assert_eq!(report.path, None);
    match report.errors.as_slice() {
        [SinkError::WriterPanicked { sink }] => assert_eq!(sink, "paced"),
        other => panic!("unexpected errors {other:?}"),
    }
    assert!(reports[1].is_ok());
    // Neither the file nor the temporary one of the failed write is there.
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}
