//! Known-answer vectors of proto-spec/vectors/v1.json: every deterministic
//! value is recomputed from the file's inputs and compared byte for byte;
//! the randomized ones (OAEP ciphertext, PSS signatures) are checked by
//! decrypting and verifying. `CARDSWITCH_WRITE_VECTORS=1 cargo test vectors`
//! regenerates the file (new RSA keys, so every value changes).

use cardswitch::crypto::kdf::{self, SessionKeys};
use cardswitch::crypto::mac::{hmac_sha256, sha256};
use cardswitch::crypto::rsa::{RsaPrivate, RsaPublic};
use cardswitch::crypto::{aead, Secret32};
use cardswitch::protocol::answer::{HelloAnswer, LoginAnswer};
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::grammar::{base64, base64_encode};
use cardswitch::protocol::message::{login_secret_plaintext, InnerForm};
use cardswitch::protocol::xml::{
    encode_answer, encode_answer_at, encode_rows, AnswerBody, Row, Rows,
};
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto-spec/vectors/v1.json");

fn arr<const N: usize>(hexs: &str) -> [u8; N] {
    hex::decode(hexs).unwrap().try_into().unwrap()
}

/// Everything derived from the inputs: the same code writes and checks.
fn derive(inp: &Value) -> Value {
    let s = |k: &str| inp[k].as_str().unwrap().to_owned();
    let n = |k: &str| inp[k].as_u64().unwrap();
    let terminal = s("terminal");
    let now = n("now");

    let root = RsaPrivate::from_pkcs8_pem(&s("root_private_pem"))
        .unwrap()
        .public();
    let signer = RsaPrivate::from_pkcs8_pem(&s("signer_private_pem"))
        .unwrap()
        .public();
    let day = RsaPrivate::from_pkcs8_pem(&s("day_private_pem"))
        .unwrap()
        .public();
    let signer_b64 = base64_encode(signer.spki_der());
    let day_b64 = base64_encode(day.spki_der());
    let signer_statement =
        canonical::signer_statement(&s("signer_id"), n("signer_not_after"), &signer_b64);
    let day_statement = canonical::day_key_statement(
        &terminal,
        &s("key_id"),
        n("not_before"),
        n("not_after"),
        &day_b64,
    );

    // login
    let big_s = Secret32::from_bytes(arr(&s("S_hex")));
    let login_plain =
        login_secret_plaintext(big_s.expose(), n("login_ts"), &s("password")).unwrap();
    let k_day = Secret32::from_bytes(arr(&s("K_day_hex")));
    let k_sid = kdf::session_key(&k_day, &terminal, &s("sid"));
    let keys = SessionKeys::derive(&k_sid);
    let server_random = hex::decode(s("server_random_hex")).unwrap();
    let server_random_b64 = base64_encode(&server_random);
    let t = canonical::session_statement(
        &terminal,
        &s("key_id"),
        n("login_ts"),
        &s("sid"),
        n("not_after"),
        &server_random_b64,
    );
    let wrap = kdf::wrap_key(&big_s, &server_random);
    let login_iv: [u8; 12] = arr(&s("login_iv_hex"));
    let wrapped = aead::seal(&wrap, &login_iv, t.as_bytes(), k_sid.expose());
    let sig_input =
        canonical::session_sig_input(&t, &base64_encode(&login_iv), &base64_encode(&wrapped));

    // txn
    let ts = n("txn_ts");
    let inner = s("inner_form");
    let req_aad = canonical::request_aad(&terminal, &s("sid"), ts);
    let req_iv: [u8; 12] = arr(&s("request_iv_hex"));
    let data = aead::seal(&keys.enc, &req_iv, req_aad.as_bytes(), inner.as_bytes());
    let body = encode_form(&[
        ("terminal", &terminal),
        ("sid", &s("sid")),
        ("ts", &ts.to_string()),
        ("iv", &base64_encode(&req_iv)),
        ("data", &base64_encode(&data)),
    ]);
    let req_mac = hmac_sha256(
        keys.mac.expose(),
        &[&canonical::request_mac_input(body.as_bytes())],
    );
    let form = InnerForm::parse(inner.as_bytes()).unwrap();
    let rows = Rows(vec![Row::new()
        .with("card", "CARD0001")
        .with("balance", "12.50")
        .with("points", "120")
        .with("level", "std")
        .with("status", "active")]);
    let rows_xml = encode_rows(&rows);
    let resp_aad = canonical::response_aad(&terminal, &s("sid"), ts);
    let resp_iv: [u8; 12] = arr(&s("response_iv_hex"));
    let resp_data = aead::seal(
        &keys.enc,
        &resp_iv,
        resp_aad.as_bytes(),
        rows_xml.as_bytes(),
    );
    let answer = encode_answer(
        Errno::Ok,
        now,
        &AnswerBody::Data {
            iv: resp_iv.to_vec(),
            data: resp_data.clone(),
        },
    );
    let resp_mac = hmac_sha256(
        keys.mac.expose(),
        &[&canonical::response_mac_input(
            ts,
            &req_mac,
            answer.as_bytes(),
        )],
    );
    let error_answer = encode_answer(Errno::InsufficientBalance, now, &AnswerBody::None);
    let error_mac = hmac_sha256(
        keys.mac.expose(),
        &[&canonical::response_mac_input(
            ts,
            &req_mac,
            error_answer.as_bytes(),
        )],
    );

    // A 1001 after the sid names its field (protocol.md §4.1), under the MAC.
    let malformed_answer = encode_answer_at(
        Errno::Malformed,
        Some("attr2.limit"),
        now,
        &AnswerBody::None,
    );
    let malformed_mac = hmac_sha256(
        keys.mac.expose(),
        &[&canonical::response_mac_input(
            ts,
            &req_mac,
            malformed_answer.as_bytes(),
        )],
    );

    json!({
        "root_public_key": base64_encode(root.spki_der()),
        "root_fingerprint": root.fingerprint_hex(),
        "root_id": root.short_id(),
        "signer_public_key": signer_b64,
        "public_key": day_b64,
        "signer_statement": signer_statement,
        "day_statement": day_statement,
        "hello_request_body": encode_form(&[("terminal", &terminal), ("ts", &n("hello_ts").to_string())]),
        "login_secret_plaintext_hex": hex::encode(&login_plain),
        "K_sid_hex": hex::encode(k_sid.expose()),
        "K_enc_hex": hex::encode(keys.enc.expose()),
        "K_mac_hex": hex::encode(keys.mac.expose()),
        "server_random": server_random_b64,
        "session_statement": t,
        "wrap_key_hex": hex::encode(wrap.expose()),
        "login_iv": base64_encode(&login_iv),
        "wrapped": base64_encode(&wrapped),
        "login_sig_input": sig_input,
        "request_aad": req_aad,
        "request_iv": base64_encode(&req_iv),
        "data": base64_encode(&data),
        "txn_request_body": body,
        "request_mac_input_hex": hex::encode(canonical::request_mac_input(body.as_bytes())),
        "request_mac_hex": hex::encode(req_mac),
        "referer": canonical::format_mac_header(&req_mac),
        "canonical_inner": String::from_utf8(form.canonical_bytes()).unwrap(),
        "canonical_inner_sha256_hex": hex::encode(form.digest()),
        "result_rows_xml": rows_xml,
        "response_aad": resp_aad,
        "response_iv": base64_encode(&resp_iv),
        "response_data": base64_encode(&resp_data),
        "txn_answer_xml": answer,
        "x_cardswitch_mac": canonical::format_mac_header(&resp_mac),
        "error_answer_xml": error_answer,
        "error_x_cardswitch_mac": canonical::format_mac_header(&error_mac),
        "malformed_answer_xml": malformed_answer,
        "malformed_x_cardswitch_mac": canonical::format_mac_header(&malformed_mac),
    })
}

/// The randomized values, made with the private keys.
fn randomized(inp: &Value, d: &Value) -> Value {
    let s = |k: &str| inp[k].as_str().unwrap().to_owned();
    let root = RsaPrivate::from_pkcs8_pem(&s("root_private_pem")).unwrap();
    let signer = RsaPrivate::from_pkcs8_pem(&s("signer_private_pem")).unwrap();
    let day = RsaPrivate::from_pkcs8_pem(&s("day_private_pem")).unwrap();
    let ds = |k: &str| d[k].as_str().unwrap().to_owned();
    let plain = hex::decode(ds("login_secret_plaintext_hex")).unwrap();
    let secret = day.public().encrypt_oaep_sha256(&plain).unwrap();
    let hello = HelloAnswer {
        key_id: s("key_id"),
        public_key: ds("public_key"),
        not_before: inp["not_before"].as_u64().unwrap(),
        not_after: inp["not_after"].as_u64().unwrap(),
        day_sig: base64_encode(&signer.sign_pss_sha256(ds("day_statement").as_bytes())),
        signer_id: s("signer_id"),
        signer_public_key: ds("signer_public_key"),
        signer_not_after: inp["signer_not_after"].as_u64().unwrap(),
        signer_sig: base64_encode(&root.sign_pss_sha256(ds("signer_statement").as_bytes())),
        root: ds("root_id"),
    };
    let login = LoginAnswer {
        sid: s("sid"),
        not_after: inp["not_after"].as_u64().unwrap(),
        server_random: ds("server_random"),
        iv: ds("login_iv"),
        wrapped: ds("wrapped"),
        sig: base64_encode(&day.sign_pss_sha256(ds("login_sig_input").as_bytes())),
    };
    let now = inp["now"].as_u64().unwrap();
    let login_body = encode_form(&[
        ("terminal", &s("terminal")),
        ("key_id", &s("key_id")),
        ("ts", &inp["login_ts"].as_u64().unwrap().to_string()),
        ("secret", &base64_encode(&secret)),
    ]);
    json!({
        "secret": base64_encode(&secret),
        "login_request_body": login_body,
        "day_sig": hello.day_sig,
        "signer_sig": hello.signer_sig,
        "hello_answer_xml": encode_answer(Errno::Ok, now, &AnswerBody::Rows(Rows(vec![hello.to_row()]))),
        "login_sig": login.sig,
        "login_answer_xml": encode_answer(Errno::Ok, now, &AnswerBody::Rows(Rows(vec![login.to_row()]))),
    })
}

fn generate() -> Value {
    let pem = |bits| {
        RsaPrivate::generate(bits)
            .unwrap()
            .to_pkcs8_pem()
            .to_string()
    };
    let inputs = json!({
        "terminal": "T1",
        "password": "correct horse battery staple 42",
        "now": 1_795_305_600_123u64,
        "hello_ts": 1_795_305_600_000u64,
        "login_ts": 1_795_305_600_100u64,
        "txn_ts": 1_795_305_600_200u64,
        "key_id": "T1.20261123.0a1b2c3d",
        // 2026-11-23 00:00 at +08:00, and the next midnight plus 10 min grace.
        "not_before": 1_795_276_800_000u64,
        "not_after": 1_795_363_800_000u64,
        "signer_id": "s.20261101.00112233",
        "signer_not_after": 1_802_000_000_000u64,
        "S_hex": hex::encode((0u8..32).collect::<Vec<_>>()),
        "K_day_hex": hex::encode((100u8..132).collect::<Vec<_>>()),
        "sid": "5f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "server_random_hex": hex::encode((200u8..232).collect::<Vec<_>>()),
        "login_iv_hex": "000102030405060708090a0b",
        "request_iv_hex": "101112131415161718191a1b",
        "response_iv_hex": "202122232425262728292a2b",
        "inner_form": "op=query&attr1=CARD0001",
        "root_private_pem": pem(3072),
        "signer_private_pem": pem(3072),
        "day_private_pem": pem(2048),
    });
    let derived = derive(&inputs);
    let random = randomized(&inputs, &derived);
    json!({
        "about": "cardswitch protocol v1 known-answer vectors (proto-spec §14). `inputs` are fixed; \
                  `derived` follow from them byte for byte; `randomized` are one valid instance of the \
                  values that use randomness (RSA-OAEP, RSA-PSS): check them by decrypting and verifying. \
                  Strings that the protocol hashes, signs or MACs are given as text (lines joined by \\n); \
                  *_hex values are the bytes in hex.",
        "inputs": inputs,
        "derived": derived,
        "randomized": random,
    })
}

#[test]
fn known_answer_vectors() {
    // `derived` only: the deterministic values recomputed from the stored
    // inputs, the randomized ones (signatures) kept as they are.
    if std::env::var_os("CARDSWITCH_WRITE_DERIVED_VECTORS").is_some() {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
        v["derived"] = derive(&v["inputs"]);
        std::fs::write(PATH, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    }
    if std::env::var_os("CARDSWITCH_WRITE_VECTORS").is_some() {
        let v = generate();
        std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
        std::fs::write(PATH, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let inputs = &v["inputs"];
    // Every deterministic value, recomputed.
    let derived = derive(inputs);
    for (k, want) in v["derived"].as_object().unwrap() {
        assert_eq!(&derived[k], want, "derived.{k}");
    }
    assert_eq!(
        derived.as_object().unwrap().len(),
        v["derived"].as_object().unwrap().len()
    );
    let d = |k: &str| v["derived"][k].as_str().unwrap().to_owned();
    let r = |k: &str| v["randomized"][k].as_str().unwrap().to_owned();
    let s = |k: &str| inputs[k].as_str().unwrap().to_owned();

    // Randomized values: OAEP decrypts, PSS verifies, with the keys given.
    let day = RsaPrivate::from_pkcs8_pem(&s("day_private_pem")).unwrap();
    let plain = day
        .decrypt_oaep_sha256(&base64(&r("secret")).unwrap())
        .unwrap();
    assert_eq!(hex::encode(plain.expose()), d("login_secret_plaintext_hex"));
    let pubkey = |k: &str| RsaPublic::from_spki_der(&base64(&d(k)).unwrap()).unwrap();
    assert!(pubkey("root_public_key").verify_pss_sha256(
        d("signer_statement").as_bytes(),
        &base64(&r("signer_sig")).unwrap()
    ));
    assert!(pubkey("signer_public_key").verify_pss_sha256(
        d("day_statement").as_bytes(),
        &base64(&r("day_sig")).unwrap()
    ));
    assert!(pubkey("public_key").verify_pss_sha256(
        d("login_sig_input").as_bytes(),
        &base64(&r("login_sig")).unwrap()
    ));
    assert_eq!(
        sha256(&base64(&d("root_public_key")).unwrap()).to_vec(),
        hex::decode(d("root_fingerprint")).unwrap()
    );

    // The answers parse and the reference client accepts them end to end.
    let now = inputs["now"].as_u64().unwrap();
    let hello = match cardswitch::protocol::xml::parse_answer(r("hello_answer_xml").as_bytes())
        .unwrap()
        .body
    {
        AnswerBody::Rows(rows) => HelloAnswer::from_row(&rows.0[0]).unwrap(),
        _ => panic!(),
    };
    let root = pubkey("root_public_key");
    let dk = cardswitch::client::wire::verify_hello(&s("terminal"), &hello, &root, now).unwrap();
    let login = match cardswitch::protocol::xml::parse_answer(r("login_answer_xml").as_bytes())
        .unwrap()
        .body
    {
        AnswerBody::Rows(rows) => LoginAnswer::from_row(&rows.0[0]).unwrap(),
        _ => panic!(),
    };
    let big_s = Secret32::from_bytes(arr(&s("S_hex")));
    let k_sid = cardswitch::client::wire::open_login(
        &s("terminal"),
        &dk,
        inputs["login_ts"].as_u64().unwrap(),
        &big_s,
        &login,
    )
    .unwrap();
    assert_eq!(hex::encode(k_sid.expose()), d("K_sid_hex"));
    let keys = SessionKeys::derive(&k_sid);
    let out = cardswitch::client::wire::open_txn_answer(
        &keys,
        &s("terminal"),
        &s("sid"),
        inputs["txn_ts"].as_u64().unwrap(),
        &arr(&d("request_mac_hex")),
        Some(d("x_cardswitch_mac").as_bytes()),
        d("txn_answer_xml").as_bytes(),
    )
    .unwrap();
    assert_eq!(encode_rows(&out.rows), d("result_rows_xml"));
    for (xsd, doc) in [
        ("hello.xsd", r("hello_answer_xml")),
        ("login.xsd", r("login_answer_xml")),
        ("txn-answer.xsd", d("txn_answer_xml")),
        ("rows.xsd", d("result_rows_xml")),
        ("error.xsd", d("error_answer_xml")),
        ("error.xsd", d("malformed_answer_xml")),
    ] {
        crate::harness::assert_valid(xsd, doc.as_bytes());
    }
}
