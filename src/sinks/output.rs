//! The transport half of a sink: opening stdout or `dir/<name>.<ext>`,
//! checking rows against the columns, and handing them to a format's
//! [`RowWriter`].

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::{Column, OutputFormat, SinkError, SinkSpec, Value};

/// The byte stream a format writes to.
pub(crate) type ByteSink = Box<dyn Write + Send>;

/// The target label of stdout in errors.
pub(crate) const STDOUT: &str = "<stdout>";

/// One output format: rows in, bytes out.
pub(crate) trait RowWriter {
    /// Starts the output (a header, a schema).
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError>;
    /// Writes one row; the caller has checked it against the columns.
    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError>;
    /// Pushes buffered rows to the byte stream, where the format allows it.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Completes the output (a table, a Parquet footer) and flushes it.
    fn finish(self: Box<Self>) -> Result<(), SinkError>;
}

/// Maps an I/O error on `target` to a [`SinkError`].
pub(crate) fn io_error(target: &str) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        target: target.to_owned(),
        source: Arc::new(source),
    }
}

/// An open destination with its format writer.
///
/// Dropping an unfinished `Output` removes its temporary file, if any.
pub(crate) struct Output {
    sink: String,
    columns: Vec<Column>,
    writer: Option<Box<dyn RowWriter>>,
    /// Where the finished output ends up (`None`: stdout).
    path: Option<PathBuf>,
    /// Where it is written until finished, when writing atomically.
    temp: Option<PathBuf>,
    rows: u64,
}

impl Output {
    /// Opens the destination of `spec` and begins the format.
    ///
    /// With `atomic`, a file is written as `dir/.<name>.<ext>.partial` and
    /// renamed by [`Output::finish`]; otherwise it is written in place (so
    /// that flushed changelog rows are visible while the sink runs).
    pub(crate) fn open(
        spec: &SinkSpec,
        columns: Vec<Column>,
        atomic: bool,
    ) -> Result<Output, SinkError> {
        check_name(&spec.name)?;
        let (bytes, target, path, temp): (ByteSink, String, _, _) = match &spec.dir {
            None => {
                if spec.format == OutputFormat::Parquet {
                    return Err(SinkError::NeedsDirectory {
                        sink: spec.name.clone(),
                        format: spec.format,
                    });
                }
                (Box::new(std::io::stdout()), STDOUT.to_owned(), None, None)
            }
            Some(dir) => {
                let path = spec.path_in(dir);
                let target = path.display().to_string();
                fs::create_dir_all(dir).map_err(io_error(&target))?;
                let temp = atomic.then(|| {
                    dir.join(format!(
                        ".{}.{}.partial",
                        spec.name,
                        spec.format.extension()
                    ))
                });
                let file =
                    File::create(temp.as_ref().unwrap_or(&path)).map_err(io_error(&target))?;
                (
                    Box::new(BufWriter::with_capacity(1 << 18, file)),
                    target,
                    Some(path),
                    temp,
                )
            }
        };
        let mut output = Output {
            sink: spec.name.clone(),
            columns,
            writer: None,
            path,
            temp,
            rows: 0,
        };
        let mut writer = new_writer(spec, bytes, target);
        writer.begin(&output.columns)?;
        output.writer = Some(writer);
        Ok(output)
    }

    /// Checks `row` against the columns and writes it.
    pub(crate) fn write(&mut self, row: &[Value]) -> Result<(), SinkError> {
        if row.len() != self.columns.len() {
            return Err(SinkError::Arity {
                sink: self.sink.clone(),
                expected: self.columns.len(),
                found: row.len(),
            });
        }
        if let Some((column, value)) = self
            .columns
            .iter()
            .zip(row)
            .find(|(column, value)| !value.fits(column.ty))
        {
            return Err(SinkError::TypeMismatch {
                sink: self.sink.clone(),
                column: column.name,
                expected: column.ty,
                found: value.kind(),
            });
        }
        if let Some(writer) = self.writer.as_mut() {
            writer.write_row(row)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Flushes the format writer.
    pub(crate) fn flush(&mut self) -> Result<(), SinkError> {
        match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the output and moves a temporary file into place; returns
    /// the path written (`None` for stdout) and the rows written.
    pub(crate) fn finish(mut self) -> Result<(Option<PathBuf>, u64), SinkError> {
        if let Some(writer) = self.writer.take() {
            writer.finish()?;
        }
        if let (Some(temp), Some(path)) = (self.temp.as_ref(), self.path.as_ref()) {
            fs::rename(temp, path).map_err(io_error(&path.display().to_string()))?;
            self.temp = None;
        }
        Ok((self.path.clone(), self.rows))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Best effort: the error that got us here is already reported.
            let _ = fs::remove_file(temp);
        }
    }
}

/// Writes `rows` to the destination of `spec` atomically.
pub(crate) fn write_all(
    spec: &SinkSpec,
    columns: Vec<Column>,
    rows: impl IntoIterator<Item = Vec<Value>>,
) -> Result<(Option<PathBuf>, u64), SinkError> {
    let mut output = Output::open(spec, columns, true)?;
    for row in rows {
        output.write(&row)?;
    }
    output.finish()
}

fn check_name(name: &str) -> Result<(), SinkError> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(SinkError::InvalidName {
            name: super::limit_length(name, 256),
        })
    }
}

fn new_writer(spec: &SinkSpec, bytes: ByteSink, target: String) -> Box<dyn RowWriter> {
    match spec.format {
        OutputFormat::Table => Box::new(super::table::TableWriter::new(
            bytes,
            target,
            spec.name.clone(),
            spec.table_rows,
        )),
        OutputFormat::Jsonl => Box::new(super::jsonl::JsonlWriter::new(bytes, target)),
        OutputFormat::Csv => Box::new(super::csv::CsvWriter::new(bytes, target)),
        OutputFormat::Parquet => Box::new(super::parquet::ParquetWriter::new(bytes, target)),
    }
}
