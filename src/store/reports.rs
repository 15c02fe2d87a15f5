//! What a chain's back office adds up (protocol.md §6.1): a business day's
//! settlement and the liability to card holders. One function each, called
//! by the office ops and by `cardswitch report`, so the two can never
//! disagree.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;

use crate::error::Result;
use crate::ledger::request::SettlementBy;
use crate::ledger::ALL_STORES;

/// One group of a day's postings: a store's (terminal's) postings of one op
/// and tender, summed; or, with `op` = `total`, all of a store's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementLine {
    pub store: String,
    /// Set when grouped by terminal (and never on a store's total).
    pub terminal: Option<String>,
    pub op: String,
    /// `balance` or `cash` for ops paid one way or the other (and their
    /// refunds and reverses), `none` for the rest, `all` on a total.
    pub tender: String,
    pub count: i64,
    pub amount: Decimal,
    pub discount: Decimal,
    pub charged: Decimal,
    pub cash: Decimal,
    pub balance_delta: Decimal,
    pub points_delta: i64,
}

/// The `op` of a store's last line.
pub const TOTAL: &str = "total";

/// The postings of business day `day` at `store` (`*`: every store),
/// grouped as `by` says, each store's groups followed by its total.
/// The times the postings of business days `from`..=`to` lie within. A
/// business day is a date in a zone less than a day from UTC, so its
/// postings lie within a day of it either side: bounding `posted_at` so
/// lets PostgreSQL skip every other month's partition.
fn posted_within(from: NaiveDate, to: NaiveDate) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    (
        midnight(from - Duration::days(1)),
        midnight(to + Duration::days(2)),
    )
}

/// Run it in a transaction (the office op's; the report's own).
pub async fn settlement<C: GenericClient>(
    c: &C,
    day: NaiveDate,
    store: &str,
    by: SettlementBy,
) -> Result<Vec<SettlementLine>> {
    let (lo, hi) = posted_within(day, day);
    let by_terminal = by == SettlementBy::Terminal;
    // The pool plans every statement generically; for one day's postings a
    // generic plan guesses a few thousand rows and sorts a million on disk
    // (0.73 s for 1,000,000 postings here) where the plan made for the
    // actual day hashes them (0.34 s). JIT, off in the pool, may pay for
    // itself over a million rows, so PostgreSQL decides as by default.
    // Callers run this in a transaction, which the settings end with.
    c.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = on")
        .await?;
    let rows = c
        .query(
            // The day's postings summed per terminal first (a few hundred
            // groups, hashed), then by store: the million rows are touched
            // once, whatever the grouping asked for.
            "SELECT t.store_id AS store, CASE WHEN $5 THEN g.terminal_id END AS terminal,
                    g.op AS op, g.tender AS tender, sum(g.n)::bigint, sum(g.amount), sum(g.discount),
                    sum(g.charged), sum(g.cash), sum(g.balance_delta), sum(g.points_delta)::bigint
               FROM (SELECT terminal_id, op, coalesce(detail->>'tender', 'none') AS tender,
                            count(*) AS n, sum(amount) AS amount, sum(discount) AS discount,
                            sum(charged) AS charged,
                            coalesce(sum((detail->>'cash')::numeric), 0) AS cash,
                            sum(balance_delta) AS balance_delta, sum(points_delta) AS points_delta
                       FROM postings
                      WHERE business_day = $1 AND posted_at >= $2 AND posted_at < $3
                      GROUP BY 1, 2, 3) g
               JOIN terminals t ON t.terminal_id = g.terminal_id
              WHERE $4 = '*' OR t.store_id = $4
              GROUP BY 1, 2, 3, 4
              ORDER BY t.store_id COLLATE \"C\",
                       CASE WHEN $5 THEN g.terminal_id END COLLATE \"C\",
                       g.op COLLATE \"C\", g.tender COLLATE \"C\"",
            &[&day, &lo, &hi, &store, &by_terminal],
        )
        .await?;
    let lines = rows.iter().map(|r| SettlementLine {
        store: r.get(0),
        terminal: r.get(1),
        op: r.get(2),
        tender: r.get(3),
        count: r.get(4),
        amount: r.get(5),
        discount: r.get(6),
        charged: r.get(7),
        cash: r.get(8),
        balance_delta: r.get(9),
        points_delta: r.get(10),
    });
    Ok(with_totals(lines))
}

/// Each store's lines, then its total (the lines come sorted by store).
fn with_totals(lines: impl Iterator<Item = SettlementLine>) -> Vec<SettlementLine> {
    let mut out: Vec<SettlementLine> = Vec::new();
    let mut total: Option<SettlementLine> = None;
    for l in lines {
        match &mut total {
            Some(t) if t.store == l.store => t.add(&l),
            _ => {
                out.extend(total.take());
                total = Some(SettlementLine::total_of(&l));
            }
        }
        out.push(l);
    }
    out.extend(total);
    out
}

impl SettlementLine {
    fn total_of(l: &SettlementLine) -> SettlementLine {
        SettlementLine {
            terminal: None,
            op: TOTAL.to_owned(),
            tender: "all".to_owned(),
            ..l.clone()
        }
    }

    fn add(&mut self, l: &SettlementLine) {
        self.count += l.count;
        self.amount += l.amount;
        self.discount += l.discount;
        self.charged += l.charged;
        self.cash += l.cash;
        self.balance_delta += l.balance_delta;
        self.points_delta += l.points_delta;
    }
}

/// What the chain owes its card holders, read in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liability {
    /// Cards not closed.
    pub cards: i64,
    pub balance: Decimal,
    /// What active holds keep from being spent (protocol.md §6.2): part
    /// of `balance`, owed until captured or released.
    pub held: Decimal,
    pub points: i64,
    /// When the data read was current (Unix ms): a replica's replay time.
    pub as_of_ms: i64,
}

/// Every card's (`*`) or the cards issued at `store`.
pub async fn liability<C: GenericClient>(c: &C, store: &str) -> Result<Liability> {
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE status <> 'closed'), coalesce(sum(balance), 0),
                    coalesce(sum(points), 0)::bigint,
                    floor(extract(epoch FROM CASE WHEN pg_is_in_recovery()
                        THEN pg_last_xact_replay_timestamp() ELSE statement_timestamp() END)
                        * 1000)::bigint,
                    coalesce((SELECT sum(o.charged) FROM orders o JOIN cards h USING (card_no)
                               WHERE o.op = 'hold' AND NOT o.reversed
                                 AND o.hold_expires_at > statement_timestamp()
                                 AND ($1 = '*' OR h.store_id = $1)), 0)
               FROM cards WHERE $1 = '*' OR store_id = $1",
            &[&store],
        )
        .await?;
    Ok(Liability {
        cards: r.get(0),
        balance: r.get(1),
        held: r.get(4),
        points: r.get(2),
        as_of_ms: r.get(3),
    })
}

/// One business day's totals, for the trend chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayTotals {
    pub day: NaiveDate,
    /// What sales charged (`debit` and `capture` postings' `charged`).
    pub debits: Decimal,
    /// What top-ups put on the cards (`topup` postings' `balance_delta`,
    /// bonuses included).
    pub topups: Decimal,
    /// Cards registered (and imported).
    pub new_cards: i64,
}

/// Each business day from `from` to `to` (both included) with postings.
pub async fn daily<C: GenericClient>(
    c: &C,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DayTotals>> {
    let (lo, hi) = posted_within(from, to);
    let rows = c
        .query(
            "SELECT business_day,
                    coalesce(sum(charged) FILTER (WHERE op IN ('debit', 'capture')), 0),
                    coalesce(sum(balance_delta) FILTER (WHERE op = 'topup'), 0),
                    count(*) FILTER (WHERE op IN ('register', 'import'))
               FROM postings
              WHERE business_day BETWEEN $1 AND $2 AND posted_at >= $3 AND posted_at < $4
              GROUP BY business_day ORDER BY business_day",
            &[&from, &to, &lo, &hi],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DayTotals {
            day: r.get(0),
            debits: r.get(1),
            topups: r.get(2),
            new_cards: r.get(3),
        })
        .collect())
}

/// Whether a terminal of `own` store may ask about `named` (protocol.md
/// §6.1): a head office about any, a store only about itself.
pub fn in_scope(own: &str, named: &str) -> bool {
    own == ALL_STORES || own == named
}

/// A card whose membership lapses soon (protocol.md §6.2), for reminders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiring {
    pub card_no: String,
    pub member_id: i64,
    pub name: String,
    /// In full: the SMS gateway's list.
    pub phone: String,
    pub level: String,
    pub store_id: Option<String>,
    pub expires_at_ms: i64,
}

/// The cards not closed whose membership, running `validity_days` from its
/// last renewal, lapses from now to `within_days` days on, soonest first.
pub async fn expiring<C: GenericClient>(
    c: &C,
    validity_days: u32,
    within_days: u32,
) -> Result<Vec<Expiring>> {
    // Days of 24 hours, as the ledger counts them (never calendar days in
    // the session's time zone).
    let sql = concat!(
        "SELECT card_no, member_id, name, phone, level, store_id,
                floor(extract(epoch FROM expires) * 1000)::bigint
           FROM (SELECT c.card_no, m.member_id, m.name, m.phone, m.level, c.store_id, ",
        crate::store::protected::card_renewed_at!(),
        " + $1::bigint * interval '24 hours' AS expires
                   FROM cards c JOIN members m ON m.member_id = c.member_id
                  WHERE c.status <> 'closed') e
          WHERE expires >= statement_timestamp()
            AND expires < statement_timestamp() + $2::bigint * interval '24 hours'
          ORDER BY expires, card_no COLLATE \"C\""
    );
    let rows = c
        .query(sql, &[&i64::from(validity_days), &i64::from(within_days)])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Expiring {
            card_no: r.get(0),
            member_id: r.get(1),
            name: r.get(2),
            phone: r.get(3),
            level: r.get(4),
            store_id: r.get(5),
            expires_at_ms: r.get(6),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(store: &str, op: &str, count: i64, amount: i64) -> SettlementLine {
        SettlementLine {
            store: store.into(),
            terminal: None,
            op: op.into(),
            tender: "balance".into(),
            count,
            amount: Decimal::new(amount, 2),
            discount: Decimal::ZERO,
            charged: Decimal::new(amount, 2),
            cash: Decimal::ZERO,
            balance_delta: Decimal::new(-amount, 2),
            points_delta: count,
        }
    }

    #[test]
    fn each_store_ends_with_its_total() {
        let lines = vec![
            line("A", "debit", 2, 1000),
            line("A", "topup", 1, 500),
            line("B", "debit", 1, 250),
        ];
        let out = with_totals(lines.into_iter());
        let ops: Vec<_> = out
            .iter()
            .map(|l| (l.store.as_str(), l.op.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("A", "debit"),
                ("A", "topup"),
                ("A", "total"),
                ("B", "debit"),
                ("B", "total")
            ]
        );
        assert_eq!(out[2].count, 3);
        assert_eq!(out[2].amount, Decimal::new(1500, 2));
        assert_eq!(out[2].balance_delta, Decimal::new(-1500, 2));
        assert_eq!(out[2].tender, "all");
        assert_eq!(out[4].amount, Decimal::new(250, 2));
        assert!(with_totals(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_store_asks_only_about_itself() {
        assert!(in_scope("*", "S1"));
        assert!(in_scope("*", "*"));
        assert!(in_scope("S1", "S1"));
        assert!(!in_scope("S1", "S2"));
        assert!(!in_scope("S1", "*"));
    }
}
