//! Cards and their postings side by side: each card's MAC and sealed copy,
//! its chain walked, its balance and points against the chain's sums and
//! its live lots.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use indicatif::ProgressBar;
use rust_decimal::Decimal;
use tokio_postgres::Row;

use super::{finding, Batches, Finding, Report};
use crate::integrity::{CardValues, RowKeys};
use crate::store::protected::{card_values, posting_values, CARD_COLUMNS, POSTING_COLUMNS};

/// What the scan knew of a card with a finding, for `--repair`.
pub(super) struct CardScan {
    pub(super) values: CardValues,
    pub(super) sealed: Option<CardValues>,
    pub(super) chain_ok: bool,
    pub(super) postings: i64,
    pub(super) head: Option<Vec<u8>>,
    pub(super) balance_sum: Decimal,
    pub(super) points_sum: i64,
    pub(super) live_lots: i64,
    pub(super) visits_sum: i64,
    pub(super) visit_lots: i64,
    /// The store the card was issued at, by its first posting, when the
    /// card's `store_id` says otherwise.
    pub(super) issued_at: Option<Option<String>>,
}

fn cards_sql() -> String {
    format!(
        "SELECT {CARD_COLUMNS}, c.sealed, coalesce(l.live, 0)::bigint, c.store_id,
                coalesce(h.held, 0)::numeric(14,2), coalesce(l.visits, 0)::bigint
           FROM cards c
           LEFT JOIN (SELECT card_no, sum(points_left) FILTER (WHERE service IS NULL) AS live,
                             sum(points_left) FILTER (WHERE service IS NOT NULL) AS visits
                        FROM lots GROUP BY card_no) l
                  USING (card_no)
           LEFT JOIN (SELECT card_no, sum(charged) AS held FROM orders
                       WHERE op = 'hold' AND NOT reversed GROUP BY card_no) h
                  USING (card_no)
          ORDER BY c.card_no COLLATE \"C\""
    )
}

fn postings_sql() -> String {
    format!("SELECT {POSTING_COLUMNS} FROM postings ORDER BY card_no COLLATE \"C\", posting_id")
}

pub(super) async fn scan_cards(
    ta: &Transaction<'_>,
    tb: &Transaction<'_>,
    keys: &RowKeys,
    report: &mut Report,
    scans: &mut BTreeMap<String, CardScan>,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut cards = Batches::new(ta, &cards_sql()).await?;
    let mut posts = Postings {
        rows: Batches::new(tb, &postings_sql()).await?,
        read: 0,
    };
    let stores = terminal_stores(ta).await?;
    let mut n_cards = 0u64;
    while let Some(c) = cards.next().await? {
        n_cards += 1;
        let card = CardRead::decode(&c);
        let no = card.values.card_no.clone();
        posts.skip_orphans_before(&no, report).await?;
        let (mut found, sealed) = card.check(keys);
        let chain = posts.walk(&no, keys, &mut found).await?;
        pb.inc(1 + chain.count as u64);
        let chain_ok = chain.check_totals(&card, &mut found);
        let issued_at = chain.issued_at(&card, &stores, &mut found);
        if !found.is_empty() {
            report.findings.extend(found);
            scans.insert(
                no,
                CardScan {
                    values: card.values,
                    sealed,
                    chain_ok,
                    postings: chain.count,
                    head: chain.head,
                    balance_sum: chain.balance_sum,
                    points_sum: chain.points_sum,
                    live_lots: card.live_lots,
                    visits_sum: chain.visits_sum,
                    visit_lots: card.visit_lots,
                    issued_at,
                },
            );
        }
    }
    while let Some(p) = posts.rows.next().await? {
        posts.read += 1;
        posts.orphan(&p, report);
    }
    report.rows.insert("cards".into(), n_cards);
    report.rows.insert("postings".into(), posts.read);
    Ok(())
}

/// Each terminal's store (`None`: a head office's).
async fn terminal_stores(ta: &Transaction<'_>) -> anyhow::Result<HashMap<String, Option<String>>> {
    let rows = ta
        .query("SELECT terminal_id, store_id FROM terminals", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A card row as [`cards_sql`] reads it.
struct CardRead {
    values: CardValues,
    row_mac: Option<Vec<u8>>,
    key_id: Option<String>,
    sealed_blob: Option<Vec<u8>>,
    live_lots: i64,
    store_id: Option<String>,
    /// What the card's unreleased holds keep, by their orders.
    active_holds: Decimal,
    /// What its lots of visits hold.
    visit_lots: i64,
}

impl CardRead {
    fn decode(c: &Row) -> CardRead {
        CardRead {
            values: card_values(c),
            row_mac: c.get(10),
            key_id: c.get(11),
            sealed_blob: c.get(17),
            live_lots: c.get(18),
            store_id: c.get(19),
            active_holds: c.get(20),
            visit_lots: c.get(21),
        }
    }

    /// The row's MAC and its sealed copy (which a repair restores from).
    fn check(&self, keys: &RowKeys) -> (Vec<Finding>, Option<CardValues>) {
        let v = &self.values;
        let no = &v.card_no;
        let mut found = Vec::new();
        let image = v.image();
        if !keys.verify(
            self.key_id.as_deref(),
            &image,
            None,
            self.row_mac.as_deref(),
        ) {
            found.push(finding("cards", no, "mac", "row MAC does not match"));
        }
        let sealed = self
            .sealed_blob
            .as_deref()
            .and_then(|b| keys.open("cards", no, b).ok())
            .and_then(|img| CardValues::from_image(&img));
        let problem = match &sealed {
            None => Some("sealed copy missing or does not open"),
            Some(s) if s != v => Some("sealed copy differs from the row"),
            _ => None,
        };
        if let Some(p) = problem {
            found.push(finding("cards", no, "sealed", p));
        }
        (found, sealed)
    }
}

/// The postings stream, merged with the cards by card number.
struct Postings<'a> {
    rows: Batches<'a>,
    read: u64,
}

/// A card's chain as walked.
struct Chain {
    head: Option<Vec<u8>>,
    count: i64,
    ok: bool,
    balance_sum: Decimal,
    points_sum: i64,
    visits_sum: i64,
    /// The terminal of the card's first posting.
    first_terminal: Option<String>,
}

impl Postings<'_> {
    fn orphan(&self, p: &Row, report: &mut Report) {
        let (pno, id): (String, i64) = (p.get(0), p.get(16));
        report.findings.push(finding(
            "postings",
            &format!("{pno}/{id}"),
            "chain",
            "posting of a card that does not exist",
        ));
    }

    /// Postings of no card, ordered before `no`.
    async fn skip_orphans_before(&mut self, no: &str, report: &mut Report) -> anyhow::Result<()> {
        while let Some(p) = self.rows.peek().await? {
            if p.get::<_, &str>(0) >= no {
                break;
            }
            let p = self.rows.next().await?.expect("peeked");
            self.read += 1;
            self.orphan(&p, report);
        }
        Ok(())
    }

    /// Card `no`'s postings in chain order: each MAC over its values and
    /// the one before, each balance and points the sum so far. The first
    /// break is a finding; the walk then only sums.
    async fn walk(
        &mut self,
        no: &str,
        keys: &RowKeys,
        found: &mut Vec<Finding>,
    ) -> anyhow::Result<Chain> {
        let mut ch = Chain {
            head: None,
            count: 0,
            ok: true,
            balance_sum: Decimal::ZERO,
            points_sum: 0,
            visits_sum: 0,
            first_terminal: None,
        };
        while let Some(p) = self.rows.peek().await? {
            if p.get::<_, &str>(0) != no {
                break;
            }
            let p = self.rows.next().await?.expect("peeked");
            self.read += 1;
            let v = posting_values(&p);
            let mac: Option<Vec<u8>> = p.get(14);
            let kid: Option<String> = p.get(15);
            let at = || format!("{no}/{}", p.get::<_, i64>(16));
            if ch.ok
                && !keys.verify(
                    kid.as_deref(),
                    &v.image(),
                    ch.head.as_deref(),
                    mac.as_deref(),
                )
            {
                ch.ok = false;
                let why = "posting MAC does not match its values or the posting before it";
                found.push(finding("postings", &at(), "chain", why));
            }
            if ch.ok && v.chain_pos.is_some_and(|pos| pos != ch.count + 1) {
                ch.ok = false;
                let why = "posting's place in the chain ≠ the postings before it plus one";
                found.push(finding("postings", &at(), "chain", why));
            }
            ch.balance_sum += v.balance_delta;
            ch.points_sum += v.points_delta;
            ch.visits_sum += v.visits_delta.unwrap_or(0);
            if ch.ok && (v.balance != ch.balance_sum || v.points != ch.points_sum) {
                ch.ok = false;
                let why = "balance or points after the posting ≠ the sum of the postings so far";
                found.push(finding("postings", &at(), "balance", why));
            }
            if ch.count == 0 {
                ch.first_terminal = Some(v.terminal_id.clone());
            }
            ch.head = mac;
            ch.count += 1;
        }
        Ok(ch)
    }
}

impl Chain {
    /// The card's store against where its first posting was made (a derived
    /// column, like an index: migration 0011). `Some(store)` to set it to
    /// when they differ.
    fn issued_at(
        &self,
        card: &CardRead,
        stores: &HashMap<String, Option<String>>,
        found: &mut Vec<Finding>,
    ) -> Option<Option<String>> {
        let first = self.first_terminal.as_ref()?;
        let issued = stores.get(first).cloned().flatten();
        if issued == card.store_id {
            return None;
        }
        let why = format!(
            "store {:?} but its first posting was made at store {:?}",
            card.store_id, issued
        );
        found.push(finding("cards", &card.values.card_no, "store", why));
        Some(issued)
    }

    /// The chain's end against the card's, and the card's balance and
    /// points against the chain's sums and its live lots; whether the
    /// chain is whole.
    fn check_totals(&self, card: &CardRead, found: &mut Vec<Finding>) -> bool {
        let v = &card.values;
        let no = &v.card_no;
        let mut ok = self.ok;
        if ok && (self.head != v.last_mac || self.count != v.chain_len) {
            ok = false;
            let why = format!(
                "card names {} postings ending in another MAC; the chain has {}",
                v.chain_len, self.count
            );
            found.push(finding("cards", no, "chain", why));
        }
        if self.balance_sum != v.balance {
            let why = format!(
                "balance {} ≠ sum of postings {}",
                v.balance, self.balance_sum
            );
            found.push(finding("cards", no, "balance", why));
        }
        if self.points_sum != v.points {
            let why = format!("points {} ≠ sum of postings {}", v.points, self.points_sum);
            found.push(finding("cards", no, "points", why));
        }
        if card.live_lots != v.points {
            let why = format!("points {} ≠ live lots {}", v.points, card.live_lots);
            found.push(finding("cards", no, "lots", why));
        }
        let visits = v.visits.unwrap_or(0);
        if self.visits_sum != visits || card.visit_lots != visits {
            let why = format!(
                "visits {visits} ≠ sum of postings {} or lots of visits {}",
                self.visits_sum, card.visit_lots
            );
            found.push(finding("cards", no, "visits", why));
        }
        let held = v.held.unwrap_or_default();
        if card.active_holds != held {
            let why = format!("held {held} ≠ active holds {}", card.active_holds);
            found.push(finding("cards", no, "held", why));
        }
        ok
    }
}
