//! The table format: an aligned text table, rendered when the sink finishes.

use std::fmt::Write as _;

use super::output::{io_error, ByteSink, RowWriter};
use super::{Column, SinkError, Value};

/// Longest cell a table shows, in characters; longer cells end in `…`.
const MAX_CELL_CHARS: usize = 64;

/// Keeps the first rows and counts the rest; renders on [`RowWriter::finish`].
pub(crate) struct TableWriter {
    bytes: ByteSink,
    target: String,
    title: String,
    max_rows: usize,
    columns: Vec<Column>,
    shown: Vec<Vec<Value>>,
    total: usize,
}

impl TableWriter {
    pub(crate) fn new(bytes: ByteSink, target: String, title: String, max_rows: usize) -> Self {
        TableWriter {
            bytes,
            target,
            title,
            max_rows,
            columns: Vec::new(),
            shown: Vec::new(),
            total: 0,
        }
    }
}

impl RowWriter for TableWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), SinkError> {
        self.columns = columns.to_vec();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), SinkError> {
        if self.shown.len() < self.max_rows {
            self.shown.push(row.to_vec());
        }
        self.total += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // A table is rendered whole, once its rows are known.
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        let text = render(&self.title, &self.columns, &self.shown, self.total);
        self.bytes
            .write_all(text.as_bytes())
            .and_then(|()| self.bytes.flush())
            .map_err(io_error(&self.target))
    }
}

/// Renders `shown` rows of a table of `total` rows (see `sinks::render_table`).
///
/// Rows with too few values get empty cells; extra values are ignored.
pub(crate) fn render(
    title: &str,
    columns: &[Column],
    shown: &[Vec<Value>],
    total: usize,
) -> String {
    let header: Vec<String> = columns.iter().map(|column| cell(column.name)).collect();
    let body: Vec<Vec<String>> = shown
        .iter()
        .map(|row| {
            (0..columns.len())
                .map(|index| {
                    row.get(index)
                        .map(|value| cell(&value.to_string()))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|index| {
            body.iter()
                .map(|row| chars(&row[index]))
                .chain([chars(&header[index])])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut text = String::new();
    let _ = writeln!(text, "{} ({})", cell(title), plural(total, "row"));
    push_line(&mut text, columns, &widths, &header);
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    text.push_str(&rule.join("-+-"));
    text.push('\n');
    for row in &body {
        push_line(&mut text, columns, &widths, row);
    }
    if total > shown.len() {
        let hidden = total - shown.len();
        let noun = if hidden == 1 { "row" } else { "rows" };
        let _ = writeln!(text, "… {hidden} more {noun}");
    }
    text
}

fn push_line(text: &mut String, columns: &[Column], widths: &[usize], cells: &[String]) {
    let mut line = String::new();
    for (index, ((column, width), cell)) in columns.iter().zip(widths).zip(cells).enumerate() {
        if index > 0 {
            line.push_str(" | ");
        }
        let pad = " ".repeat(width.saturating_sub(chars(cell)));
        if column.ty.is_numeric() {
            line.push_str(&pad);
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.push_str(&pad);
        }
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

/// `text` on one line: control characters escaped, cut to 64 characters
/// (the last one `…`), as every table cell is.
///
/// ```
/// assert_eq!(adflow::sinks::table_cell("spring\nsale"), "spring\\nsale");
/// assert_eq!(adflow::sinks::table_cell(&"x".repeat(100)).chars().count(), 64);
/// ```
pub fn cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    if chars(&escaped) <= MAX_CELL_CHARS {
        escaped
    } else {
        let mut cut: String = escaped.chars().take(MAX_CELL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
