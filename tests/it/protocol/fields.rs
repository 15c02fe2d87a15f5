//! A 1001 answer names the first field at fault in `<field>` (protocol.md
//! §4.1): outer forms, headers, the inner form and `attr2`, before and
//! after the sid is known; the answer still checks against the XSD and,
//! after the sid, its MAC.

use cardswitch::client::wire;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::xml::parse_answer;

use super::{build, expect_txn, now_ms, send, send_referer, setup, Setup};
use cardswitch::client::RawResponse;

fn field_of(path: &str, r: &RawResponse) -> String {
    assert_eq!(super::errno_of(path, r), Errno::Malformed);
    parse_answer(&r.body)
        .unwrap()
        .field
        .expect("a 1001 names its field")
}

#[tokio::test]
async fn a_1001_names_the_first_field_at_fault() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let before = fx.fingerprint().await;

    // Outer forms, before the sid: no MAC.
    let b = build(&s, c.clock.next(), b"op=query&attr1=CARD0001");
    let text = String::from_utf8(b.body.clone()).unwrap();
    let h = canonical::format_mac_header(&b.mac);
    let referer = [("referer", h.as_str())];
    for (body, field) in [
        (text.replace(&format!("sid={}", s.sid), "sid=a%20b"), "sid"),
        (format!("{text}&extra=1"), "extra"),
        (format!("{text}&%3Cscript%3E=1"), "body"),
        (text.replace("&data=", "&data=%21"), "data"),
        (text.replace("terminal=T1", "terminal="), "terminal"),
        ("junk".to_owned(), "body"),
    ] {
        let r = c.post_form("/v1/txn", body, &referer).await.unwrap();
        assert_eq!(field_of("/v1/txn", &r), field);
    }
    let hello = encode_form(&[("terminal", "T1"), ("ts", "soon")]);
    let r = c.post_form("/v1/hello", hello, &[]).await.unwrap();
    assert_eq!(field_of("/v1/hello", &r), "ts");
    let login =
        wire::login_body("T1", &day.key_id, now_ms(), &[1u8; 256]).replace("secret=", "secret=%25");
    let r = c.post_form("/v1/login", login, &[]).await.unwrap();
    assert_eq!(field_of("/v1/login", &r), "secret");
    let r = c
        .post_raw("/v1/txn", b.body.clone(), &[("content-type", "text/plain")])
        .await
        .unwrap();
    assert_eq!(field_of("/v1/txn", &r), "content-type");

    // The MAC headers, after the sid: MACed answers naming the header.
    let r = send(&c, &b, &[]).await;
    expect_txn(&s, &b, &r, Errno::Malformed);
    assert_eq!(field_of("/v1/txn", &r), "x-cardswitch-mac");
    let r = send(&c, &b, &[("referer", "https://shop.example/")]).await;
    expect_txn(&s, &b, &r, Errno::Malformed);
    assert_eq!(field_of("/v1/txn", &r), "referer");

    // The inner form and attr2, decrypted.
    for (inner, field) in [
        (&b"op=fly&attr1=CARD0001"[..], "op"),
        (b"op=history&attr1=CARD0001&attr2=limit%3D0", "attr2.limit"),
        (
            b"op=query&attr1=CARD0001&attr2=tender%3Dcash",
            "attr2.tender",
        ),
        (
            b"op=debit&amount=1.005&order_no=F1&attr1=CARD0001",
            "amount",
        ),
        (b"op=debit&amount=1&attr1=CARD0001", "order_no"),
        (b"op=query&attr1=C%201", "attr1"),
    ] {
        let b = build(&s, c.clock.next(), inner);
        let r = send_referer(&c, &b).await;
        expect_txn(&s, &b, &r, Errno::Malformed);
        assert_eq!(
            field_of("/v1/txn", &r),
            field,
            "{}",
            String::from_utf8_lossy(inner)
        );
    }
    assert_eq!(fx.fingerprint().await, before, "a refusal wrote something");
    d.stop().await.unwrap();
}
