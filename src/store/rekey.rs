//! `keys rotate-row-key`: every protected row re-MACed under the newest row
//! key, in batches, while the daemon keeps serving.
//!
//! - Terminals first: every request reads its terminal row, so a running
//!   daemon meets the new key id at once, loads the new key and signs with
//!   it from then on (`keys::refresh_row_keys`).
//! - Operators and levels, then day keys and sessions (one transaction,
//!   day keys locked first, as a revocation locks them).
//! - Cards in batches of card numbers, each batch one transaction holding
//!   the cards' row locks (the ledger's own lock, so no posting interleaves):
//!   each card's chain is verified under the old keys, then the postings,
//!   `last_mac` and the card MAC are rewritten together, so the chain is
//!   whole at every commit. Members in batches of ids.
//! - The audit chain in one transaction holding `audit_head`.
//!
//! A row that does not verify under any known key is never re-MACed (that
//! would launder tampering): it is counted and left for `verify`.
//! Interrupted, it is resumed by running it again: rows already under the
//! newest key are skipped, and no new key is made while any row is still
//! under an older one. Old keys stay in `sealed_secrets`, so rows a daemon
//! wrote under an old key in the meantime still verify; a second run
//! rewrites them.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use indicatif::ProgressBar;
use rust_decimal::Decimal;

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::integrity::{CardValues, PostingValues, RowKeys};
use crate::store::keys::DayKeyRow;
use crate::store::protected::{
    remac_sql, select_all, select_batch, LevelRow, MemberRow, OperatorRow, Protected, SessionRow,
};
use crate::store::terminals::TerminalRow;

const CARD_BATCH: i64 = 500;
const MEMBER_BATCH: i64 = 5_000;

#[derive(Debug, Default, serde::Serialize)]
pub struct RekeyReport {
    pub key_id: String,
    pub rewritten: u64,
    pub already: u64,
    /// Rows that failed their check under every known key: left as they are.
    pub refused: Vec<String>,
}

/// How many rows are not under the newest key.
pub async fn rows_behind(pool: &Pool, key_id: &str) -> anyhow::Result<i64> {
    let c = pool.get().await?;
    Ok(c.query_one(
        "SELECT (SELECT count(*) FROM cards WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM postings WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM members WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM terminals WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM audit WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM operators WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM levels WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM day_keys WHERE mac_key_id IS DISTINCT FROM $1)
              + (SELECT count(*) FROM sessions WHERE mac_key_id IS DISTINCT FROM $1)",
        &[&key_id],
    )
    .await?
    .get(0))
}

/// Re-MACs every row not under the current key of `keys`.
///
/// `adopt`: rows with no MAC at all (a database from before tamper
/// evidence) are trusted as they are and MACed, chains and sealed copies
/// included; rows with a MAC must still verify.
pub async fn rekey(
    pool: &Pool,
    keys: &RowKeys,
    adopt: bool,
    pb: &ProgressBar,
) -> anyhow::Result<RekeyReport> {
    let kid = keys.current_id();
    let mut rep = RekeyReport {
        key_id: kid.clone(),
        ..Default::default()
    };
    small_tables(pool, keys, &kid, adopt, &mut rep, pb).await?;
    cards(pool, keys, &kid, adopt, &mut rep, pb).await?;
    members(pool, keys, &kid, adopt, &mut rep, pb).await?;
    audit(pool, keys, &kid, adopt, &mut rep, pb).await?;
    Ok(rep)
}

/// Re-MACs, in `tx`, those of `rows` (of `T`) not under `kid` yet that
/// verify (or, with `adopt`, have no MAC at all).
async fn remac<T: Protected>(
    tx: &Transaction<'_>,
    rows: &[Row],
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut key_cols: Vec<Vec<String>> = vec![Vec::new(); T::KEY.len()];
    let mut macs: Vec<Vec<u8>> = Vec::new();
    for r in rows {
        pb.inc(1);
        let row = T::decode(r);
        let key = row.mac_key_id().map(str::to_owned);
        if rep.sort_row(
            kid,
            adopt,
            &key,
            || row.mac_ok(keys),
            || format!("{} {}", T::TABLE, row.label()),
        ) {
            macs.push(keys.mac(&row.image(), None));
            for (col, v) in key_cols.iter_mut().zip(row.key()) {
                col.push(v);
            }
        }
    }
    rep.rewritten += macs.len() as u64;
    let mut params: Vec<&(dyn ToSql + Sync)> =
        key_cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    params.push(&macs);
    params.push(&kid);
    tx.execute(&remac_sql::<T>(), &params).await?;
    Ok(())
}

/// Every row of `T`, locked, re-MACed in `tx`.
async fn remac_all<T: Protected>(
    tx: &Transaction<'_>,
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let rows = tx.query(&select_all::<T>(true), &[]).await?;
    remac::<T>(tx, &rows, keys, kid, adopt, rep, pb).await
}

/// The tables of single rows, each group in one transaction: terminals
/// first (every request reads its terminal, so a daemon meets the new key
/// at once), then operators and levels, then day keys and sessions (day
/// keys locked first, as a revocation does).
async fn small_tables(
    pool: &Pool,
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    remac_all::<TerminalRow>(&tx, keys, kid, adopt, rep, pb).await?;
    tx.commit().await?;
    let tx = c.transaction().await?;
    remac_all::<OperatorRow>(&tx, keys, kid, adopt, rep, pb).await?;
    remac_all::<LevelRow>(&tx, keys, kid, adopt, rep, pb).await?;
    tx.commit().await?;
    let tx = c.transaction().await?;
    remac_all::<DayKeyRow>(&tx, keys, kid, adopt, rep, pb).await?;
    remac_all::<SessionRow>(&tx, keys, kid, adopt, rep, pb).await?;
    tx.commit().await?;
    Ok(())
}

async fn cards(
    pool: &Pool,
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut after = String::new();
    loop {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx
            .query(
                "SELECT card_no, member_id, status, balance, points, pin_hash, pin_salt,
                        pin_fail_count, chain_len, last_mac, row_mac, mac_key_id
                   FROM cards WHERE card_no > $1 ORDER BY card_no LIMIT $2 FOR UPDATE",
                &[&after, &CARD_BATCH],
            )
            .await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        after = last.get(0);
        let nos: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let posts = tx
            .query(
                "SELECT card_no, txn_id, terminal_id, order_no, op, balance_delta, points_delta,
                        balance, points, amount, discount, charged, business_day::text,
                        floor(extract(epoch FROM posted_at) * 1000)::bigint, row_mac,
                        mac_key_id, posting_id
                   FROM postings WHERE card_no = ANY ($1) ORDER BY card_no, posting_id",
                &[&nos],
            )
            .await?;
        let mut by_card: BTreeMap<String, Vec<&tokio_postgres::Row>> = BTreeMap::new();
        for p in &posts {
            by_card.entry(p.get(0)).or_default().push(p);
        }
        let (mut p_card, mut p_id, mut p_mac) = (vec![], vec![], vec![]);
        let (mut c_no, mut c_mac, mut c_last, mut c_sealed) = (vec![], vec![], vec![], vec![]);
        let mut c_len: Vec<i64> = vec![];
        for r in &rows {
            let no: String = r.get(0);
            let mut v = CardValues {
                card_no: no.clone(),
                member_id: r.get(1),
                status: r.get(2),
                balance: r.get::<_, Decimal>(3),
                points: r.get(4),
                pin_hash: r.get(5),
                pin_salt: r.get(6),
                pin_fail_count: i64::from(r.get::<_, i32>(7)),
                chain_len: r.get(8),
                last_mac: r.get(9),
            };
            let ps = by_card.remove(&no).unwrap_or_default();
            pb.inc(1 + ps.len() as u64);
            let card_key: Option<String> = r.get(11);
            let all_new = card_key.as_deref() == Some(kid)
                && ps.iter().all(|p| p.get::<_, Option<&str>>(15) == Some(kid));
            if all_new {
                rep.already += 1 + ps.len() as u64;
                continue;
            }
            // Verify the old chain and card, then build the new chain.
            let legacy = adopt && card_key.is_none();
            let mut ok = legacy || keys.verify(card_key.as_deref(), &v.image(), None, r.get(10));
            let (mut old_head, mut new_head): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
            let mut new_macs = Vec::with_capacity(ps.len());
            for p in &ps {
                let pv = PostingValues {
                    card_no: p.get(0),
                    txn_id: p.get(1),
                    terminal_id: p.get(2),
                    order_no: p.get(3),
                    op: p.get(4),
                    balance_delta: p.get(5),
                    points_delta: p.get(6),
                    balance: p.get(7),
                    points: p.get(8),
                    amount: p.get(9),
                    discount: p.get(10),
                    charged: p.get(11),
                    business_day: p.get(12),
                    posted_at_ms: p.get(13),
                };
                let mac: Option<Vec<u8>> = p.get(14);
                let pk: Option<String> = p.get(15);
                ok = ok
                    && (adopt && pk.is_none()
                        || keys.verify(
                            pk.as_deref(),
                            &pv.image(),
                            old_head.as_deref(),
                            mac.as_deref(),
                        ));
                old_head = mac;
                let m = keys.mac(&pv.image(), new_head.as_deref());
                new_macs.push((p.get::<_, i64>(16), m.clone()));
                new_head = Some(m);
            }
            ok = ok && (legacy || old_head == v.last_mac && ps.len() as i64 == v.chain_len);
            v.chain_len = ps.len() as i64;
            if !ok {
                rep.refused.push(format!("cards {no}"));
                continue;
            }
            for (id, m) in new_macs {
                p_card.push(no.clone());
                p_id.push(id);
                p_mac.push(m);
            }
            v.last_mac = new_head;
            let img = v.image();
            rep.rewritten += 1 + ps.len() as u64;
            c_mac.push(keys.mac(&img, None));
            c_sealed.push(keys.seal(&img));
            c_last.push(v.last_mac.clone());
            c_len.push(v.chain_len);
            c_no.push(no);
        }
        tx.execute(
            "UPDATE postings p SET row_mac = x.mac, mac_key_id = $4
               FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS x(card, id, mac)
              WHERE p.card_no = x.card AND p.posting_id = x.id",
            &[&p_card, &p_id, &p_mac, &kid],
        )
        .await?;
        tx.execute(
            "UPDATE cards c SET row_mac = x.mac, last_mac = x.last, sealed = x.sealed,
                    mac_key_id = $5, chain_len = x.len
               FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[], $6::bigint[])
                    AS x(no, mac, last, sealed, len)
              WHERE c.card_no = x.no",
            &[&c_no, &c_mac, &c_last, &c_sealed, &kid, &c_len],
        )
        .await?;
        tx.commit().await?;
    }
}

/// Members in batches of ids, a transaction each.
async fn members(
    pool: &Pool,
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let sql = select_batch::<MemberRow>();
    let mut after = i64::MIN.to_string();
    loop {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx.query(&sql, &[&after, &MEMBER_BATCH]).await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        after = MemberRow::decode(last).member_id.to_string();
        remac::<MemberRow>(&tx, &rows, keys, kid, adopt, rep, pb).await?;
        tx.commit().await?;
    }
}

async fn audit(
    pool: &Pool,
    keys: &RowKeys,
    kid: &str,
    adopt: bool,
    rep: &mut RekeyReport,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.query_one("SELECT 1 FROM audit_head FOR UPDATE", &[])
        .await?;
    let behind: i64 = tx
        .query_one(
            "SELECT count(*) FROM audit WHERE mac_key_id IS DISTINCT FROM $1",
            &[&kid],
        )
        .await?
        .get(0);
    if behind == 0 {
        tx.commit().await?;
        return Ok(());
    }
    let rows = tx.query(crate::store::audit::CHAIN_SQL, &[]).await?;
    let (mut old_prev, mut new_prev): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let (mut ids, mut macs) = (vec![], vec![]);
    for r in &rows {
        pb.inc(1);
        let (id, img) = crate::store::audit::chain_row(r);
        let mac: Option<Vec<u8>> = r.get(7);
        let key: Option<String> = r.get(8);
        if !trusted(
            adopt,
            &key,
            keys.verify(key.as_deref(), &img, old_prev.as_deref(), mac.as_deref()),
        ) {
            // A broken chain is not re-chained: verify reports it.
            rep.refused.push(format!("audit {id}"));
            tx.rollback().await?;
            return Ok(());
        }
        old_prev = mac;
        let m = keys.mac(&img, new_prev.as_deref());
        new_prev = Some(m.clone());
        ids.push(id);
        macs.push(m);
    }
    rep.rewritten += ids.len() as u64;
    tx.execute(
        "UPDATE audit a SET row_mac = x.mac, mac_key_id = $3
           FROM unnest($1::bigint[], $2::bytea[]) AS x(id, mac) WHERE a.audit_id = x.id",
        &[&ids, &macs, &kid],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET last_mac = $1, last_id = $2",
        &[&new_prev, &ids.last().copied()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

impl RekeyReport {
    /// Sorts one row under key `key`: already under `kid` (counted), failing
    /// its check (listed as `what`), or to be re-MACed (`true`, see [`trusted`]).
    fn sort_row(
        &mut self,
        kid: &str,
        adopt: bool,
        key: &Option<String>,
        verified: impl FnOnce() -> bool,
        what: impl FnOnce() -> String,
    ) -> bool {
        if key.as_deref() == Some(kid) {
            self.already += 1;
            false
        } else if trusted(adopt, key, verified()) {
            true
        } else {
            self.refused.push(what());
            false
        }
    }
}

/// A row may be re-MACed: it verified, or it has no MAC at all and
/// `--adopt-unmaced` was given.
fn trusted(adopt: bool, key: &Option<String>, verified: bool) -> bool {
    verified || adopt && key.is_none()
}
