//! Member files as users have them: CSV (UTF-8, with or without a BOM, or
//! GB18030 as Excel saves it on a Chinese Windows) or XLSX (its first
//! sheet), a header row naming the columns.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use calamine::{open_workbook_auto, Data, Reader};

use super::row::{Cell, COLUMNS, REQUIRED};

/// The rows of a file, each with its row number as a spreadsheet shows it
/// (the header is row 1), cells in [`COLUMNS`] order.
pub struct Sheet {
    pub rows: Vec<(usize, [Cell; 8])>,
}

/// The largest file read (rows after the header).
pub const MAX_ROWS: usize = 2_000_000;

pub fn read(path: &Path) -> anyhow::Result<Sheet> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let grid = match ext.as_deref() {
        Some("csv") => {
            return csv(&std::fs::read(path).with_context(|| path.display().to_string())?)
        }
        Some("xlsx") | Some("xlsm") | Some("xls") => xlsx_grid(path)?,
        _ => bail!("{}: a member file is .csv or .xlsx", path.display()),
    };
    arrange(grid)
}

/// Bytes as text: UTF-8 (its BOM dropped), else GB18030.
pub fn decode(bytes: &[u8]) -> anyhow::Result<String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_owned());
    }
    let (text, _, bad) = encoding_rs::GB18030.decode(bytes);
    if bad {
        bail!("the file is neither UTF-8 nor GB18030 text");
    }
    Ok(text.into_owned())
}

/// A CSV member file's rows, from its bytes.
pub fn csv(bytes: &[u8]) -> anyhow::Result<Sheet> {
    arrange(csv_grid(bytes)?)
}

fn csv_grid(bytes: &[u8]) -> anyhow::Result<Vec<Vec<Cell>>> {
    let text = decode(bytes)?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| anyhow!("CSV: {e}"))?;
        out.push(
            rec.iter()
                .map(|f| match f {
                    "" => Cell::Empty,
                    f => Cell::Text(f.to_owned()),
                })
                .collect(),
        );
        if out.len() > MAX_ROWS + 1 {
            bail!("more than {MAX_ROWS} rows");
        }
    }
    Ok(out)
}

fn xlsx_grid(path: &Path) -> anyhow::Result<Vec<Vec<Cell>>> {
    let mut wb = open_workbook_auto(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| anyhow!("{}: no sheet", path.display()))?
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if range.height() > MAX_ROWS + 1 {
        bail!("more than {MAX_ROWS} rows");
    }
    Ok(range
        .rows()
        .map(|r| r.iter().map(xlsx_cell).collect())
        .collect())
}

fn xlsx_cell(d: &Data) -> Cell {
    match d {
        Data::Empty => Cell::Empty,
        Data::String(s) => Cell::Text(s.clone()),
        Data::Float(f) => Cell::Number(*f),
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Bool(b) => Cell::Text(b.to_string()),
        // Excel's serial day (the 1900 system): days since 1899-12-30.
        Data::DateTime(t) => chrono::NaiveDate::from_ymd_opt(1899, 12, 30)
            .and_then(|d| d.checked_add_signed(chrono::Duration::days(t.as_f64().floor() as i64)))
            .map_or(Cell::Empty, |d| Cell::Date(d.to_string())),
        Data::DateTimeIso(s) => Cell::Date(s.chars().take(10).collect()),
        Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Text(format!("#{e:?}")),
    }
}

/// The header names the columns; every data row becomes its cells in
/// [`COLUMNS`] order. Wholly empty rows are left out.
fn arrange(grid: Vec<Vec<Cell>>) -> anyhow::Result<Sheet> {
    let mut it = grid.into_iter().enumerate();
    let Some((_, header)) = it.next() else {
        bail!("the file is empty: it needs a header row");
    };
    let mut at: [Option<usize>; 8] = [None; 8];
    for (i, h) in header.iter().enumerate() {
        let name = match h {
            Cell::Text(s) => s.trim().to_ascii_lowercase(),
            Cell::Empty => continue,
            _ => bail!("header cell {} is not a column name", i + 1),
        };
        let Some(c) = COLUMNS.iter().position(|c| *c == name) else {
            bail!(
                "unknown column {name:?}: the columns are {}",
                COLUMNS.join(",")
            );
        };
        if at[c].replace(i).is_some() {
            bail!("column {name} appears twice");
        }
    }
    if let Some(missing) = (0..REQUIRED).find(|c| at[*c].is_none()) {
        bail!("the header has no {} column", COLUMNS[missing]);
    }
    let mut rows = Vec::new();
    for (i, r) in it {
        if r.iter().all(|c| *c == Cell::Empty) {
            continue;
        }
        let cells = at.map(|p| p.and_then(|p| r.get(p).cloned()).unwrap_or(Cell::Empty));
        rows.push((i + 1, cells));
    }
    Ok(Sheet { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_and_gb18030_are_read() {
        assert_eq!(decode(b"\xEF\xBB\xBFcard").unwrap(), "card");
        let (gb, _, _) = encoding_rs::GB18030.encode("李雷,13800001234");
        assert_eq!(decode(&gb).unwrap(), "李雷,13800001234");
        assert!(decode(b"card\xff\xff").is_err(), "neither encoding");
    }

    #[test]
    fn columns_in_any_order_and_the_header_checked() {
        let grid = csv_grid(
            "phone,card,name,level,points,balance\n138000012345,C0001,Li,std,1,2\n,,,,,\n"
                .as_bytes(),
        )
        .unwrap();
        let s = arrange(grid).unwrap();
        assert_eq!(s.rows.len(), 1);
        let (n, cells) = &s.rows[0];
        assert_eq!(*n, 2);
        assert_eq!(cells[0], Cell::Text("C0001".into()));
        assert_eq!(cells[2], Cell::Text("138000012345".into()));
        assert_eq!(cells[6], Cell::Empty);
        for bad in [
            "card,name\n",
            "card,name,phone,level,balance,points,colour\n",
            "card,card,name,phone,level,balance,points\n",
            "",
        ] {
            assert!(
                arrange(csv_grid(bad.as_bytes()).unwrap()).is_err(),
                "{bad:?}"
            );
        }
    }
}
