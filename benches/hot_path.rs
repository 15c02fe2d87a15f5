//! Micro-benchmarks of the pure hot path of a debit: decode the outer form,
//! check the request MAC, decrypt and parse the inner form; decide the debit;
//! encode the answer rows, encrypt them and MAC the answer.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rust_decimal::Decimal;

use cardswitch::crypto::{aead, kdf, mac, Secret32};
use cardswitch::ledger::money::Money;
use cardswitch::ledger::ops_money::{decide_debit, DebitReq};
use cardswitch::ledger::plan::{CardState, LedgerConfig, Payment, Pin};
use cardswitch::ledger::rules::Level;
use cardswitch::ledger::state::CardStatus;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::message::{InnerForm, TxnRequest};
use cardswitch::protocol::xml::{encode_answer, encode_rows, AnswerBody, Row, Rows};

const TERMINAL: &str = "POS0001";
const SID: &str = "s.0123456789abcdef0123456789abcdef";
const TS: u64 = 1_795_000_000_000;

fn keys() -> kdf::SessionKeys {
    let k_day = Secret32::from_bytes([7; 32]);
    kdf::SessionKeys::derive(&kdf::session_key(&k_day, TERMINAL, SID))
}

/// A txn body and its MAC, as a terminal would send them.
fn request(keys: &kdf::SessionKeys) -> (Vec<u8>, [u8; 32]) {
    let inner = "op=debit&amount=128.50&order_no=ORD-000000123&operator=c01&attr1=8800123456789&attr2=tender%3Dbalance";
    let iv = [9u8; 12];
    let aad = canonical::request_aad(TERMINAL, SID, TS);
    let data = aead::seal(&keys.enc, &iv, aad.as_bytes(), inner.as_bytes());
    let body = TxnRequest {
        terminal: TERMINAL.into(),
        sid: SID.into(),
        ts: TS,
        iv: iv.to_vec(),
        data,
    }
    .encode()
    .into_bytes();
    let tag = mac::hmac_sha256(keys.mac.expose(), &[&canonical::request_mac_input(&body)]);
    (body, tag)
}

fn card() -> CardState {
    CardState {
        card_no: "8800123456789".into(),
        member_id: 1,
        status: CardStatus::Active,
        balance: Money::new(Decimal::new(100_000, 2)).unwrap(),
        points: 1200,
        level: Level {
            name: "gold".into(),
            discount: Decimal::new(95, 2),
            points_rate: Decimal::ONE,
            limits: Default::default(),
        },
        pin_fail_count: 0,
        has_pin: false,
        member_until: None,
        spent_today: cardswitch::ledger::Money::ZERO,
        held: cardswitch::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
    }
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let (body, tag) = request(&keys);
    let header = canonical::format_mac_header(&tag);

    c.bench_function("request: decode + MAC check + decrypt + inner parse", |b| {
        b.iter(|| {
            let req = TxnRequest::parse(black_box(&body)).unwrap();
            let claimed = canonical::parse_mac_header(header.as_bytes()).unwrap();
            assert!(mac::verify_hmac(
                keys.mac.expose(),
                &[&canonical::request_mac_input(&body)],
                &claimed
            ));
            let aad = canonical::request_aad(&req.terminal, &req.sid, req.ts);
            let plain = aead::open(&keys.enc, &req.iv, aad.as_bytes(), &req.data).unwrap();
            InnerForm::parse(plain.expose()).unwrap()
        })
    });

    let cfg = LedgerConfig::default();
    let card = card();
    let now = chrono::Utc::now();
    c.bench_function("rules: decide a debit", |b| {
        b.iter(|| {
            let req = DebitReq {
                order_no: "ORD-000000123".into(),
                sale: Money::new(Decimal::new(12_850, 2)).unwrap(),
                payment: Payment::Balance,
                pin: Pin::Absent,
            };
            decide_debit(&cfg, black_box(&card), &req, now).unwrap()
        })
    });

    let row = Row::new()
        .with("order_no", "ORD-000000123")
        .with("op", "debit")
        .with("txn_id", "1234567")
        .with("card", "8800123456789")
        .with("amount", "128.50")
        .with("discount", "6.43")
        .with("charged", "122.07")
        .with("points_delta", "122")
        .with("balance", "877.93")
        .with("points", "1322")
        .with("replayed", "0")
        .with("posted_at", "1795000000123");
    c.bench_function("answer: rows + encrypt + XML + MAC", |b| {
        b.iter(|| {
            let rows = encode_rows(&Rows(vec![black_box(row.clone())]));
            let iv = aead::random_iv();
            let aad = canonical::response_aad(TERMINAL, SID, TS);
            let data = aead::seal(&keys.enc, &iv, aad.as_bytes(), rows.as_bytes());
            let xml = encode_answer(
                Errno::Ok,
                TS + 3,
                &AnswerBody::Data {
                    iv: iv.to_vec(),
                    data,
                },
            );
            mac::hmac_sha256(
                keys.mac.expose(),
                &[&canonical::response_mac_input(TS, &tag, xml.as_bytes())],
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
