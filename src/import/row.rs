//! One row of a member file, checked: every value in the protocol's
//! grammar, and nothing Excel may have changed silently (a card number or
//! phone stored as a number has lost its leading zeros or gone to exponent
//! form; it is refused with a reason that says so, never imported wrong).

use rust_decimal::Decimal;

use crate::protocol::{attr2, grammar};

/// A cell as the file holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// XLSX numbers (CSV cells are always text).
    Number(f64),
    /// XLSX dates, as `YYYY-MM-DD`.
    Date(String),
}

/// A row that may be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    pub card: String,
    pub name: String,
    pub phone: String,
    pub level: String,
    /// Two decimals.
    pub balance: String,
    pub points: i64,
    pub pin: Option<String>,
    pub birthday: Option<String>,
}

/// The columns, in any order; the last two optional.
pub const COLUMNS: [&str; 8] = [
    "card", "name", "phone", "level", "balance", "points", "pin", "birthday",
];
pub const REQUIRED: usize = 6;

/// Checks one row (`cells` in [`COLUMNS`] order, absent ones `Empty`).
pub fn check(cells: &[Cell; 8]) -> Result<ImportRow, String> {
    let [card, name, phone, level, balance, points, pin, birthday] = cells;
    let card = exact_text("card", card)?;
    grammar::card(&card).map_err(|_| format!("card {card:?} is not 4-32 letters and digits"))?;
    let phone = exact_text("phone", phone)?;
    attr2::phone(&phone).map_err(|_| format!("phone {phone:?} is not 5-20 digits"))?;
    let name = text("name", name)?;
    attr2::text(&name).map_err(|_| "name must be 1-64 characters".to_owned())?;
    let level = text("level", level)?;
    grammar::terminal(&level).map_err(|_| format!("level {level:?} is not a level id"))?;
    Ok(ImportRow {
        card,
        name,
        phone,
        level,
        balance: money(balance)?,
        points: points_of(points)?,
        pin: optional(pin, |c| {
            let p = exact_text("pin", c)?;
            attr2::pin(&p).map_err(|_| "pin must be 4-12 digits".to_owned())?;
            Ok(p)
        })?,
        birthday: optional(birthday, date)?,
    })
}

/// A value that must be kept digit for digit: a number cell is refused.
fn exact_text(col: &str, c: &Cell) -> Result<String, String> {
    let s = match c {
        Cell::Text(s) => s.trim().to_owned(),
        Cell::Empty => return Err(format!("{col} is empty")),
        Cell::Number(_) => {
            return Err(format!(
                "{col} is stored as a number, which loses leading zeros and long digits: \
                 format the column as text in Excel and enter it again"
            ))
        }
        Cell::Date(_) => return Err(format!("{col} is stored as a date")),
    };
    if looks_exponent(&s) {
        return Err(format!(
            "{col} {s:?} is in exponent form (Excel shows long numbers so): \
             format the column as text and enter it again"
        ));
    }
    Ok(s)
}

/// `1.38E+10`, `1E10`: a number Excel abbreviated.
fn looks_exponent(s: &str) -> bool {
    let Some((m, e)) = s.split_once(['e', 'E']) else {
        return false;
    };
    let e = e.strip_prefix(['+', '-']).unwrap_or(e);
    !m.is_empty()
        && m.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !e.is_empty()
        && e.bytes().all(|b| b.is_ascii_digit())
}

fn text(col: &str, c: &Cell) -> Result<String, String> {
    match c {
        Cell::Text(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Cell::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{col} is empty")),
    }
}

fn optional<T>(c: &Cell, f: impl Fn(&Cell) -> Result<T, String>) -> Result<Option<T>, String> {
    match c {
        Cell::Empty => Ok(None),
        Cell::Text(s) if s.trim().is_empty() => Ok(None),
        c => f(c).map(Some),
    }
}

/// An opening balance: at most two decimals, not negative; empty is 0.
fn money(c: &Cell) -> Result<String, String> {
    let d = match c {
        Cell::Empty => Decimal::ZERO,
        Cell::Text(s) if s.trim().is_empty() => Decimal::ZERO,
        Cell::Text(s) => grammar::amount(s.trim())
            .map_err(|_| format!("balance {s:?} is not an amount with at most two decimals"))?,
        Cell::Number(n) => {
            let cents = (n * 100.0).round();
            if !n.is_finite() || *n < 0.0 || (cents - n * 100.0).abs() > 1e-6 || cents > 1e14 {
                return Err(format!(
                    "balance {n} is not an amount with at most two decimals"
                ));
            }
            Decimal::new(cents as i64, 2)
        }
        Cell::Date(_) => return Err("balance is stored as a date".into()),
    };
    Ok(format!("{d:.2}"))
}

fn points_of(c: &Cell) -> Result<i64, String> {
    let bad = || "points must be a whole number, not negative".to_owned();
    match c {
        Cell::Empty => Ok(0),
        Cell::Text(s) if s.trim().is_empty() => Ok(0),
        Cell::Text(s) => attr2::count(s.trim(), 15).map_err(|_| bad()),
        Cell::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e15 => Ok(*n as i64),
        _ => Err(bad()),
    }
}

fn date(c: &Cell) -> Result<String, String> {
    let s = match c {
        Cell::Date(d) => d.clone(),
        Cell::Text(s) => s.trim().to_owned(),
        _ => return Err("birthday must be a date, YYYY-MM-DD".into()),
    };
    attr2::birthday(&s).map_err(|_| format!("birthday {s:?} is not a date YYYY-MM-DD"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn row(card: Cell, phone: Cell, balance: Cell) -> [Cell; 8] {
        [
            card,
            t("李雷"),
            phone,
            t("std"),
            balance,
            t("12"),
            Cell::Empty,
            Cell::Empty,
        ]
    }

    #[test]
    fn a_good_row() {
        let r = check(&row(t("00001234"), t("013800001234"), t("12.5"))).unwrap();
        assert_eq!(r.card, "00001234");
        assert_eq!(r.phone, "013800001234");
        assert_eq!(r.balance, "12.50");
        assert_eq!(r.points, 12);
        let n = check(&row(t("CARD1"), t("13800001234"), Cell::Number(99.9))).unwrap();
        assert_eq!(n.balance, "99.90");
    }

    #[test]
    fn what_excel_changed_is_refused_with_the_reason() {
        let e = check(&row(Cell::Number(1234.0), t("13800001234"), t("1"))).unwrap_err();
        assert!(e.contains("stored as a number"), "{e}");
        let e = check(&row(t("CARD1"), t("1.38E+10"), t("1"))).unwrap_err();
        assert!(e.contains("exponent form"), "{e}");
        let e = check(&row(t("CARD1"), Cell::Number(13800001234.0), t("1"))).unwrap_err();
        assert!(e.starts_with("phone is stored as a number"), "{e}");
        let e = check(&row(t("CARD1"), t("13800001234"), t("1.005"))).unwrap_err();
        assert!(e.contains("two decimals"), "{e}");
        let e = check(&row(t("CARD1"), t("13800001234"), Cell::Number(0.001))).unwrap_err();
        assert!(e.contains("two decimals"), "{e}");
        let e = check(&row(t("CARD1"), t("13800001234"), t("-5"))).unwrap_err();
        assert!(e.contains("balance"), "{e}");
        let mut r = row(t("CARD1"), t("13800001234"), t("1"));
        r[5] = t("1.5");
        assert!(check(&r).unwrap_err().contains("points"));
        r[5] = t("1");
        r[6] = Cell::Number(1234.0);
        assert!(check(&r).unwrap_err().contains("pin is stored as a number"));
        r[6] = t("1234");
        r[7] = t("2001-02-30");
        assert!(check(&r).unwrap_err().contains("birthday"));
        r[7] = Cell::Date("2001-02-28".into());
        assert_eq!(check(&r).unwrap().birthday.as_deref(), Some("2001-02-28"));
    }

    #[test]
    fn exponent_forms() {
        for s in ["1.38E+10", "1E10", "2.5e-3", "1e+5"] {
            assert!(looks_exponent(s), "{s}");
        }
        for s in ["CARD1E10", "E10", "1.38E", "13800001234"] {
            assert!(!looks_exponent(s), "{s}");
        }
    }
}
