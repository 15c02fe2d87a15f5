//! Split tender (protocol.md §6.2): a debit paid part in cash and the rest
//! from the balance; its replay, its refund (to the balance first) and its
//! reverse; the statement, settlement and event of each.

use cardswitch::protocol::xml::Row;

use crate::ledger::back_office::valid;
use crate::ledger_support::*;

fn split(card: &str, amount: &str, order: &str, cash: &str) -> Req {
    req("debit", card)
        .amount(amount)
        .order(order)
        .a2("tender", "split")
        .a2("cash", cash)
}

#[tokio::test]
async fn a_split_debit_takes_its_cash_leg_at_the_counter_and_the_rest_from_the_balance() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    let rows = l.send(&split("GOLD0001", "50", "S1", "20")).await.unwrap();
    valid(&rows);
    let r = &rows.0[0];
    assert_eq!(r.get("charged"), Some("47.50"));
    assert_eq!(r.get("cash"), Some("20.00"));
    assert_eq!(r.get("from_balance"), Some("27.50"));
    assert_eq!(r.get("balance"), Some("72.50"));
    // Points on the whole charge (the gold level earns 2 a unit).
    assert_eq!(r.get("points_delta"), Some("95"));
    // A resend answers the same legs.
    let again = l.ok(&split("GOLD0001", "50", "S1", "20")).await;
    assert_eq!(again.get("replayed"), Some("1"));
    assert_eq!(again.get("cash"), Some("20.00"));
    assert_eq!(again.get("from_balance"), Some("27.50"));
    // The same order number with another cash leg is another request.
    l.refused(&split("GOLD0001", "50", "S1", "10"), 2006).await;

    // Refused, changing nothing: a cash leg above the charge, a balance
    // leg above the balance.
    l.refused(&split("GOLD0001", "50", "S2", "47.51"), 2010)
        .await;
    l.refused(&split("GOLD0001", "100", "S3", "10"), 2004).await;
    assert_eq!(l.card_row("GOLD0001").await.balance, d("72.50"));
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE op = 'debit'")
            .await,
        1
    );
    // `cash` only with `tender=split`, and a split only for a debit.
    let no_cash = req("debit", "GOLD0001")
        .amount("1")
        .order("S4")
        .a2("tender", "split");
    assert_eq!(no_cash.parse_errno(), 1001);
    let stray = req("debit", "GOLD0001")
        .amount("1")
        .order("S5")
        .a2("cash", "1");
    assert_eq!(stray.parse_errno(), 1001);
    let topup = req("topup", "GOLD0001")
        .amount("1")
        .order("S6")
        .a2("tender", "split");
    assert_eq!(topup.parse_errno(), 1001);

    // The whole charge in cash, and none of it.
    let all = l.ok(&split("GOLD0001", "10", "S7", "9.50")).await;
    assert_eq!(
        (all.get("from_balance"), all.get("balance")),
        (Some("0.00"), Some("72.50"))
    );
    let none = l.ok(&split("GOLD0001", "10", "S8", "0")).await;
    assert_eq!(
        (none.get("from_balance"), none.get("balance")),
        (Some("9.50"), Some("63.00"))
    );
    l.check_books().await;
}

#[tokio::test]
async fn a_split_debit_is_refunded_to_the_balance_first_and_reversed_leg_by_leg() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    // 47.50 charged: 20 in cash, 27.50 from the balance.
    l.ok(&split("GOLD0001", "50", "S1", "20")).await;
    let f = l
        .ok(&req("refund", "S1").amount("25").order("F1").mgr())
        .await;
    assert_eq!(
        (f.get("balance"), f.get("cash_refund")),
        (Some("97.50"), Some("0.00"))
    );
    let f = l
        .ok(&req("refund", "S1").amount("10").order("F2").mgr())
        .await;
    assert_eq!(
        (f.get("balance"), f.get("cash_refund")),
        (Some("100.00"), Some("7.50"))
    );
    let f = l
        .ok(&req("refund", "S1").amount("12.50").order("F3").mgr())
        .await;
    assert_eq!(
        (f.get("balance"), f.get("cash_refund")),
        (Some("100.00"), Some("12.50"))
    );
    l.refused(&req("refund", "S1").amount("0.01").order("F4").mgr(), 2008)
        .await;

    // A reverse gives the balance leg back to the balance, the cash leg in cash.
    l.ok(&split("GOLD0001", "20", "S2", "5")).await;
    let v = l.ok(&req("reverse", "S2").order("V1").mgr()).await;
    // 19 charged: 5 in cash, 14 from the balance.
    assert_eq!(
        (v.get("balance"), v.get("cash_refund")),
        (Some("100.00"), Some("5.00"))
    );
    l.check_books().await;

    // The statement and the settlement count the cash that crossed the counter.
    let st = l
        .send_from("O1", &req("statement", "GOLD0001"))
        .await
        .unwrap();
    valid(&st);
    let by_order = |o: &str| -> Row {
        st.0.iter()
            .find(|r| r.get("order_no") == Some(o))
            .unwrap()
            .clone()
    };
    let s1 = by_order("S1");
    assert_eq!(
        (s1.get("tender"), s1.get("cash")),
        (Some("split"), Some("20.00"))
    );
    assert_eq!(s1.get("balance_delta"), Some("-27.50"));
    assert_eq!(by_order("F2").get("cash"), Some("-7.50"));
    assert_eq!(by_order("V1").get("tender"), Some("split"));
    let day = crate::ledger::back_office::day(&l).await;
    let set = l.send_from("O1", &req("settlement", &day)).await.unwrap();
    valid(&set);
    let row = |op: &str| -> Row {
        let found = set
            .0
            .iter()
            .find(|r| r.get("op") == Some(op) && r.get("tender") == Some("split"));
        found
            .unwrap_or_else(|| panic!("no split {op} row in {set:?}"))
            .clone()
    };
    assert_eq!(row("debit").get("cash"), Some("25.00"));
    assert_eq!(row("refund").get("cash"), Some("-20.00"));
    assert_eq!(row("reverse").get("cash"), Some("-5.00"));

    // The event of a split debit names its legs.
    let c = l.client().await;
    let body: serde_json::Value = c
        .query_one(
            "SELECT body FROM events WHERE op = 'debit' AND body->>'order_no' = 'S1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body["cash"], "20.00");
    assert_eq!(body["from_balance"], "27.50");
}
