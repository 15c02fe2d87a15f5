//! Family 3: the decrypted inner form, from a till whose MAC is right —
//! every field out of its grammar, or where its op takes none, is 1001
//! naming that field, with nothing changed (the `ts` is spent, no more).

use cardswitch::protocol::errno::Errno;

use super::world;

#[tokio::test]
async fn inner_forms() {
    let w = world().await;
    let q = "op=query&attr1=CARD0001";
    let d = "op=debit&order_no=IN-1&attr1=CARD0001";
    let long_name = format!(
        "name%3D{}%26phone%3D13800000000%26level%3Dstd",
        "x".repeat(65)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("an empty inner form", String::new(), "op"),
        ("an unknown op", "op=sale&attr1=CARD0001".into(), "op"),
        ("an op in upper case", "op=QUERY&attr1=CARD0001".into(), "op"),
        ("an op of the import, which no terminal may send", "op=import&order_no=IN-0&attr1=CARD0001".into(), "op"),
        ("no attr1", "op=query".into(), "attr1"),
        ("an unknown field", format!("{q}&pin=1234"), "pin"),
        ("a repeated field", format!("{q}&attr1=CARD0002"), "attr1"),
        ("an amount with a third decimal", format!("{d}&amount=1.005"), "amount"),
        ("a negative amount", format!("{d}&amount=-1"), "amount"),
        ("an amount in exponent form", format!("{d}&amount=1e3"), "amount"),
        ("an amount with a plus sign", format!("{d}&amount=%2B5"), "amount"),
        ("an amount of 13 integer digits", format!("{d}&amount=1000000000000"), "amount"),
        ("an amount with a leading zero", format!("{d}&amount=05"), "amount"),
        ("an amount on a query", format!("{q}&amount=1"), "amount"),
        ("a debit without an amount", d.into(), "amount"),
        ("an order_no on a query", format!("{q}&order_no=IN-2"), "order_no"),
        ("a debit without an order_no", "op=debit&amount=1&attr1=CARD0001".into(), "order_no"),
        ("an order_no with a space", "op=debit&amount=1&order_no=IN+3&attr1=CARD0001".into(), "order_no"),
        ("an SQL injection for a card", "op=query&attr1=CARD0001%27%3B+DROP+TABLE+cards%3B--".into(), "attr1"),
        ("a NUL in a card number", "op=query&attr1=CARD%000001".into(), "attr1"),
        ("attr2 that is not a form", format!("{q}&attr2=pin"), "attr2"),
        ("a name attr2 does not take", format!("{q}&attr2=tender%3Dcash"), "attr2.tender"),
        ("a PIN of three digits", format!("{q}&attr2=pin%3D123"), "attr2.pin"),
        ("a PIN with a letter", format!("{q}&attr2=pin%3D12a4"), "attr2.pin"),
        ("a history limit of 0", "op=history&attr1=CARD0001&attr2=limit%3D0".into(), "attr2.limit"),
        ("a history limit of 51", "op=history&attr1=CARD0001&attr2=limit%3D51".into(), "attr2.limit"),
        ("a tender in upper case", "op=debit&amount=1&order_no=IN-4&attr1=CARD0001&attr2=tender%3DCash".into(), "attr2.tender"),
        ("a register without a level", "op=register&order_no=IN-5&attr1=NEWC0001&attr2=name%3DLi%26phone%3D13800000000".into(), "attr2.level"),
        ("a name of 65 characters", format!("op=register&order_no=IN-6&attr1=NEWC0002&attr2={long_name}"), "attr2.name"),
        ("a name with a control character", "op=register&order_no=IN-7&attr1=NEWC0003&attr2=name%3DLi%250A%26phone%3D13800000000%26level%3Dstd".into(), "attr2.name"),
        ("a phone with letters", "op=register&order_no=IN-8&attr1=NEWC0004&attr2=name%3DLi%26phone%3D1380000ABCD%26level%3Dstd".into(), "attr2.phone"),
        ("a birthday of 30 February", "op=register&order_no=IN-9&attr1=NEWC0005&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd%26birthday%3D2001-02-30".into(), "attr2.birthday"),
        ("a points delta of 13 digits", "op=points&order_no=IN-10&attr1=CARD0001&attr2=delta%3D1000000000000".into(), "attr2.delta"),
        ("a manager op without an operator", "op=lock&order_no=IN-11&attr1=CARD0001&attr2=mpin%3D8642".into(), "operator"),
        ("a manager op without its mpin", "op=lock&order_no=IN-12&operator=boss&attr1=CARD0001".into(), "attr2.mpin"),
        ("a settlement day that does not exist", "op=settlement&attr1=2026-13-01".into(), "attr1"),
        ("a split debit without its cash leg", "op=debit&amount=1&order_no=IN-13&attr1=CARD0001&attr2=tender%3Dsplit".into(), "attr2.cash"),
        ("a cash leg on a balance debit", "op=debit&amount=1&order_no=IN-14&attr1=CARD0001&attr2=cash%3D1".into(), "attr2.cash"),
        ("a negative cash leg", "op=debit&amount=1&order_no=IN-15&attr1=CARD0001&attr2=tender%3Dsplit%26cash%3D-1".into(), "attr2.cash"),
        ("a split top-up", "op=topup&amount=1&order_no=IN-16&attr1=CARD0001&attr2=tender%3Dsplit".into(), "attr2.tender"),
        ("a hold's life under a minute", "op=hold&amount=1&order_no=IN-17&attr1=CARD0001&attr2=expires%3D59".into(), "attr2.expires"),
        ("a hold's life past thirty days", "op=hold&amount=1&order_no=IN-18&attr1=CARD0001&attr2=expires%3D2592001".into(), "attr2.expires"),
        ("a capture without an amount", "op=capture&order_no=IN-19&attr1=H1".into(), "amount"),
        ("a void with an amount", "op=void&amount=1&order_no=IN-20&attr1=H1".into(), "amount"),
        ("visits bought without a service", "op=visits_add&amount=1&order_no=IN-21&attr1=CARD0001&attr2=count%3D1".into(), "attr2.service"),
        ("visits bought without a count", "op=visits_add&amount=1&order_no=IN-22&attr1=CARD0001&attr2=service%3Dswim".into(), "attr2.count"),
        ("no visits bought", "op=visits_add&amount=1&order_no=IN-23&attr1=CARD0001&attr2=service%3Dswim%26count%3D0".into(), "attr2.count"),
        ("ten thousand visits at once", "op=visits_add&amount=1&order_no=IN-24&attr1=CARD0001&attr2=service%3Dswim%26count%3D10000".into(), "attr2.count"),
        ("visits valid for no day", "op=visits_add&amount=1&order_no=IN-25&attr1=CARD0001&attr2=service%3Dswim%26count%3D1%26days%3D0".into(), "attr2.days"),
        ("visits bought without a price", "op=visits_add&order_no=IN-26&attr1=CARD0001&attr2=service%3Dswim%26count%3D1".into(), "amount"),
        ("a visit with a price", "op=visit&amount=1&order_no=IN-27&attr1=CARD0001&attr2=service%3Dswim".into(), "amount"),
    ];
    assert!(cases.len() >= 30);
    let mut used = Vec::new();
    for (name, inner, field) in &cases {
        let before = w.fx.fingerprint().await;
        let out = w.send(&w.t1, inner).await;
        assert_eq!(out.errno, Errno::Malformed, "case {name:?}");
        assert_eq!(out.field.as_deref(), Some(*field), "case {name:?}");
        assert_eq!(
            w.fx.fingerprint().await,
            before,
            "case {name:?} changed something"
        );
        used.extend(inner.split('&').filter_map(|p| p.strip_prefix("order_no=")));
    }
    w.assert_unused(&used).await;
    w.d.stop().await.unwrap();
}
