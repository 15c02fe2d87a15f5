//! Report tables and their forms: aligned text, CSV that Excel opens as
//! UTF-8 (a BOM, CRLF), and XLSX with numbers as numbers.

use std::path::Path;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::ledger::answer_row::signed_money_text;
use crate::store::reports::{Expiring, Liability, SettlementLine};

/// A cell: text, money (two decimals) or a count.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Money(Decimal),
    Count(i64),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Money(d) => signed_money_text(*d),
            Cell::Count(n) => n.to_string(),
        }
    }
}

/// A header row and the rows under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

pub fn settlement_table(lines: &[SettlementLine], by_terminal: bool) -> Table {
    let mut header = vec!["store"];
    if by_terminal {
        header.push("terminal");
    }
    header.extend([
        "op",
        "tender",
        "count",
        "amount",
        "discount",
        "charged",
        "cash",
        "balance_delta",
        "points_delta",
    ]);
    let rows = lines
        .iter()
        .map(|l| {
            let mut r = vec![Cell::Text(l.store.clone())];
            if by_terminal {
                r.push(Cell::Text(l.terminal.clone().unwrap_or_default()));
            }
            r.extend([
                Cell::Text(l.op.clone()),
                Cell::Text(l.tender.clone()),
                Cell::Count(l.count),
                Cell::Money(l.amount),
                Cell::Money(l.discount),
                Cell::Money(l.charged),
                Cell::Money(l.cash),
                Cell::Money(l.balance_delta),
                Cell::Count(l.points_delta),
            ]);
            r
        })
        .collect();
    Table { header, rows }
}

pub fn liability_table(store: &str, l: &Liability) -> Table {
    Table {
        header: vec!["store", "cards", "balance", "held", "points", "as_of"],
        rows: vec![vec![
            Cell::Text(store.to_owned()),
            Cell::Count(l.cards),
            Cell::Money(l.balance),
            Cell::Money(l.held),
            Cell::Count(l.points),
            Cell::Text(
                chrono::DateTime::from_timestamp_millis(l.as_of_ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ),
        ]],
    }
}

/// Cards whose membership lapses soon: the time in the shops' offset for
/// people, and in Unix ms for an SMS gateway's script.
pub fn expiring_table(cards: &[Expiring], offset: chrono::FixedOffset) -> Table {
    let rows = cards
        .iter()
        .map(|e| {
            let at = chrono::DateTime::from_timestamp_millis(e.expires_at_ms)
                .map(|t| {
                    t.with_timezone(&offset)
                        .format("%Y-%m-%d %H:%M %:z")
                        .to_string()
                })
                .unwrap_or_default();
            vec![
                Cell::Text(e.card_no.clone()),
                Cell::Count(e.member_id),
                Cell::Text(e.name.clone()),
                Cell::Text(e.phone.clone()),
                Cell::Text(e.level.clone()),
                Cell::Text(e.store_id.clone().unwrap_or_default()),
                Cell::Text(at),
                Cell::Count(e.expires_at_ms),
            ]
        })
        .collect();
    Table {
        header: vec![
            "card",
            "member",
            "name",
            "phone",
            "level",
            "store",
            "expires_at",
            "expires_at_ms",
        ],
        rows,
    }
}

/// Columns padded to their widest cell; numbers right-aligned.
pub fn text(t: &Table) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(Cell::text).collect())
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|r| r[i].chars().count())
            .chain([t.header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..t.header.len()).map(width).collect();
    let mut out = String::new();
    let line = |out: &mut String, vals: Vec<(String, bool)>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|((v, right), w)| {
                if *right {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        t.header.iter().map(|h| (h.to_string(), false)).collect(),
    );
    for (r, texts) in t.rows.iter().zip(cells) {
        let right = r.iter().map(|c| !matches!(c, Cell::Text(_)));
        line(&mut out, texts.into_iter().zip(right).collect());
    }
    out
}

/// RFC 4180 CSV, UTF-8 with a BOM so that Excel reads it as UTF-8.
pub fn csv(t: &Table) -> Vec<u8> {
    let field = |s: &str| {
        if s.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("\u{feff}");
    out.push_str(&t.header.join(","));
    out.push_str("\r\n");
    for r in &t.rows {
        let fields: Vec<String> = r.iter().map(|c| field(&c.text())).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// One sheet: a bold header, money as numbers shown with two decimals.
pub fn xlsx(t: &Table, title: &str, path: &Path) -> anyhow::Result<()> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let sheet = wb.add_worksheet();
    sheet.set_name(sheet_name(title))?;
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("0.00");
    for (c, h) in t.header.iter().enumerate() {
        sheet.write_with_format(0, c as u16, *h, &bold)?;
    }
    for (i, r) in t.rows.iter().enumerate() {
        let row = i as u32 + 1;
        for (c, cell) in r.iter().enumerate() {
            let col = c as u16;
            match cell {
                Cell::Text(s) => sheet.write(row, col, s.as_str())?,
                Cell::Money(d) => {
                    sheet.write_with_format(row, col, d.to_f64().unwrap_or(0.0), &money)?
                }
                Cell::Count(n) => sheet.write(row, col, *n as f64)?,
            };
        }
    }
    sheet.autofit();
    wb.save(path)?;
    Ok(())
}

/// Excel allows 31 characters and no `[]:*?/\` in a sheet name.
fn sheet_name(title: &str) -> String {
    title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '-' } else { c })
        .take(31)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            header: vec!["store", "amount"],
            rows: vec![
                vec![
                    Cell::Text("S,1".into()),
                    Cell::Money(Decimal::new(-1250, 2)),
                ],
                vec![Cell::Text("李\"店".into()), Cell::Money(Decimal::new(5, 0))],
            ],
        }
    }

    #[test]
    fn csv_is_excel_utf8_with_quoting() {
        let got = String::from_utf8(csv(&table())).unwrap();
        assert_eq!(
            got,
            "\u{feff}store,amount\r\n\"S,1\",-12.50\r\n\"李\"\"店\",5.00\r\n"
        );
    }

    #[test]
    fn text_aligns_numbers_right() {
        let got = text(&table());
        assert_eq!(got, "store  amount\nS,1    -12.50\n李\"店      5.00\n");
    }
}
