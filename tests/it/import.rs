//! `import members`: files as users have them, each row imported whole or
//! rejected with its reason, a second run posting nothing new, and the
//! imported cards as good as registered ones (chained, verified, evented).

use std::path::{Path, PathBuf};

use cardswitch::import::Summary;

use crate::harness;
use crate::ledger_support::*;
use crate::tamper::assert_clean;

async fn import(l: &Ledger, path: &Path, store: &str) -> Summary {
    cardswitch::import::members(&l.config, &l.pool, path, store, false, |_, _| {})
        .await
        .unwrap()
}

fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = harness::temp_dir("cs-import-").join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn reasons(s: &Summary) -> Vec<(usize, String)> {
    s.rejected
        .iter()
        .map(|r| (r.row, r.reason.clone()))
        .collect()
}

const CSV: &str = "\u{feff}card,name,phone,level,balance,points,pin,birthday\r\n\
    IMP00001,Li Lei,13800000001,std,100.50,20,1234,1990-05-01\r\n\
    IMP00002,Han Meimei,13800000002,gold,0,0,,\r\n\
    IMP00003,Bad Phone,1.38E+10,std,5,0,,\r\n\
    IMP00001,Again,13800000009,std,1,1,,\r\n\
    IMP00004,No Level,13800000004,platinum,5,0,,\r\n\
    IMP00005,\"Wang, Fang\",13800000005,std,7.25,3,,\r\n";

#[tokio::test]
async fn a_csv_file_is_imported_row_by_row_and_again_posts_nothing() {
    let l = setup().await;
    let path = file("members.csv", CSV.as_bytes());
    let s = import(&l, &path, "S1").await;
    assert_eq!(
        (s.rows, s.imported, s.skipped),
        (6, 3, 0),
        "{:?}",
        reasons(&s)
    );
    let r = reasons(&s);
    assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [4, 5, 6]);
    assert!(r[0].1.contains("exponent form"), "{r:?}");
    assert!(r[1].1.contains("repeated"), "{r:?}");
    assert!(r[2].1.contains("platinum"), "{r:?}");
    // Nothing of a rejected row was written.
    assert_eq!(l.count("SELECT count(*) FROM cards").await, 3);
    assert_eq!(l.count("SELECT count(*) FROM members").await, 3);
    let c = l.card_row("IMP00001").await;
    assert_eq!((c.balance, c.points), (d("100.50"), 20));
    assert_eq!(l.card_row("IMP00005").await.balance, d("7.25"));
    // One `import` posting and one event per card; the books balance.
    let imports = "SELECT count(*) FROM postings WHERE op = 'import' AND terminal_id = 'import-S1'";
    assert_eq!(l.count(imports).await, 3);
    assert_eq!(
        l.count("SELECT count(*) FROM events WHERE op = 'import'")
            .await,
        3
    );
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE store_id = 'S1'")
            .await,
        3
    );
    l.check_books().await;
    assert_clean(&l).await;
    // An imported card works like any: its PIN, its points, a debit.
    l.refused(&req("query", "IMP00001").a2("pin", "9999"), 2009)
        .await;
    let q = l.ok(&req("query", "IMP00001").a2("pin", "1234")).await;
    assert_eq!(q.get("points"), Some("20"));
    l.ok(&req("debit", "IMP00001")
        .amount("0.50")
        .order("D1")
        .a2("pin", "1234"))
        .await;
    let st = l
        .send_from("O1", &req("statement", "IMP00001"))
        .await
        .unwrap();
    assert_eq!(st.0[0].get("op"), Some("import"));
    assert_eq!(st.0[0].get("balance_delta"), Some("100.50"));

    // No till undoes an opening balance.
    l.refused(
        &req("reverse", "import-IMP00001")
            .order("RV1")
            .mgr()
            .a2("terminal", "import-S1"),
        2007,
    )
    .await;
    // Again: every imported row is skipped, nothing new is posted.
    let again = import(&l, &path, "S1").await;
    assert_eq!(
        (again.imported, again.skipped, again.rejected.len()),
        (0, 3, 3)
    );
    assert_eq!(l.count(imports).await, 3);
    // A changed value, or a card that exists otherwise: rejected, unchanged.
    l.card("TILL0001", "std", Some("5"), None).await;
    let changed = file(
        "changed.csv",
        b"card,name,phone,level,balance,points\nIMP00002,Han Meimei,13800000002,gold,50,0\nTILL0001,X,13800000007,std,1,0\n",
    );
    let s = import(&l, &changed, "S1").await;
    let r = reasons(&s);
    assert_eq!(s.imported, 0);
    assert!(
        r[0].1.contains("imported before with other values"),
        "{r:?}"
    );
    assert!(r[1].1.contains("already exists"), "{r:?}");
    assert_eq!(l.card_row("IMP00002").await.balance, d("0"));
    assert_eq!(l.card_row("TILL0001").await.balance, d("5"));
    l.check_books().await;
}

#[tokio::test]
async fn gb18030_csv_and_a_dry_run() {
    let l = setup().await;
    let text = "card,name,phone,level,balance,points\nGBK00001,李雷,13800000001,std,8,0\n";
    let (gb, _, _) = encoding_rs::GB18030.encode(text);
    let path = file("gbk.csv", &gb);
    let dry = cardswitch::import::members(&l.config, &l.pool, &path, "S1", true, |_, _| {})
        .await
        .unwrap();
    assert!(dry.dry_run && dry.imported == 1);
    assert_eq!(
        l.count("SELECT count(*) FROM cards").await,
        0,
        "a dry run writes nothing"
    );
    let s = import(&l, &path, "S1").await;
    assert_eq!(s.imported, 1);
    let m = l.send_from("O1", &req("member", "GBK00001")).await.unwrap();
    assert_eq!(m.0[0].get("name"), Some("李雷"));
    let bad = cardswitch::import::members(&l.config, &l.pool, &path, "S9", false, |_, _| {}).await;
    assert!(bad.is_err(), "no store S9");
}

#[tokio::test]
async fn xlsx_cells_that_excel_stored_as_numbers_are_refused_with_the_reason() {
    let l = setup().await;
    let path = harness::temp_dir("cs-import-").join("members.xlsx");
    {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let s = wb.add_worksheet();
        for (c, h) in [
            "card", "name", "phone", "level", "balance", "points", "birthday",
        ]
        .iter()
        .enumerate()
        {
            s.write(0, c as u16, *h).unwrap();
        }
        // Row 2: all well; row 3: the card a number; row 4: the phone one.
        s.write(1, 0, "XLS00001").unwrap();
        s.write(1, 1, "Li").unwrap();
        s.write(1, 2, "013800000001").unwrap();
        s.write(1, 3, "std").unwrap();
        s.write(1, 4, 12.5).unwrap();
        s.write(1, 5, 3).unwrap();
        let date = rust_xlsxwriter::ExcelDateTime::from_ymd(1990, 5, 1).unwrap();
        s.write_datetime_with_format(
            1,
            6,
            &date,
            &rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd"),
        )
        .unwrap();
        s.write(2, 0, 1234567.0).unwrap();
        s.write(2, 1, "Num Card").unwrap();
        s.write(2, 2, "13800000002").unwrap();
        s.write(2, 3, "std").unwrap();
        s.write(3, 0, "XLS00003").unwrap();
        s.write(3, 1, "Num Phone").unwrap();
        s.write(3, 2, 13800000003.0).unwrap();
        s.write(3, 3, "std").unwrap();
        wb.save(&path).unwrap();
    }
    let s = import(&l, &path, "S1").await;
    assert_eq!((s.rows, s.imported), (3, 1));
    let r = reasons(&s);
    assert_eq!(r[0].0, 3);
    assert!(r[0].1.starts_with("card is stored as a number"), "{r:?}");
    assert_eq!(r[1].0, 4);
    assert!(r[1].1.starts_with("phone is stored as a number"), "{r:?}");
    let m = l.send_from("O1", &req("member", "XLS00001")).await.unwrap();
    assert_eq!(
        m.0[0].get("phone"),
        Some("013800000001"),
        "leading zero kept"
    );
    assert_eq!(m.0[0].get("birthday"), Some("1990-05-01"));
    assert_eq!(l.card_row("XLS00001").await.balance, d("12.50"));
}

#[tokio::test]
async fn the_command_prints_one_json_object() {
    let l = setup().await;
    let path = file("members.csv", CSV.as_bytes());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .arg("--database-url")
        .arg(&l.url)
        .arg("--keys-dir")
        .arg(&l.config.keys_dir)
        .args([
            "import",
            "members",
            path.to_str().unwrap(),
            "--store",
            "S1",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "rows were rejected");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rows"], 6);
    assert_eq!(v["imported"], 3);
    assert_eq!(v["skipped"], 0);
    assert_eq!(v["rejected"][0]["row"], 4);
    assert!(v.get("dry_run").is_none());
}
