//! Tests of the one parse of an inner form into a typed request.

use chrono::NaiveDate;

use super::money::Money;
use super::plan::{OpKind, Payment};
use super::request::*;
use crate::protocol::attr2::DEFAULT_HISTORY_LIMIT;
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;

fn form(s: &str) -> InnerForm {
    InnerForm::parse(s.as_bytes()).unwrap()
}

fn posting(r: &Request) -> &PostingOp {
    match &r.body {
        Body::Posting(p) => &p.op,
        b => panic!("not a posting: {b:?}"),
    }
}

#[test]
fn find_takes_a_phone_or_a_card_and_a_limit_of_at_most_20() {
    let find = |s: &str| Request::from_form(&form(s)).map(|r| r.body);
    assert_eq!(
        find("op=find&attr1=%2B8613800001234"),
        Ok(Body::Office(OfficeReq::Find {
            key: "+8613800001234".into(),
            limit: 10
        }))
    );
    assert_eq!(
        find("op=find&attr1=CARD1&attr2=limit%3D20"),
        Ok(Body::Office(OfficeReq::Find {
            key: "CARD1".into(),
            limit: 20
        }))
    );
    assert!(InnerForm::parse(b"op=find&attr1=CARD1&attr2=limit%3D21").is_err());
    assert!(InnerForm::parse(b"op=find&attr1=a%20b").is_err());
    assert!(InnerForm::parse(b"op=find&amount=1&attr1=CARD1").is_err());
    assert!(InnerForm::parse(b"op=find&order_no=O1&attr1=CARD1").is_err());
    let r = Request::from_form(&form("op=find&attr1=CARD1")).unwrap();
    assert_eq!(r.op(), OpKind::Find);
    assert!(r.cards_to_lock().is_empty() && r.order_no().is_none() && r.pin().is_none());
}

#[test]
fn statement_settlement_and_liability_parse_once() {
    let body = |s: &str| Request::from_form(&form(s)).map(|r| r.body);
    assert_eq!(
        body("op=statement&attr1=CARD1"),
        Ok(Body::Office(OfficeReq::Statement(StatementReq {
            card: "CARD1".into(),
            from_ms: None,
            to_ms: None,
            after_txn_id: None,
            limit: STATEMENT_LIMIT_DEFAULT,
        })))
    );
    assert_eq!(
        body("op=statement&attr1=CARD1&attr2=from%3D5%26to%3D9%26after%3D42%26limit%3D200"),
        Ok(Body::Office(OfficeReq::Statement(StatementReq {
            card: "CARD1".into(),
            from_ms: Some(5),
            to_ms: Some(9),
            after_txn_id: Some(42),
            limit: 200,
        })))
    );
    assert_eq!(
        body("op=settlement&attr1=2026-11-30&attr2=store%3D*%26by%3Dterminal"),
        Ok(Body::Office(OfficeReq::Settlement(SettlementReq {
            day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            store: Some("*".into()),
            by: SettlementBy::Terminal,
        })))
    );
    assert_eq!(
        body("op=settlement&attr1=2026-11-30"),
        Ok(Body::Office(OfficeReq::Settlement(SettlementReq {
            day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            store: None,
            by: SettlementBy::Op,
        })))
    );
    assert_eq!(
        body("op=liability&attr1=*"),
        Ok(Body::Office(OfficeReq::Liability { store: "*".into() }))
    );
    for bad in [
        "op=statement&attr1=CARD1&attr2=limit%3D201",
        "op=statement&attr1=CARD1&attr2=after%3D-1",
        "op=statement&attr1=CARD1&attr2=pin%3D1234",
        "op=statement&order_no=O1&attr1=CARD1",
        "op=settlement&attr1=2026-02-30",
        "op=settlement&attr1=yesterday",
        "op=settlement&attr1=2026-11-30&attr2=by%3Dcard",
        "op=liability&attr1=S%201",
        "op=liability&amount=1&attr1=*",
    ] {
        assert!(InnerForm::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    let r = Request::from_form(&form("op=liability&attr1=S1")).unwrap();
    assert_eq!(r.op(), OpKind::Liability);
    assert!(r.cards_to_lock().is_empty() && r.order_no().is_none());
}

#[test]
fn typed_requests() {
    let r = Request::from_form(&form(
        "op=debit&amount=12.5&order_no=O1&attr1=CARD1&attr2=pin%3D1234%26tender%3Dcash",
    ))
    .unwrap();
    assert_eq!(r.op(), OpKind::Debit);
    assert_eq!(r.order_no(), Some("O1"));
    assert_eq!(r.operator, Operator::Unnamed);
    let PostingOp::Debit {
        sale, payment, pin, ..
    } = posting(&r)
    else {
        panic!("{r:?}")
    };
    assert_eq!(*sale, Money::from_cents(1250).unwrap());
    assert_eq!(*payment, Payment::Cash);
    assert_eq!(pin.as_ref().map(PinText::expose), Some("1234"));
    assert_eq!(r.cards_to_lock(), vec!["CARD1".to_string()]);

    let r = Request::from_form(&form(
        "op=debit&amount=12.5&order_no=O1&attr1=CARD1&attr2=tender%3Dsplit%26cash%3D2.5",
    ))
    .unwrap();
    let PostingOp::Debit { payment, .. } = posting(&r) else {
        panic!("{r:?}")
    };
    let cash = Money::from_cents(250).unwrap();
    assert_eq!(*payment, Payment::Split { cash });
    for bad in [
        "op=debit&amount=1&order_no=O1&attr1=CARD1&attr2=tender%3Dsplit",
        "op=debit&amount=1&order_no=O1&attr1=CARD1&attr2=cash%3D1",
        "op=topup&amount=1&order_no=O1&attr1=CARD1&attr2=tender%3Dsplit",
    ] {
        assert!(InnerForm::parse(bad.as_bytes()).is_err(), "{bad}");
    }

    let r = Request::from_form(&form(
        "op=transfer&amount=1&order_no=O2&operator=m1&attr1=CARD1&attr2=mpin%3D9999%26to%3DCARD0",
    ))
    .unwrap();
    assert_eq!(r.cards_to_lock(), vec!["CARD1".to_string(), "CARD0".into()]);
    let Operator::Manager { id, mpin } = &r.operator else {
        panic!("{r:?}")
    };
    assert_eq!((id.as_str(), mpin.expose()), ("m1", "9999"));

    let r = Request::from_form(&form(
        "op=refund&amount=1&order_no=O3&operator=m1&attr1=O1&attr2=mpin%3D9999%26terminal%3DT2",
    ))
    .unwrap();
    assert_eq!(r.original("T1"), Some(("T2", "O1")));
    assert!(r.cards_to_lock().is_empty());

    let r = Request::from_form(&form(
        "op=register&order_no=O4&attr1=CARD5&attr2=name%3DLi%26phone%3D13800000000%26level%3Dgold%26birthday%3D2000-02-29",
    ))
    .unwrap();
    assert_eq!(r.card_to_create(), Some("CARD5"));
    let PostingOp::Register { member, level, .. } = posting(&r) else {
        panic!("{r:?}")
    };
    assert_eq!(member.birthday, NaiveDate::from_ymd_opt(2000, 2, 29));
    assert_eq!(level, "gold");

    let r = Request::from_form(&form(
        "op=points&order_no=O5&attr1=CARD5&attr2=delta%3D-20%26reason%3Dfix",
    ))
    .unwrap();
    assert!(matches!(posting(&r), PostingOp::Points { delta: -20, .. }));
    let history = |s: &str| match Request::from_form(&form(s)).unwrap().body {
        Body::Read(ReadReq {
            op: ReadOp::History { limit },
            ..
        }) => limit,
        b => panic!("{b:?}"),
    };
    assert_eq!(history("op=history&attr1=CARD5&attr2=limit%3D7"), 7);
    assert_eq!(history("op=history&attr1=CARD5"), DEFAULT_HISTORY_LIMIT);
    let r = Request::from_form(&form("op=query&attr1=CARD5&attr2=pin%3D987654")).unwrap();
    assert!(!format!("{r:?}").contains("987654"));
    let r = Request::from_form(&form(
        "op=close&order_no=O6&operator=m1&attr1=CARD5&attr2=mpin%3D4321%26pin%3D8765",
    ))
    .unwrap();
    let shown = format!("{r:?}");
    assert!(
        !shown.contains("4321") && !shown.contains("8765"),
        "{shown}"
    );
}

#[test]
fn every_wire_op_parses_to_its_own_kind() {
    for (text, kind) in [
        (
            "op=lost&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
            OpKind::Lost,
        ),
        (
            "op=found&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
            OpKind::Found,
        ),
        (
            "op=lock&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
            OpKind::Lock,
        ),
        (
            "op=unlock&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
            OpKind::Unlock,
        ),
        (
            "op=replace&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234%26new%3DCARD2",
            OpKind::Replace,
        ),
        (
            "op=reverse&order_no=O9&operator=m1&attr1=O1&attr2=mpin%3D1234",
            OpKind::Reverse,
        ),
        ("op=topup&amount=1&order_no=O9&attr1=CARD1", OpKind::Topup),
        (
            "op=redeem&order_no=O9&attr1=CARD1&attr2=cost%3D5%26gift%3Dmug",
            OpKind::Redeem,
        ),
        ("op=member&attr1=CARD1", OpKind::Member),
    ] {
        let r = Request::from_form(&form(text)).unwrap();
        assert_eq!(r.op(), kind, "{text}");
        assert_eq!(r.order_no().is_some(), kind.is_posting(), "{text}");
    }
    let r = Request::from_form(&form(
        "op=replace&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234%26new%3DCARD2",
    ))
    .unwrap();
    assert_eq!(r.card_to_create(), Some("CARD2"));
    assert_eq!(r.cards_to_lock(), vec!["CARD1".to_string()]);
}

#[test]
fn a_hand_built_form_missing_a_value_is_1001() {
    let mut f = form("op=debit&amount=1&order_no=O1&attr1=CARD1");
    f.order_no = None;
    assert_eq!(Request::from_form(&f), Err(Errno::Malformed));
    let mut f = form("op=lock&order_no=O9&operator=m1&attr1=CARD1&attr2=mpin%3D1234");
    f.operator = None;
    assert_eq!(Request::from_form(&f), Err(Errno::Malformed));
    let mut f = form("op=query&attr1=CARD1");
    f.attr1 = None;
    assert_eq!(Request::from_form(&f), Err(Errno::Malformed));
}
