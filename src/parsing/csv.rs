//! CSV syntax: a header line naming the columns, then one record per line.
//!
//! Records are split line by line (RFC 4180 quoting within a line, `""`
//! escapes a quote) so that every physical line is exactly one record and a
//! bad quote cannot swallow the rest of a file. adflow's writers never put
//! a line break inside a field.

use std::borrow::Cow;

use super::{Field, RawFields, RawValue, Rejection};
use crate::dead_letter::Reason;

/// The column layout read from a CSV header.
#[derive(Clone, Debug)]
pub struct CsvHeader {
    /// For each column, the field it holds (`None` for unknown columns).
    columns: Vec<Option<Field>>,
}

impl CsvHeader {
    /// Reads a header line; unknown column names are kept and ignored.
    pub fn parse(line: &str) -> Result<CsvHeader, Rejection> {
        let mut cells = Vec::new();
        split_line(line, &mut cells)?;
        let columns = cells
            .iter()
            .map(|name| Field::from_name(name.trim()))
            .collect();
        Ok(CsvHeader { columns })
    }

    /// Extracts the raw fields of one record line. `cells` is a scratch
    /// buffer reused across lines.
    pub fn parse_record<'a>(
        &self,
        line: &'a str,
        cells: &mut Vec<Cow<'a, str>>,
    ) -> Result<RawFields<'a>, Rejection> {
        cells.clear();
        split_line(line, cells)?;
        if cells.len() != self.columns.len() {
            return Err(Rejection::message(
                Reason::MalformedCsv,
                format!("{} columns, header has {}", cells.len(), self.columns.len()),
            ));
        }
        let mut raw = RawFields::default();
        for (field, cell) in self.columns.iter().zip(cells.drain(..)) {
            if let Some(field) = field {
                raw.set(*field, RawValue::Text(cell));
            }
        }
        Ok(raw)
    }
}

/// Splits one CSV line into cells, borrowing unless a cell has escaped quotes.
pub fn split_line<'a>(line: &'a str, cells: &mut Vec<Cow<'a, str>>) -> Result<(), Rejection> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let (cell, after) = split_quoted(quoted)?;
            cells.push(cell);
            match after.as_bytes().first() {
                None => return Ok(()),
                Some(b',') => rest = &after[1..],
                Some(_) => {
                    return Err(Rejection::message(
                        Reason::MalformedCsv,
                        "text after closing quote",
                    ))
                }
            }
        } else {
            match rest.find(',') {
                Some(comma) => {
                    cells.push(Cow::Borrowed(&rest[..comma]));
                    rest = &rest[comma + 1..];
                }
                None => {
                    cells.push(Cow::Borrowed(rest));
                    return Ok(());
                }
            }
        }
    }
}

/// Reads a quoted cell (opening quote already consumed); returns the cell and
/// the text after its closing quote.
fn split_quoted(text: &str) -> Result<(Cow<'_, str>, &str), Rejection> {
    let mut owned: Option<String> = None;
    let mut start = 0;
    let mut search = 0;
    loop {
        let Some(offset) = text[search..].find('"') else {
            return Err(Rejection::message(Reason::MalformedCsv, "unclosed quote"));
        };
        let quote = search + offset;
        if text[quote + 1..].starts_with('"') {
            owned
                .get_or_insert_with(String::new)
                .push_str(&text[start..=quote]);
            start = quote + 2;
            search = quote + 2;
        } else {
            let cell = match owned {
                Some(mut owned) => {
                    owned.push_str(&text[start..quote]);
                    Cow::Owned(owned)
                }
                None => Cow::Borrowed(&text[..quote]),
            };
            return Ok((cell, &text[quote + 1..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, Reason> {
        let mut cells = Vec::new();
        split_line(line, &mut cells).map_err(|r| r.reason)?;
        Ok(cells.into_iter().map(Cow::into_owned).collect())
    }

    #[test]
    fn splits_quoted_and_plain_cells() {
        assert_eq!(
            split("a,b,,c\r"),
            Ok(vec!["a".into(), "b".into(), "".into(), "c".into()])
        );
        assert_eq!(
            split(r#""x,y","say ""hi""",z"#),
            Ok(vec!["x,y".into(), r#"say "hi""#.into(), "z".into()])
        );
        assert_eq!(split(""), Ok(vec!["".into()]));
        assert_eq!(split("a,"), Ok(vec!["a".into(), "".into()]));
        assert_eq!(split(r#""open"#), Err(Reason::MalformedCsv));
        assert_eq!(split(r#""a"b"#), Err(Reason::MalformedCsv));
    }

    #[test]
    fn header_maps_columns_by_name() {
        let header =
            CsvHeader::parse("kind,extra,event_id").unwrap_or(CsvHeader { columns: vec![] });
        let mut cells = Vec::new();
        let raw = header.parse_record("click,zzz,e1", &mut cells);
        let raw = raw.unwrap_or_default();
        assert_eq!(raw.get(Field::Kind), Some(&RawValue::Text("click".into())));
        assert_eq!(raw.get(Field::EventId), Some(&RawValue::Text("e1".into())));
        let short = header.parse_record("click", &mut cells).map(|_| ());
        assert_eq!(short.map_err(|r| r.reason), Err(Reason::MalformedCsv));
    }
}
