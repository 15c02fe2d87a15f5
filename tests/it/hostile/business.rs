//! Family 4: business abuse from tills and offices whose keys are good —
//! spending money that is not there, undoing what cannot be undone, other
//! stores' orders, operators and terminals doing what they may not. Each is
//! refused with its errno, moves no money, and leaves its `order_no` unused.

use cardswitch::protocol::errno::Errno;

use super::world;

#[tokio::test]
async fn business_abuse() {
    let w = world().await;
    let boss = "operator=boss&attr2=mpin%3D8642";
    // What the cases abuse: a debit D1 of 10.00 (refunded 4.00), a top-up
    // R1 reversed already.
    w.ok(&w.t1, "op=debit&amount=10&order_no=D1&attr1=CARD0001")
        .await;
    w.ok(
        &w.t1,
        &format!("op=refund&amount=4&order_no=D1-R&attr1=D1&{boss}"),
    )
    .await;
    w.ok(&w.t1, "op=topup&amount=5&order_no=R1&attr1=CARD0002")
        .await;
    w.ok(&w.t1, &format!("op=reverse&order_no=R1-X&attr1=R1&{boss}"))
        .await;
    w.ok(&w.t1, "op=hold&amount=2&order_no=HD1&attr1=CARD0001")
        .await;
    // Two visits bought (VA1), one of them used (VU1).
    w.ok(
        &w.t1,
        "op=visits_add&amount=0&order_no=VA1&attr1=CARD0001&attr2=service%3Dswim%26count%3D2",
    )
    .await;
    w.ok(
        &w.t1,
        "op=visit&order_no=VU1&attr1=CARD0001&attr2=service%3Dswim",
    )
    .await;
    let (t1, t3, h1) = (&w.t1, &w.t3, &w.h1);
    let cases: Vec<(&str, &cardswitch::client::Session, String, Errno)> = vec![
        ("a debit over the balance", t1, "op=debit&amount=1000&order_no=B1&attr1=CARD0001".into(), Errno::InsufficientBalance),
        ("a debit of a card that does not exist", t1, "op=debit&amount=1&order_no=B2&attr1=NOCARD01".into(), Errno::CardNotFound),
        ("a debit of nothing", t1, "op=debit&amount=0&order_no=B3&attr1=CARD0001".into(), Errno::InvalidAmount),
        ("a split debit's cash leg over the charge", t1, "op=debit&amount=10&order_no=B28&attr1=CARD0001&attr2=tender%3Dsplit%26cash%3D10.01".into(), Errno::InvalidAmount),
        ("a split debit's balance leg over the balance", t1, "op=debit&amount=1000&order_no=B29&attr1=CARD0001&attr2=tender%3Dsplit%26cash%3D1".into(), Errno::InsufficientBalance),
        ("a top-up of nothing", t1, "op=topup&amount=0.00&order_no=B4&attr1=CARD0001".into(), Errno::InvalidAmount),
        ("a debit of a lost card", t1, "op=debit&amount=1&order_no=B5&attr1=CARD0003".into(), Errno::CardLost),
        ("a debit of a locked card", t1, "op=debit&amount=1&order_no=B6&attr1=CARD0004".into(), Errno::CardLocked),
        ("a top-up of a lost card", t1, "op=topup&amount=1&order_no=B7&attr1=CARD0003".into(), Errno::CardLost),
        ("a debit without the card's PIN", t1, "op=debit&amount=1&order_no=B8&attr1=PINC0001".into(), Errno::WrongPin),
        ("a refund over what is left of the charge", t1, format!("op=refund&amount=6.01&order_no=B9&attr1=D1&{boss}"), Errno::AlreadyReversed),
        ("a refund of an order that never was", t1, format!("op=refund&amount=1&order_no=B10&attr1=NOSUCH1&{boss}"), Errno::OriginalNotFound),
        ("a refund naming another store's order", t1, "op=refund&amount=1&order_no=B11&attr1=S2-D1&operator=boss&attr2=mpin%3D8642%26terminal%3DT3".into(), Errno::OriginalNotFound),
        ("a reverse of a reversed top-up", t1, format!("op=reverse&order_no=B12&attr1=R1&{boss}"), Errno::AlreadyReversed),
        ("a reverse of a refund's original that was refunded", t1, format!("op=reverse&order_no=B13&attr1=D1&{boss}"), Errno::AlreadyReversed),
        ("a reverse of another store's order", t1, "op=reverse&order_no=B14&attr1=S2-D1&operator=boss&attr2=mpin%3D8642%26terminal%3DT3".into(), Errno::OriginalNotFound),
        ("an order_no sent again with another amount", t1, "op=debit&amount=11&order_no=D1&attr1=CARD0001".into(), Errno::OrderReused),
        ("an order_no sent again for another card", t1, "op=debit&amount=10&order_no=D1&attr1=CARD0002".into(), Errno::OrderReused),
        ("a transfer to the card itself", t1, "op=transfer&amount=1&order_no=B15&attr1=CARD0001&operator=boss&attr2=mpin%3D8642%26to%3DCARD0001".into(), Errno::Malformed),
        ("a transfer over the balance", t1, "op=transfer&amount=500&order_no=B16&attr1=CARD0001&operator=boss&attr2=mpin%3D8642%26to%3DCARD0002".into(), Errno::InsufficientBalance),
        ("a redemption of more points than the card holds", t1, "op=redeem&order_no=B17&attr1=PINC0001&attr2=pin%3D1234%26cost%3D31%26gift%3Dmug".into(), Errno::InsufficientPoints),
        ("points taken below zero", t1, "op=points&order_no=B18&attr1=CARD0002&attr2=delta%3D-1%26reason%3Dx".into(), Errno::InsufficientPoints),
        ("a register of a card in use", t1, "op=register&order_no=B19&attr1=CARD0001&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd".into(), Errno::CardInUse),
        ("a register at a level that does not exist", t1, "op=register&order_no=B20&attr1=NEWC0009&attr2=name%3DLi%26phone%3D13800000000%26level%3Dplatinum".into(), Errno::Malformed),
        ("a replace onto a card in use", t1, "op=replace&order_no=B21&attr1=CARD0002&operator=boss&attr2=mpin%3D8642%26new%3DCARD0001".into(), Errno::CardInUse),
        ("a manager op by a cashier", t1, "op=lock&order_no=B22&attr1=CARD0001&operator=cash1&attr2=mpin%3D8642".into(), Errno::OperatorRefused),
        ("a manager op by an operator that does not exist", t1, "op=lock&order_no=B23&attr1=CARD0001&operator=ghost&attr2=mpin%3D8642".into(), Errno::OperatorRefused),
        ("a manager op by another store's manager", t3, "op=lock&order_no=B24&attr1=S2CARD01&operator=boss&attr2=mpin%3D8642".into(), Errno::OperatorRefused),
        ("an office op from a till", t1, "op=liability&attr1=S1".into(), Errno::NotForThisTerminal),
        ("a posting from an office terminal", h1, "op=debit&amount=1&order_no=B25&attr1=CARD0001".into(), Errno::NotForThisTerminal),
        ("a store's office asking about another store", h1, "op=liability&attr1=S2".into(), Errno::NotForThisTerminal),
        ("a store's office asking about every store", h1, "op=liability&attr1=*".into(), Errno::NotForThisTerminal),
        ("a capture of an order that is no hold", t1, "op=capture&amount=1&order_no=B30&attr1=D1".into(), Errno::OriginalNotFound),
        ("a void of a hold that never was", t1, "op=void&order_no=B31&attr1=NOHOLD1".into(), Errno::OriginalNotFound),
        ("a capture over the hold's sale", t1, "op=capture&amount=2.01&order_no=B32&attr1=HD1".into(), Errno::InvalidAmount),
        ("a hold over what the card has available", t1, "op=hold&amount=1000&order_no=B33&attr1=CARD0001".into(), Errno::InsufficientBalance),
        ("a close of a card with an active hold", t1, format!("op=close&order_no=B34&attr1=CARD0001&{boss}"), Errno::HasHolds),
        ("a reverse of a hold", t1, format!("op=reverse&order_no=B35&attr1=HD1&{boss}"), Errno::OriginalNotFound),
        ("a visit of a service the card has none of", t1, "op=visit&order_no=B36&attr1=CARD0001&attr2=service%3Dgym".into(), Errno::NotEnoughVisits),
        ("more visits than the card has left", t1, "op=visit&order_no=B37&attr1=CARD0001&attr2=service%3Dswim%26count%3D2".into(), Errno::NotEnoughVisits),
        ("visits bought over what the card has available", t1, "op=visits_add&amount=1000&order_no=B38&attr1=CARD0001&attr2=service%3Dswim%26count%3D1".into(), Errno::InsufficientBalance),
        ("a reverse of visits bought and partly used", t1, format!("op=reverse&order_no=B39&attr1=VA1&{boss}"), Errno::AlreadyReversed),
        ("a refund of visits bought", t1, format!("op=refund&amount=1&order_no=B40&attr1=VA1&{boss}"), Errno::OriginalNotFound),
        ("a visit of a lost card", t1, "op=visit&order_no=B41&attr1=CARD0003&attr2=service%3Dswim".into(), Errno::CardLost),
        ("a query of a card that does not exist", t1, "op=query&attr1=NOCARD02".into(), Errno::CardNotFound),
        ("a query of a PIN card without its PIN", t1, "op=query&attr1=PINC0001".into(), Errno::WrongPin),
    ];
    assert!(cases.len() >= 30);
    let mut used = Vec::new();
    for (name, s, inner, want) in &cases {
        w.refused(name, s, inner, *want).await;
        used.extend(
            inner
                .split('&')
                .filter_map(|p| p.strip_prefix("order_no="))
                .filter(|o| *o != "D1"),
        );
    }
    // A wrong PIN or mpin is counted (so five lock the card or manager),
    // but moves nothing.
    w.refused_counting(
        "a debit with a wrong PIN",
        t1,
        "op=debit&amount=1&order_no=B26&attr1=PINC0001&attr2=pin%3D9999",
        Errno::WrongPin,
    )
    .await;
    w.refused_counting(
        "a manager op with a wrong mpin",
        t1,
        "op=lock&order_no=B27&attr1=CARD0001&operator=boss&attr2=mpin%3D0000",
        Errno::OperatorRefused,
    )
    .await;
    used.extend(["B26", "B27"]);
    w.assert_unused(&used).await;
    // Each refused order_no may still be used: a refusal used none.
    w.ok(t1, "op=debit&amount=1&order_no=B1&attr1=CARD0001")
        .await;
    w.assert_sound().await;
    w.d.stop().await.unwrap();
}
