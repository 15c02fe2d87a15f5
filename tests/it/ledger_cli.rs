//! The `operator` and `level` commands, and the answer rows against the XSD.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use cardswitch::protocol::xml::{encode_rows, Row, Rows};
use cardswitch::store::txn;

use crate::harness;
use crate::ledger_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

pub(crate) fn cli(url: &str, keys: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--database-url")
        .arg(url)
        .arg("--keys-dir")
        .arg(keys)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cardswitch");
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test]
async fn operator_and_level_commands() {
    let l = setup().await;
    // The ledger's keys dir: the CLI's hash key and row keys are the env's.
    let keys = l.config.keys_dir.clone();
    let env = l.env.clone();
    let url = &l.url;

    let o = cli(
        url,
        &keys,
        &[
            "level",
            "add",
            "silver",
            "--discount",
            "0.9",
            "--points-rate",
            "1.5",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let o = cli(
        url,
        &keys,
        &[
            "level",
            "add",
            "bad",
            "--discount",
            "1.2",
            "--points-rate",
            "1",
        ],
        None,
    );
    assert!(!o.status.success());
    let o = cli(url, &keys, &["level", "list"], None);
    assert!(out(&o).contains("silver\tdiscount=0.9"), "{}", out(&o));

    let o = cli(
        url,
        &keys,
        &[
            "operator", "add", "m9", "--store", "S1", "--role", "manager",
        ],
        None,
    );
    assert!(!o.status.success(), "a manager needs a PIN");
    let o = cli(
        url,
        &keys,
        &[
            "operator",
            "add",
            "m9",
            "--store",
            "S1",
            "--role",
            "manager",
            "--pin-stdin",
        ],
        Some("2468\n"),
    );
    assert!(o.status.success(), "{o:?}");
    let o = cli(
        url,
        &keys,
        &[
            "operator", "add", "c9", "--store", "S1", "--role", "cashier",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let o = cli(
        url,
        &keys,
        &["operator", "disable", "c9", "--store", "S1"],
        None,
    );
    assert!(o.status.success());
    let o = cli(url, &keys, &["operator", "list", "--store", "S1"], None);
    let listed = out(&o);
    assert!(listed.contains("S1\tc9\tcashier\tdisabled"), "{listed}");
    assert!(
        listed.contains("S1\tm9\tmanager\tactive\tpin=set"),
        "{listed}"
    );
    assert!(!listed.contains("2468"));

    // The PIN the command hashed works in a txn under the sealed hash key.
    l.card("CLIC0001", "silver", None, None).await;
    let send = |r: Req| {
        let env = env.clone();
        let ctx = l.ctx("T1", l.next_ts());
        let pool = l.pool.clone();
        async move {
            cardswitch::keys::run_txn(&pool, &env, &ctx, &r.form())
                .await
                .and_then(txn::Committed::into_rows)
        }
    };
    let r = send(
        req("lock", "CLIC0001")
            .order("K1")
            .by("m9")
            .a2("mpin", "2468"),
    )
    .await;
    assert_eq!(errno_of(&r), 0, "{r:?}");
    let r = send(req("query", "CLIC0001").by("c9")).await;
    assert_eq!(errno_of(&r), 2011, "a disabled cashier");
    let o = cli(
        url,
        &keys,
        &["operator", "enable", "c9", "--store", "S1"],
        None,
    );
    assert!(o.status.success());
    let o = cli(
        url,
        &keys,
        &["operator", "reset-pin", "m9", "--store", "S1"],
        Some("1357\n"),
    );
    assert!(o.status.success(), "{o:?}");
    let r = send(
        req("unlock", "CLIC0001")
            .order("K2")
            .by("m9")
            .a2("mpin", "2468"),
    )
    .await;
    assert_eq!(errno_of(&r), 2011, "the old PIN is gone");
    let r = send(
        req("unlock", "CLIC0001")
            .order("K2")
            .by("m9")
            .a2("mpin", "1357"),
    )
    .await;
    assert_eq!(errno_of(&r), 0, "{r:?}");
}

#[tokio::test]
async fn answer_rows_match_the_xsd() {
    let l = setup_with(|c| {
        c.ledger.points_expiry_months = Some(1);
        c.ledger.bonus_rules = vec![bonus("100", "10")];
    })
    .await;
    let mut rows: Vec<Row> = Vec::new();
    rows.push(
        l.ok(&req("register", "XSDA0001")
            .order("R1")
            .a2("name", "Wang <&> Li")
            .a2("phone", "+8613800001234")
            .a2("level", "gold")
            .a2("pin", "1234"))
            .await,
    );
    l.card("XSDB0001", "std", None, None).await;
    for r in [
        req("topup", "XSDA0001").amount("300").order("T1"),
        req("debit", "XSDA0001")
            .amount("10")
            .order("D1")
            .a2("pin", "1234"),
        req("debit", "XSDA0001")
            .amount("3.33")
            .order("D2")
            .a2("pin", "1234")
            .a2("tender", "cash"),
        req("points", "XSDA0001")
            .order("P1")
            .a2("delta", "-3")
            .a2("reason", "fix"),
        req("redeem", "XSDA0001")
            .order("G1")
            .a2("cost", "2")
            .a2("gift", "pen")
            .a2("pin", "1234"),
        req("transfer", "XSDA0001")
            .amount("5")
            .order("X1")
            .mgr()
            .a2("to", "XSDB0001")
            .a2("pin", "1234"),
        req("refund", "D1").amount("1").order("F1").mgr(),
        req("refund", "D2").amount("1").order("F2").mgr(),
        req("reverse", "X1").order("V1").mgr(),
        req("lost", "XSDB0001").order("S1").mgr(),
        req("found", "XSDB0001").order("S2").mgr(),
        req("lock", "XSDB0001").order("S3").mgr(),
        req("unlock", "XSDB0001").order("S4").mgr(),
        req("query", "XSDA0001").a2("pin", "1234"),
        req("member", "XSDA0001").a2("pin", "1234"),
    ] {
        rows.push(l.ok(&r).await);
    }
    l.age_lots("SELECT lot_id FROM lots", "1 day").await;
    rows.push(
        l.ok(&req("replace", "XSDA0001")
            .order("N1")
            .mgr()
            .a2("new", "XSDC0001"))
            .await,
    );
    rows.push(
        l.ok(&req("close", "XSDC0001").order("C1").mgr().a2("pin", "1234"))
            .await,
    );
    let hist = l
        .send(
            &req("history", "XSDA0001")
                .a2("limit", "50")
                .a2("pin", "1234"),
        )
        .await;
    // The closed card no longer answers; its successor's history does.
    assert_eq!(errno_of(&hist), 2003);
    rows.push(
        l.ok(&req("topup", "XSDB0001").amount("1").order("T9"))
            .await,
    );
    let hist = l
        .send(&req("history", "XSDB0001").a2("limit", "50"))
        .await
        .unwrap();
    assert!(hist.0.len() >= 6);
    rows.extend(hist.0);
    assert!(
        l.count("SELECT count(*) FROM postings WHERE op = 'expire'")
            .await
            >= 1,
        "an expiry was posted"
    );
    let xml = encode_rows(&Rows(rows));
    let dir = harness::temp_dir("cs-xsd-");
    let file = dir.join("rows.xml");
    std::fs::write(&file, &xml).unwrap();
    let xsd = format!("{}/proto-spec/xsd/rows.xsd", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("xmllint")
        .args(["--noout", "--schema", &xsd])
        .arg(&file)
        .output()
        .expect("xmllint");
    assert!(
        o.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&o.stderr)
    );
    l.check_books().await;
}
