//! proto-spec/vectors/card-products-v1.json: each worked example of §10.2
//! parsed, hashed and decided by the pure ledger, its errno or answer row
//! as the file says.

use chrono::{DateTime, Duration};
use serde_json::Value;

use super::answer_row::{posting_row, RowContext};
use super::lots::{Lot, LotTake, Ts};
use super::money::Money;
use super::ops_holds::*;
use super::ops_money::*;
use super::ops_points::*;
use super::plan::*;
use super::request::{Body, PostingOp, Request};
use super::rules::{Level, Limits};
use super::visits::*;
use crate::protocol::message::InnerForm;

fn now() -> Ts {
    DateTime::from_timestamp_millis(1_795_000_000_000).unwrap()
}

fn money(v: &Value) -> Option<Money> {
    v.as_str().map(|s| Money::new(s.parse().unwrap()).unwrap())
}

fn card(c: &Value) -> CardState {
    CardState {
        card_no: "GOLD0001".into(),
        member_id: 1,
        status: CardStatus::Active,
        balance: money(&c["balance"]).unwrap(),
        points: c["points"].as_i64().unwrap(),
        level: Level {
            name: "gold".into(),
            discount: c["discount"].as_str().unwrap().parse().unwrap(),
            points_rate: c["points_rate"].as_str().unwrap().parse().unwrap(),
            limits: Limits {
                max_balance: money(&c["max_balance"]),
                daily_debit: money(&c["daily_debit_limit"]),
            },
        },
        pin_fail_count: 0,
        has_pin: false,
        member_until: c["lapsed"]
            .as_bool()
            .unwrap_or(false)
            .then(|| now() - Duration::days(1)),
        spent_today: money(&c["spent_today"]).unwrap_or(Money::ZERO),
        held: money(&c["held"]).unwrap_or(Money::ZERO),
        active_holds: u32::from(c["held"].is_string()),
        visits: visit_lots(c).iter().map(|l| l.points_left).sum(),
    }
}

/// The card's lots of visits (`visit_lots`), each with its service.
fn visit_lots(c: &Value) -> Vec<Lot> {
    let Some(lots) = c["visit_lots"].as_array() else {
        return vec![];
    };
    lots.iter()
        .map(|l| Lot {
            id: l["id"].as_i64().unwrap(),
            points_left: l["visits"].as_i64().unwrap(),
            expires_at: l["expires_at_ms"]
                .as_i64()
                .map(|ms| DateTime::from_timestamp_millis(ms).unwrap()),
            service: l["service"].as_str().map(str::to_owned),
        })
        .collect()
}

/// The hold a capture names, with its terms.
fn hold(o: &Value) -> Original {
    let dec = |n: &str| o[n].as_str().unwrap().parse().unwrap();
    Original {
        order_no: o["order_no"].as_str().unwrap().into(),
        op: OpKind::Hold,
        business_day: now().date_naive(),
        amount: money(&o["amount"]).unwrap(),
        charged: money(&o["charged"]).unwrap(),
        tender: Tender::Balance,
        points_earned: 0,
        reversed: false,
        refunded: Money::ZERO,
        points_taken_back: 0,
        effects: vec![Effect {
            card_no: "GOLD0001".into(),
            balance_delta: rust_decimal::Decimal::ZERO,
            points_delta: 0,
            lots_created: vec![],
            lots_taken: vec![],
            visits_delta: 0,
        }],
        hold: Some(HoldTerms {
            expires_at: DateTime::from_timestamp_millis(o["expires_at_ms"].as_i64().unwrap())
                .unwrap(),
            discount: dec("discount"),
            points_rate: dec("points_rate"),
        }),
    }
}

/// The debit a refund names (tender split), with the one lot it created.
fn original(o: &Value) -> Original {
    let earned = o["points_earned"].as_i64().unwrap();
    Original {
        order_no: o["order_no"].as_str().unwrap().into(),
        op: OpKind::Debit,
        business_day: now().date_naive(),
        amount: money(&o["charged"]).unwrap(),
        charged: money(&o["charged"]).unwrap(),
        tender: Tender::Split,
        points_earned: earned,
        reversed: false,
        refunded: money(&o["refunded"]).unwrap(),
        hold: None,
        points_taken_back: o["points_taken_back"].as_i64().unwrap(),
        effects: vec![Effect {
            card_no: "GOLD0001".into(),
            balance_delta: -money(&o["from_balance"]).unwrap().amount(),
            points_delta: earned,
            lots_created: vec![LotTake {
                lot_id: 1,
                points: earned,
            }],
            lots_taken: vec![],
            visits_delta: 0,
        }],
    }
}

fn decide(v: &Value, req: &Request, st: &CardState) -> Decision {
    let Body::Posting(p) = &req.body else {
        panic!("only postings here")
    };
    let order_no = p.order_no.clone();
    let mut lots = vec![Lot::points(1, st.points, None)];
    lots.extend(visit_lots(&v["card"]));
    let cfg = LedgerConfig::default();
    match &p.op {
        PostingOp::Debit { sale, payment, .. } => {
            let d = DebitReq {
                order_no,
                sale: *sale,
                payment: *payment,
                pin: Pin::Absent,
            };
            decide_debit(&cfg, st, &d, now())
        }
        PostingOp::Topup { amount, .. } => decide_topup(
            &cfg,
            st,
            &TopupReq {
                order_no,
                amount: *amount,
            },
        ),
        PostingOp::Redeem { cost, gift, .. } => {
            let r = RedeemReq {
                order_no,
                cost: *cost,
                gift: gift.clone(),
                pin: Pin::Absent,
            };
            decide_redeem(st, &lots, &r, now())
        }
        PostingOp::Refund { amount, .. } => {
            let r = RefundReq {
                order_no,
                amount: *amount,
            };
            decide_refund(&original(&v["original"]), st, &lots, &r, now())
        }
        PostingOp::Hold {
            sale, expires_s, ..
        } => {
            let h = HoldReq {
                order_no,
                sale: *sale,
                pin: Pin::Absent,
                expires_s: *expires_s,
            };
            decide_hold(st, &h, now())
        }
        PostingOp::Capture { amount, .. } => {
            let c = CaptureReq {
                order_no,
                amount: *amount,
            };
            let at = (now(), now().date_naive());
            decide_capture(&cfg, &hold(&v["original"]), st, &c, at)
        }
        PostingOp::VisitsAdd {
            price,
            service,
            count,
            days,
            payment,
            ..
        } => {
            let r = VisitsAddReq {
                order_no,
                price: *price,
                service: service.clone(),
                count: *count,
                days: *days,
                payment: *payment,
                pin: Pin::Absent,
            };
            decide_visits_add(st, &lots, &r, now())
        }
        PostingOp::Visit { service, count, .. } => {
            let r = VisitReq {
                order_no,
                service: service.clone(),
                count: *count,
                pin: Pin::Absent,
            };
            decide_visit(st, &lots, &r, now())
        }
        other => panic!("no vector decides {other:?}"),
    }
}

#[test]
fn the_card_product_vectors_of_proto_spec() {
    let file = include_str!("../../../../proto-spec/vectors/card-products-v1.json");
    let doc: Value = serde_json::from_str(file).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 19);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let form = InnerForm::parse(v["inner_form"].as_str().unwrap().as_bytes()).unwrap();
        let canonical = String::from_utf8(form.canonical_bytes()).unwrap();
        assert_eq!(canonical, v["canonical"].as_str().unwrap(), "{name}");
        assert_eq!(
            hex::encode(form.digest()),
            v["canonical_sha256_hex"],
            "{name}"
        );
        let req = Request::from_form(&form).unwrap();
        let st = card(&v["card"]);
        let want = v["errno"].as_u64().unwrap();
        let plan = match decide(v, &req, &st) {
            Err(r) => {
                assert_eq!(u64::from(r.errno.code()), want, "{name}");
                continue;
            }
            Ok(plan) => plan,
        };
        assert_eq!(want, 0, "{name}: decided");
        let row = posting_row(
            &plan,
            &plan.answer.clone().into_row(1, now(), false),
            &RowContext {
                card: "GOLD0001",
                status: None,
                orig_terminal: Some("T1"),
            },
        );
        for (field, value) in v["row"].as_object().unwrap() {
            assert_eq!(row.get(field), value.as_str(), "{name}: {field}");
        }
        if let Some(takes) = v["lots_taken"].as_array() {
            let got: Vec<LotTake> = plan.cards[0].lots_taken.clone();
            let want: Vec<LotTake> = takes
                .iter()
                .map(|t| LotTake {
                    lot_id: t[0].as_i64().unwrap(),
                    points: t[1].as_i64().unwrap(),
                })
                .collect();
            assert_eq!(got, want, "{name}: lots taken");
        }
    }
}
