//! Writing a generated data set to a directory: partitioned event files,
//! `_labels.jsonl` and `_manifest.json` (the leading `_` makes readers of the directory skip them).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path};
use std::time::{Duration, Instant};

use adflow::event::EventKind;
use adflow::timestamp::{format_rfc3339, Millis};
use adflow::write::{FileFormat, PartitionedWriter, WriteOptions};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::config::GeneratorConfig;
use crate::generator::{GeneratedEvent, Generator};
use crate::labels::{Anomaly, LabelLine};

/// Name of the ground-truth labels file in an output directory.
pub const LABELS_FILE: &str = "_labels.jsonl";
/// Name of the manifest in an output directory.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// How [`generate_to_dir_with`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputOptions {
    /// Row groups and open partitions.
    pub write: WriteOptions,
    /// Delete a previous run's `dt=*` partitions, labels and manifest in the
    /// directory instead of refusing to write there. Other files are kept.
    pub replace_existing: bool,
    /// Call the progress callback every this many rows.
    pub progress_every: u64,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            write: WriteOptions::default(),
            replace_existing: false,
            progress_every: 1 << 16,
        }
    }
}

/// One event file of a generated data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the output directory, `/`-separated
    /// (`dt=2026-11-01/part-00000.parquet`).
    pub path: String,
    /// Event date of its rows.
    pub date: String,
    /// Rows in it.
    pub rows: u64,
}

/// What a run wrote; serialised as `_manifest.json` (without `elapsed`, so
/// the manifest is as deterministic as the data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationSummary {
    /// `adflow-datagen <version>`.
    pub generator: String,
    /// The [`FileFormat::name`] of the event files.
    pub format: String,
    /// Rows written, duplicates included (= `config.events`).
    pub rows: u64,
    /// Rows written per kind (`impression`, `click`, `conversion`,
    /// `page_view`; every kind present, duplicates included).
    pub rows_per_kind: BTreeMap<String, u64>,
    /// Lines of the labels file.
    pub labels: u64,
    /// Label lines per [`Anomaly::code`] (every code present).
    pub labels_per_code: BTreeMap<String, u64>,
    /// Rows with at least one label.
    pub labelled_rows: u64,
    /// Earliest event time written (RFC 3339).
    pub first_event_time: String,
    /// Latest event time written (RFC 3339).
    pub last_event_time: String,
    /// The labels file name.
    pub labels_file: String,
    /// Every event file, sorted by path.
    pub files: Vec<ManifestFile>,
    /// The configuration that produced the data.
    pub config: GeneratorConfig,
    /// Wall-clock time of generation and writing.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl GenerationSummary {
    /// Rows per second of wall-clock time.
    pub fn events_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Reads the manifest of an output directory.
    pub fn read(dir: impl AsRef<Path>) -> anyhow::Result<GenerationSummary> {
        let path = dir.as_ref().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Generates `config.events` rows into `dir` as `format` files partitioned
/// by event date, plus `_labels.jsonl` and `_manifest.json` (the leading `_` makes readers of the directory skip them).
///
/// ```
/// use adflow::write::FileFormat;
/// use adflow_datagen::{generate_to_dir, GeneratorConfig};
/// # fn main() -> anyhow::Result<()> {
/// let dir = std::env::temp_dir().join(format!("adgen-doc-{}", std::process::id()));
/// let config = GeneratorConfig { events: 5_000, ..GeneratorConfig::default() };
/// let summary = generate_to_dir(config, &dir, FileFormat::Jsonl)?;
/// assert_eq!(summary.rows, 5_000);
/// assert_eq!(summary.rows_per_kind.values().sum::<u64>(), 5_000);
/// assert!(dir.join("_labels.jsonl").exists() && dir.join("_manifest.json").exists());
/// std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn generate_to_dir(
    config: GeneratorConfig,
    dir: impl AsRef<Path>,
    format: FileFormat,
) -> anyhow::Result<GenerationSummary> {
    generate_to_dir_with(config, dir, format, &OutputOptions::default(), |_| {})
}

/// [`generate_to_dir`] with options and a progress callback, called with the
/// rows written so far every `options.progress_every` rows and at the end.
pub fn generate_to_dir_with(
    config: GeneratorConfig,
    dir: impl AsRef<Path>,
    format: FileFormat,
    options: &OutputOptions,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<GenerationSummary> {
    let dir = dir.as_ref();
    config.validate()?;
    prepare_dir(dir, options.replace_existing)?;
    let started = Instant::now();

    let mut writer = PartitionedWriter::new(dir, format, options.write.clone());
    let labels_path = dir.join(LABELS_FILE);
    let mut labels_out = BufWriter::new(
        File::create(&labels_path)
            .with_context(|| format!("creating {}", labels_path.display()))?,
    );
    let mut generator = Generator::new(config);
    let mut event = GeneratedEvent::default();
    let mut rows_per_kind = [0u64; EventKind::ALL.len()];
    let mut labels_per_code = [0u64; Anomaly::ALL.len()];
    let mut labelled_rows = 0;
    let mut first_ts = Millis::MAX;
    let mut last_ts = Millis::MIN;
    let mut rows = 0u64;
    let every = options.progress_every.max(1);
    while generator.next_into(&mut event) {
        let record = &event.record;
        writer.write(record)?;
        rows += 1;
        if let Some(kind) = EventKind::parse(&record.kind) {
            rows_per_kind[kind as usize] += 1;
        }
        first_ts = first_ts.min(record.ts);
        last_ts = last_ts.max(record.ts);
        if !event.labels.is_empty() {
            labelled_rows += 1;
            for label in &event.labels {
                labels_per_code[label.anomaly as usize] += 1;
                serde_json::to_writer(
                    &mut labels_out,
                    &LabelLineRef {
                        event_id: &record.event_id,
                        label: label.anomaly.code(),
                        detail: &label.detail,
                    },
                )?;
                labels_out.write_all(b"\n")?;
            }
        }
        if rows % every == 0 {
            progress(rows);
        }
    }
    let written = writer.finish()?;
    labels_out
        .into_inner()
        .map_err(|error| error.into_error())
        .and_then(|mut file| file.flush())
        .with_context(|| format!("writing {}", labels_path.display()))?;

    let files = written
        .iter()
        .map(|file| ManifestFile {
            path: relative(dir, &file.path),
            date: file.date.clone(),
            rows: file.rows,
        })
        .collect();
    let (first_event_time, last_event_time) = if rows == 0 {
        (String::new(), String::new())
    } else {
        (format_rfc3339(first_ts), format_rfc3339(last_ts))
    };
    let summary = GenerationSummary {
        generator: concat!("adflow-datagen ", env!("CARGO_PKG_VERSION")).to_owned(),
        format: format.name().to_owned(),
        rows,
        rows_per_kind: EventKind::ALL
            .iter()
            .map(|kind| (kind.as_str().to_owned(), rows_per_kind[*kind as usize]))
            .collect(),
        labels: labels_per_code.iter().sum(),
        labels_per_code: Anomaly::ALL
            .iter()
            .map(|anomaly| {
                (
                    anomaly.code().to_owned(),
                    labels_per_code[*anomaly as usize],
                )
            })
            .collect(),
        labelled_rows,
        first_event_time,
        last_event_time,
        labels_file: LABELS_FILE.to_owned(),
        files,
        config: generator.config().clone(),
        elapsed: Duration::ZERO,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest = serde_json::to_string_pretty(&summary)?;
    manifest.push('\n');
    std::fs::write(&manifest_path, manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    progress(rows);
    Ok(GenerationSummary {
        elapsed: started.elapsed(),
        ..summary
    })
}

#[derive(Serialize)]
struct LabelLineRef<'a> {
    event_id: &'a str,
    label: &'static str,
    detail: &'a str,
}

/// Reads a labels file written by [`generate_to_dir`].
pub fn read_labels(path: impl AsRef<Path>) -> anyhow::Result<Vec<LabelLine>> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a label line", path.display(), number + 1))
        })
        .collect()
}

fn relative(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    relative
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Creates `dir`, refusing (or, with `replace`, clearing) a previous run's output.
fn prepare_dir(dir: &Path, replace: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == LABELS_FILE || name == MANIFEST_FILE || name.starts_with("dt=") {
            stale.push(entry.path());
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    if !replace {
        bail!(
            "{} already holds generated data ({} entries such as {}); \
             choose an empty directory or replace it (adgen --force)",
            dir.display(),
            stale.len(),
            stale[0].display()
        );
    }
    for path in stale {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
