//! File discovery and the plan that spreads files over workers.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::write::FileFormat;

/// A file to read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// How it is encoded.
    pub format: FileFormat,
    /// Size on disk.
    pub bytes: u64,
}

/// Why inputs could not be found. Problems *inside* a file are dead letters, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A path that is neither a file, a directory nor a glob that matches anything.
    #[error("no input matches {0:?}")]
    NoMatch(String),
    /// A file whose name does not say JSONL, CSV or Parquet.
    #[error("cannot tell the format of {0:?} (expected .jsonl, .json, .ndjson, .csv, optionally .gz, or .parquet)")]
    UnknownFormat(PathBuf),
    /// A malformed glob pattern.
    #[error("bad glob pattern {pattern:?}: {message}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// A directory or file that could not be listed or inspected.
    #[error("cannot read {path:?}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Expands files, directories (recursively) and glob patterns into a sorted,
/// duplicate-free list of input files.
///
/// Directory walks and globs skip files whose names start with `_` or `.`
/// (side files such as adgen's `_labels.jsonl`, as Hadoop and Spark do) and
/// files of unknown formats; a file named explicitly must have a known format.
pub fn discover<S: AsRef<str>>(inputs: &[S]) -> Result<Vec<InputFile>, SourceError> {
    let mut found = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        let path = Path::new(input);
        if path.is_dir() {
            walk(path, &mut found)?;
        } else if path.is_file() {
            let format = FileFormat::from_path(path)
                .ok_or_else(|| SourceError::UnknownFormat(path.into()))?;
            found.push(input_file(path, format)?);
        } else if input.contains(['*', '?', '[']) {
            let matches = glob::glob(input).map_err(|error| SourceError::Glob {
                pattern: input.to_owned(),
                message: error.to_string(),
            })?;
            let before = found.len();
            for entry in matches.flatten() {
                if entry.is_dir() {
                    walk(&entry, &mut found)?;
                } else if let Some(format) = listed_format(&entry) {
                    found.push(input_file(&entry, format)?);
                }
            }
            if found.len() == before {
                return Err(SourceError::NoMatch(input.to_owned()));
            }
        } else {
            return Err(SourceError::NoMatch(input.to_owned()));
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

fn listed_format(path: &Path) -> Option<FileFormat> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with(['_', '.']) {
        return None;
    }
    FileFormat::from_path(path)
}

fn walk(dir: &Path, found: &mut Vec<InputFile>) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: dir.into(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(['_', '.']));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, found)?;
        } else if let Some(format) = listed_format(&path) {
            found.push(input_file(&path, format)?);
        }
    }
    Ok(())
}

fn input_file(path: &Path, format: FileFormat) -> Result<InputFile, SourceError> {
    let metadata = std::fs::metadata(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })?;
    Ok(InputFile {
        path: path.into(),
        format,
        bytes: metadata.len(),
    })
}

/// One piece of reading work, done by exactly one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkUnit {
    /// A whole JSONL or CSV file (or a Parquet file whose footer is unreadable).
    File {
        /// Index into [`WorkPlan::files`].
        file: usize,
    },
    /// One row group of a Parquet file.
    RowGroup {
        /// Index into [`WorkPlan::files`].
        file: usize,
        /// Row group number.
        row_group: usize,
        /// Row number of the group's first row in the file.
        first_row: u64,
    },
}

/// Input files cut into units and spread over workers.
///
/// Every worker computes the same plan from the same file list, so no
/// coordination is needed: units are assigned largest first to the least
/// loaded worker, deterministically.
#[derive(Clone, Debug)]
pub struct WorkPlan {
    /// The files, in discovery order.
    pub files: Vec<InputFile>,
    /// Units with their weight (bytes on disk).
    pub units: Vec<(WorkUnit, u64)>,
}

impl WorkPlan {
    /// Cuts files into units: Parquet files by row group, others whole.
    pub fn new(files: Vec<InputFile>) -> WorkPlan {
        let mut units = Vec::new();
        for (index, file) in files.iter().enumerate() {
            let whole = (WorkUnit::File { file: index }, file.bytes);
            match file.format {
                FileFormat::Parquet => match row_groups(&file.path) {
                    Some(groups) if !groups.is_empty() => {
                        units.extend(groups.into_iter().enumerate().map(
                            |(row_group, (first_row, bytes))| {
                                let unit = WorkUnit::RowGroup {
                                    file: index,
                                    row_group,
                                    first_row,
                                };
                                (unit, bytes)
                            },
                        ));
                    }
                    // Unreadable or empty: reading the whole file reports it.
                    _ => units.push(whole),
                },
                _ => units.push(whole),
            }
        }
        WorkPlan { files, units }
    }

    /// Total weight of all units.
    pub fn total_bytes(&self) -> u64 {
        self.units.iter().map(|(_, bytes)| bytes).sum()
    }

    /// The units worker `index` of `peers` reads, in plan order.
    pub fn assignment(&self, index: usize, peers: usize) -> Vec<(WorkUnit, u64)> {
        let peers = peers.max(1);
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        order.sort_by_key(|&unit| std::cmp::Reverse(self.units[unit].1));
        let mut load = vec![0u64; peers];
        let mut mine = Vec::new();
        for unit in order {
            let (worker, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(worker, load)| (**load, *worker))
                .unwrap_or((0, &0));
            load[worker] += self.units[unit].1.max(1);
            if worker == index {
                mine.push(unit);
            }
        }
        mine.sort_unstable();
        mine.into_iter().map(|unit| self.units[unit]).collect()
    }
}

/// (first row, compressed bytes) of each row group, or `None` if the footer is unreadable.
fn row_groups(path: &Path) -> Option<Vec<(u64, u64)>> {
    let reader = SerializedFileReader::new(File::open(path).ok()?).ok()?;
    let mut first_row = 0u64;
    let groups = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|group| {
            let start = first_row;
            first_row += u64::try_from(group.num_rows()).unwrap_or(0);
            (start, u64::try_from(group.compressed_size()).unwrap_or(0))
        })
        .collect();
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_covers_every_unit_once() {
        let units = (0..7)
            .map(|file| (WorkUnit::File { file }, 10 * (file as u64 % 3 + 1)))
            .collect();
        let plan = WorkPlan {
            files: Vec::new(),
            units,
        };
        for peers in 1..=4 {
            let mut all: Vec<_> = (0..peers)
                .flat_map(|index| plan.assignment(index, peers))
                .collect();
            all.sort();
            let mut expected = plan.units.clone();
            expected.sort();
            assert_eq!(all, expected, "peers = {peers}");
        }
    }
}
