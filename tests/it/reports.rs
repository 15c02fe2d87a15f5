//! `cardswitch report …`: the same numbers as the office ops, as text, CSV
//! that Excel reads, XLSX, and a trend chart.

use std::process::{Command, Output};

use calamine::{open_workbook, Data, Reader, Xlsx};

use crate::harness;
use crate::ledger::back_office::{a_days_trade, day};
use crate::ledger_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

fn report(l: &Ledger, args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .arg("--database-url")
        .arg(&l.url)
        .arg("--keys-dir")
        .arg(&l.config.keys_dir)
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[tokio::test]
async fn reports_print_what_the_office_ops_answer() {
    let l = setup().await;
    a_days_trade(&l).await;
    let day = day(&l).await;
    let op = l.send_from("H1", &req("settlement", &day)).await.unwrap();
    // CSV: a BOM, CRLF, a header, then the op's rows in its order.
    let csv = report(&l, &["settlement", "--day", &day, "--format", "csv"]).stdout;
    assert!(csv.starts_with("\u{feff}".as_bytes()));
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|s| !s.is_empty()).collect();
    assert_eq!(
        lines[0],
        "store,op,tender,count,amount,discount,charged,cash,balance_delta,points_delta"
    );
    assert_eq!(lines.len() - 1, op.0.len());
    for (line, row) in lines[1..].iter().zip(&op.0) {
        let want: Vec<&str> = [
            "store",
            "op",
            "tender",
            "count",
            "amount",
            "discount",
            "charged",
            "cash",
            "balance_delta",
            "points_delta",
        ]
        .iter()
        .map(|f| row.get(f).unwrap())
        .collect();
        assert_eq!(line.split(',').collect::<Vec<_>>(), want);
    }
    // XLSX: money as numbers.
    let dir = harness::temp_dir("cs-report-");
    let path = dir.join("settlement.xlsx").to_string_lossy().into_owned();
    report(
        &l,
        &[
            "settlement",
            "--day",
            &day,
            "--store",
            "S2",
            "--by",
            "terminal",
            "--format",
            "xlsx",
            "--out",
            &path,
        ],
    );
    let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
    let sheet = wb.worksheet_range_at(0).unwrap().unwrap();
    let rows: Vec<_> = sheet.rows().collect();
    assert_eq!(rows[0][0], Data::String("store".into()));
    let total = rows
        .iter()
        .find(|r| r[2] == Data::String("total".into()))
        .unwrap();
    assert_eq!(rows[0][1], Data::String("terminal".into()));
    assert_eq!(total[5], Data::Float(30.0), "S2's top-up, a number");
    // Liability: the op's numbers.
    let lia = report(&l, &["liability", "--format", "csv"]).stdout;
    let lia = String::from_utf8_lossy(&lia[3..]).to_string();
    let op = l.send_from("H1", &req("liability", "*")).await.unwrap();
    let row = lia.split("\r\n").nth(1).unwrap();
    let f: Vec<&str> = row.split(',').collect();
    assert_eq!(
        f[..5],
        [
            "*",
            op.0[0].get("cards").unwrap(),
            op.0[0].get("balance").unwrap(),
            "0.00",
            op.0[0].get("points").unwrap()
        ]
    );
    let table = String::from_utf8(report(&l, &["liability"]).stdout).unwrap();
    assert!(table.starts_with("store  cards"), "{table}");
}

#[tokio::test]
async fn the_trend_is_a_chart_of_the_daily_totals() {
    let l = setup().await;
    a_days_trade(&l).await;
    let day: chrono::NaiveDate = day(&l).await.parse().unwrap();
    let from = (day - chrono::Duration::days(6)).to_string();
    let dir = harness::temp_dir("cs-trend-");
    let svg = dir.join("trend.svg");
    let o = report(
        &l,
        &[
            "trend",
            "--from",
            &from,
            "--to",
            &day.to_string(),
            "--out",
            svg.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("1 days drawn"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
    for label in ["sales (charged)", "top-ups", "new cards"] {
        assert!(text.contains(label), "{label}");
    }
    assert!(text.contains("<polyline"), "the series are drawn");
}
