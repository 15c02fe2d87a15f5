//! The encoder's output against proto-spec/xsd/ with `xmllint`, so the XSDs
//! an integrator validates against and the bytes the daemon sends agree.
//! CI installs libxml2-utils; a missing xmllint fails rather than skips, so a
//! green run always means the check ran.

use std::io::Write;
use std::process::{Command, Stdio};

use super::answer::{HelloAnswer, LoginAnswer, POSTING_FIELDS};
use super::errno::Errno;
use super::xml::{encode_answer, encode_rows, AnswerBody, Row, Rows};

const NOW: u64 = 1_795_000_000_000;

fn validates(xsd: &str, doc: &str) -> bool {
    let path = format!("{}/../../proto-spec/xsd/{xsd}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema", &path, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint not found: install libxml2-utils");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{xsd}: {}\n{doc}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn b64(n: usize) -> String {
    super::grammar::base64_encode(&vec![0x5a; n])
}

fn hello_row() -> Row {
    Row::new()
        .with("key_id", "T1.20261122.1")
        .with("public_key", b64(294))
        .with("not_before", "1795000000000")
        .with("not_after", "1795090000000")
        .with("day_sig", b64(384))
        .with("signer_id", "signer.2026q4")
        .with("signer_public_key", b64(422))
        .with("signer_not_after", "1802000000000")
        .with("signer_sig", b64(384))
        .with("root", "0123456789abcdef")
}

fn login_row() -> Row {
    Row::new()
        .with("sid", "s.AbC-123_x")
        .with("not_after", "1795090000000")
        .with("server_random", b64(32))
        .with("iv", b64(12))
        .with("wrapped", b64(48))
        .with("sig", b64(256))
}

fn posting_row() -> Row {
    Row::new()
        .with("order_no", "O-1")
        .with("op", "debit")
        .with("txn_id", "900001")
        .with("card", "C0001234")
        .with("amount", "100.00")
        .with("discount", "5.00")
        .with("charged", "95.00")
        .with("points_delta", "95")
        .with("balance", "0.00")
        .with("points", "1095")
        .with("replayed", "0")
        .with("posted_at", "1795000000123")
        .with("note", "Tom & \"Jerry\" <'x'>\n")
}

#[test]
fn encoder_output_matches_the_xsds() {
    let one = |r: Row| AnswerBody::Rows(Rows(vec![r]));
    let data = AnswerBody::Data {
        iv: vec![1; 12],
        data: vec![2; 70],
    };
    let none = AnswerBody::None;
    let ok = |body: &AnswerBody| encode_answer(Errno::Ok, NOW, body);
    let err = |e: Errno| encode_answer(e, NOW, &AnswerBody::None);

    // The rows below are the ones the typed answers read.
    assert!(HelloAnswer::from_row(&hello_row()).is_ok());
    assert!(LoginAnswer::from_row(&login_row()).is_ok());
    let posting = posting_row();
    assert!(POSTING_FIELDS.iter().all(|f| posting.get(f).is_some()));

    assert!(validates("hello.xsd", &ok(&one(hello_row()))));
    assert!(validates("hello.xsd", &err(Errno::UnknownTerminal)));
    assert!(validates("login.xsd", &ok(&one(login_row()))));
    assert!(validates("login.xsd", &err(Errno::LoginRefused)));
    assert!(validates("txn-answer.xsd", &ok(&data)));
    assert!(validates(
        "txn-answer.xsd",
        &err(Errno::InsufficientBalance)
    ));
    assert!(validates(
        "rows.xsd",
        &encode_rows(&Rows(vec![posting_row(), posting_row()]))
    ));
    assert!(validates("rows.xsd", &encode_rows(&Rows::default())));
    for e in Errno::ALL.into_iter().filter(|&e| e != Errno::Ok) {
        assert!(validates("error.xsd", &err(e)), "{e:?}");
    }

    // The check itself must be able to fail.
    assert!(!validates("error.xsd", &ok(&none)));
    assert!(!validates("hello.xsd", &ok(&one(login_row()))));
    assert!(!validates("txn-answer.xsd", &ok(&one(login_row()))));
    assert!(!validates(
        "rows.xsd",
        &encode_rows(&Rows(vec![Row::new().with("amount", "1.5")]))
    ));
}
