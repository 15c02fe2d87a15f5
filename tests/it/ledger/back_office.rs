//! `statement`, `settlement` and `liability` (protocol.md §6.1): pages that
//! neither repeat nor skip while the card keeps posting, a settlement that
//! is the sum of the day's postings, an exact liability, and the scope of
//! a store's and a head office's terminals.

use std::collections::BTreeMap;

use cardswitch::protocol::xml::{Row, Rows};
use rust_decimal::Decimal;

use crate::ledger_support::*;

fn statement(card: &str) -> Req {
    req("statement", card)
}

/// Every page of a card's statement, `limit` rows at a time.
async fn all_pages(l: &Ledger, card: &str, limit: u32) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for _ in 0..100 {
        let mut r = statement(card).a2("limit", &limit.to_string());
        if let Some(last) = out.last() {
            r = r.a2("after", last.get("txn_id").unwrap());
        }
        let page = l.send_from("O1", &r).await.unwrap().0;
        let n = page.len();
        out.extend(page);
        if n < limit as usize {
            return out;
        }
    }
    panic!("statement of {card} never ended");
}

pub(crate) async fn day(l: &Ledger) -> String {
    let c = l.client().await;
    let r = c
        .query_one("SELECT max(business_day)::text FROM postings", &[])
        .await
        .unwrap();
    r.get(0)
}

pub(crate) fn valid(rows: &Rows) {
    crate::harness::assert_valid(
        "rows.xsd",
        cardswitch::protocol::xml::encode_rows(rows).as_bytes(),
    );
}

#[tokio::test]
async fn statement_pages_neither_repeat_nor_skip_while_the_card_posts() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    for i in 0..5 {
        l.ok(&req("debit", "CARD0001").amount("3").order(&format!("D{i}")))
            .await;
    }
    // Page 1, then postings land, then the rest: each posting once, in
    // order, the new ones included.
    let first = l
        .send_from("O1", &statement("CARD0001").a2("limit", "3"))
        .await
        .unwrap();
    valid(&first);
    assert_eq!(first.0.len(), 3);
    assert_eq!(first.0[0].get("op"), Some("register"));
    assert_eq!(first.0[1].get("balance_delta"), Some("100.00"));
    assert_eq!(first.0[2].get("balance_delta"), Some("-3.00"));
    for i in 5..8 {
        l.ok(&req("debit", "CARD0001").amount("3").order(&format!("D{i}")))
            .await;
    }
    let all = all_pages(&l, "CARD0001", 3).await;
    assert_eq!(&all[..3], &first.0[..]);
    let orders: Vec<_> = all.iter().filter_map(|r| r.get("order_no")).collect();
    let mut want = vec!["reg-CARD0001".to_owned()];
    want.extend(all[1].get("order_no").map(str::to_owned));
    want.extend((0..8).map(|i| format!("D{i}")));
    assert_eq!(orders, want);
    // The running balance is the running sum of the deltas.
    let mut sum = Decimal::ZERO;
    for r in &all {
        sum += d(r.get("balance_delta").unwrap());
        assert_eq!(d(r.get("balance").unwrap()), sum);
    }
    assert_eq!(sum, l.card_row("CARD0001").await.balance);
    l.refused_from("O1", &statement("CARD0404"), 2001).await;
    l.refused_from("O1", &statement("CARD0001").a2("after", "999999"), 1001)
        .await;
    assert_eq!(statement("CARD0001").a2("limit", "201").parse_errno(), 1001);
    l.refused_from("T1", &statement("CARD0001"), 2013).await;
}

#[tokio::test]
async fn a_statement_page_never_ends_inside_a_txn() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    l.ok(&req("debit", "CARD0001").amount("10").order("D1"))
        .await;
    // The earned points lapse: the next debit posts their expiry and itself
    // in one txn.
    l.age_lots("SELECT lot_id FROM lots", "1 day").await;
    l.ok(&req("debit", "CARD0001").amount("10").order("D2"))
        .await;
    let all = all_pages(&l, "CARD0001", 50).await;
    let ops: Vec<_> = all.iter().map(|r| r.get("op").unwrap()).collect();
    assert_eq!(ops, ["register", "topup", "debit", "expire", "debit"]);
    assert_eq!(all[3].get("txn_id"), all[4].get("txn_id"));
    // A page of 4 would cut the last txn: it holds its whole txn instead.
    let page = l
        .send_from("O1", &statement("CARD0001").a2("limit", "4"))
        .await
        .unwrap();
    assert_eq!(page.0, all);
    assert_eq!(all_pages(&l, "CARD0001", 1).await, all);
    // Time bounds: nothing before `from`, nothing at or after `to`.
    let at = all[2].get("posted_at").unwrap();
    let from = l
        .send_from("O1", &statement("CARD0001").a2("from", at))
        .await
        .unwrap();
    assert!(from.0.iter().all(|r| r.get("posted_at").unwrap() >= at));
    let to = l
        .send_from("O1", &statement("CARD0001").a2("to", at))
        .await
        .unwrap();
    assert!(to.0.iter().all(|r| r.get("posted_at").unwrap() < at));
    assert_eq!(from.0.len() + to.0.len(), all.len());
}

#[tokio::test]
async fn a_tampered_posting_fails_the_statement() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    l.client()
        .await
        .batch_execute("UPDATE postings SET amount = 1000 WHERE op = 'topup'")
        .await
        .unwrap();
    l.refused_from("O1", &statement("CARD0001"), 3001).await;
}

/// Some of everything at three terminals of two stores, paid both ways.
pub(crate) async fn a_days_trade(l: &Ledger) {
    l.card("CARD0001", "gold", Some("100"), None).await;
    l.card("CARD0002", "std", Some("50"), None).await;
    l.ok(&req("debit", "CARD0001").amount("20").order("D1"))
        .await;
    l.ok(&req("debit", "CARD0001")
        .amount("8")
        .order("D2")
        .a2("tender", "cash"))
        .await;
    l.send_from("T2", &req("debit", "CARD0002").amount("5").order("D3"))
        .await
        .unwrap();
    l.ok(&req("refund", "D2").amount("4").order("F1").mgr())
        .await;
    l.ok(&req("transfer", "CARD0001")
        .amount("10")
        .order("X1")
        .mgr()
        .a2("to", "CARD0002"))
        .await;
    let s2 = req("register", "CARD0003")
        .order("R3")
        .a2("name", "Zhao")
        .a2("phone", "13700000000")
        .a2("level", "std");
    l.send_from("T3", &s2).await.unwrap();
    l.send_from("T3", &req("topup", "CARD0003").amount("30").order("P3"))
        .await
        .unwrap();
}

fn totals(rows: &Rows) -> BTreeMap<String, Row> {
    rows.0
        .iter()
        .filter(|r| r.get("op") == Some("total"))
        .map(|r| (r.get("store").unwrap().to_owned(), r.clone()))
        .collect()
}

#[tokio::test]
async fn settlement_is_the_sum_of_the_days_postings() {
    let l = setup().await;
    a_days_trade(&l).await;
    let day = day(&l).await;
    let s1 = l.send_from("O1", &req("settlement", &day)).await.unwrap();
    valid(&s1);
    let t = &totals(&s1)["S1"];
    assert!(s1.0.iter().all(|r| r.get("store") == Some("S1")));
    // The same sums straight from the postings of S1's terminals.
    let c = l.client().await;
    let want = c
        .query_one(
            "SELECT count(*), sum(amount)::text, sum(charged)::text, sum(balance_delta)::text,
                    sum(points_delta)::text
               FROM postings WHERE terminal_id IN ('T1', 'T2')",
            &[],
        )
        .await
        .unwrap();
    let got = |n: &str| t.get(n).unwrap().to_owned();
    assert_eq!(got("count"), want.get::<_, i64>(0).to_string());
    assert_eq!(got("amount"), want.get::<_, String>(1));
    assert_eq!(got("charged"), want.get::<_, String>(2));
    assert_eq!(got("balance_delta"), want.get::<_, String>(3));
    assert_eq!(got("points_delta"), want.get::<_, String>(4));
    // Cash in for D2 (8 less the gold discount), out for its refund.
    let cash_sale =
        s1.0.iter()
            .find(|r| r.get("op") == Some("debit") && r.get("tender") == Some("cash"))
            .unwrap();
    assert_eq!(cash_sale.get("cash"), Some("7.60"));
    assert_eq!(got("cash"), "3.60");
    // It is the sum of the statement rows of those postings too.
    let mut from_statements = Decimal::ZERO;
    for card in ["CARD0001", "CARD0002"] {
        for r in all_pages(&l, card, 50).await {
            from_statements += d(r.get("balance_delta").unwrap());
        }
    }
    assert_eq!(d(&got("balance_delta")), from_statements);
    // By terminal: T1's and T2's rows, the same total.
    let by = l
        .send_from("O1", &req("settlement", &day).a2("by", "terminal"))
        .await
        .unwrap();
    let terminals: std::collections::BTreeSet<_> =
        by.0.iter().filter_map(|r| r.get("terminal")).collect();
    assert_eq!(terminals.into_iter().collect::<Vec<_>>(), ["T1", "T2"]);
    assert_eq!(totals(&by)["S1"], *t);
    // A day with nothing posted has no rows.
    let empty = l
        .send_from("O1", &req("settlement", "2001-01-01"))
        .await
        .unwrap();
    assert!(empty.0.is_empty());
}

#[tokio::test]
async fn a_store_settles_itself_and_a_head_office_every_store() {
    let l = setup().await;
    a_days_trade(&l).await;
    let day = day(&l).await;
    let settle = |store: &str| req("settlement", &day).a2("store", store);
    l.refused_from("O1", &settle("S2"), 2013).await;
    l.refused_from("O1", &settle("S9"), 2013).await;
    l.refused_from("O1", &settle("*"), 2013).await;
    l.refused_from("T1", &req("settlement", &day), 2013).await;
    let own = l.send_from("O1", &settle("S1")).await.unwrap();
    let all = l.send_from("H1", &req("settlement", &day)).await.unwrap();
    let all_totals = totals(&all);
    assert_eq!(all_totals.keys().collect::<Vec<_>>(), ["S1", "S2"]);
    assert_eq!(all_totals["S1"], totals(&own)["S1"]);
    assert_eq!(all_totals["S2"].get("amount"), Some("30.00"));
    let s2 = l.send_from("H1", &settle("S2")).await.unwrap();
    assert_eq!(totals(&s2)["S2"], all_totals["S2"]);
    // A head office posts no more than a store's office terminal does.
    l.refused_from("H1", &req("topup", "CARD0001").amount("1").order("H"), 2013)
        .await;
}

#[tokio::test]
async fn liability_is_exact_and_scoped() {
    let l = setup().await;
    a_days_trade(&l).await;
    l.ok(&req("register", "CARD0004")
        .order("R4")
        .a2("name", "Qian")
        .a2("phone", "13600000000")
        .a2("level", "std"))
        .await;
    l.ok(&req("close", "CARD0004").order("C4").mgr()).await;
    let liability = |store: &str| req("liability", store);
    let all = l.send_from("H1", &liability("*")).await.unwrap();
    valid(&all);
    let row = &all.0[0];
    let c = l.client().await;
    let want = c
        .query_one(
            "SELECT sum(balance)::text, sum(points)::text FROM cards",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get("cards"),
        Some("3"),
        "the closed card is not counted"
    );
    assert_eq!(row.get("balance"), Some(want.get::<_, String>(0).as_str()));
    assert_eq!(row.get("points"), Some(want.get::<_, String>(1).as_str()));
    assert_eq!(row.get("held"), Some("0.00"));
    let s2 = l.send_from("H1", &liability("S2")).await.unwrap();
    assert_eq!(s2.0[0].get("cards"), Some("1"));
    assert_eq!(s2.0[0].get("balance"), Some("30.00"));
    let s1 = l.send_from("O1", &liability("S1")).await.unwrap();
    assert_eq!(s1.0[0].get("cards"), Some("2"));
    let sum = d(s1.0[0].get("balance").unwrap()) + d(s2.0[0].get("balance").unwrap());
    assert_eq!(sum, d(row.get("balance").unwrap()));
    l.refused_from("O1", &liability("S2"), 2013).await;
    l.refused_from("O1", &liability("*"), 2013).await;
    l.refused_from("T1", &liability("S1"), 2013).await;
    let audited = l
        .count("SELECT count(*) FROM audit WHERE kind = 'office.read' AND terminal_id = 'H1'")
        .await;
    assert_eq!(audited, 2);
}
