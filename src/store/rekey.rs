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

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::integrity::{CardValues, PostingValues, RowKeys};
use crate::store::keys::DayKeyRow;
use crate::store::protected::{
    card_values, posting_values, remac_sql, select_all, select_batch, LevelRow, MemberRow,
    OperatorRow, OrderRow, PointsLotRow, Protected, SessionRow, CARD_COLUMNS, POSTING_COLUMNS,
};
use crate::store::terminals::TerminalRow;

const CARD_BATCH: i64 = 500;
const ROW_BATCH: i64 = 5_000;

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

/// What every step of a rotation works with.
#[derive(Clone, Copy)]
struct Run<'a> {
    pool: &'a Pool,
    keys: &'a RowKeys,
    /// The current row key's id: the one every row ends up under.
    kid: &'a str,
    /// Trust rows with no MAC at all (`--adopt-unmaced`).
    adopt: bool,
    pb: &'a ProgressBar,
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
    let run = Run {
        pool,
        keys,
        kid: &kid,
        adopt,
        pb,
    };
    small_tables(&run, &mut rep).await?;
    cards(&run, &mut rep).await?;
    by_id::<MemberRow>(&run, &mut rep).await?;
    orders(&run, &mut rep).await?;
    by_id::<PointsLotRow>(&run, &mut rep).await?;
    audit(&run, &mut rep).await?;
    Ok(rep)
}

/// Re-MACs, in `tx`, those of `rows` (of `T`) not under `kid` yet that
/// verify (or, with `adopt`, have no MAC at all).
async fn remac<T: Protected>(
    tx: &Transaction<'_>,
    rows: &[Row],
    run: &Run<'_>,
    rep: &mut RekeyReport,
) -> anyhow::Result<()> {
    let Run {
        keys,
        kid,
        adopt,
        pb,
        ..
    } = *run;
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
    run: &Run<'_>,
    rep: &mut RekeyReport,
) -> anyhow::Result<()> {
    let rows = tx.query(&select_all::<T>(true), &[]).await?;
    remac::<T>(tx, &rows, run, rep).await
}

/// The tables of single rows, each group in one transaction: terminals
/// first (every request reads its terminal, so a daemon meets the new key
/// at once), then operators and levels, then day keys and sessions (day
/// keys locked first, as a revocation does).
async fn small_tables(run: &Run<'_>, rep: &mut RekeyReport) -> anyhow::Result<()> {
    let pool = run.pool;
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    remac_all::<TerminalRow>(&tx, run, rep).await?;
    tx.commit().await?;
    let tx = c.transaction().await?;
    remac_all::<OperatorRow>(&tx, run, rep).await?;
    remac_all::<LevelRow>(&tx, run, rep).await?;
    tx.commit().await?;
    let tx = c.transaction().await?;
    remac_all::<DayKeyRow>(&tx, run, rep).await?;
    remac_all::<SessionRow>(&tx, run, rep).await?;
    tx.commit().await?;
    Ok(())
}

/// Cards in batches of card numbers, each batch one transaction holding the
/// cards' row locks (the ledger's own lock, so no posting interleaves).
async fn cards(run: &Run<'_>, rep: &mut RekeyReport) -> anyhow::Result<()> {
    let Run {
        pool,
        keys,
        kid,
        adopt,
        pb,
    } = *run;
    let cards_sql = format!(
        "SELECT {CARD_COLUMNS} FROM cards c WHERE c.card_no > $1
          ORDER BY c.card_no LIMIT $2 FOR UPDATE OF c"
    );
    let postings_sql = format!(
        "SELECT {POSTING_COLUMNS} FROM postings WHERE card_no = ANY ($1)
          ORDER BY card_no, posting_id"
    );
    let mut after = String::new();
    loop {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx.query(&cards_sql, &[&after, &CARD_BATCH]).await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        after = last.get(0);
        let nos: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let posts = tx.query(&postings_sql, &[&nos]).await?;
        let mut by_card: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for p in &posts {
            by_card.entry(p.get(0)).or_default().push(p);
        }
        let mut batch = CardBatch::default();
        for r in &rows {
            let ps = by_card.remove(&r.get::<_, String>(0)).unwrap_or_default();
            pb.inc(1 + ps.len() as u64);
            batch.add(rechain(keys, kid, adopt, r, &ps), rep);
        }
        batch.write(&tx, kid).await?;
        tx.commit().await?;
    }
}

/// What one card's re-MAC comes to.
enum Rechained {
    /// The card and all its postings are under the new key already.
    Already(u64),
    /// The card or its chain does not verify: left for `verify`.
    Refused(String),
    Rewritten {
        card: Box<CardValues>,
        mac: Vec<u8>,
        sealed: Vec<u8>,
        /// `(posting_id, new MAC)` in chain order (the place is the
        /// index plus one).
        postings: Vec<(i64, Vec<u8>)>,
    },
}

/// Verifies card `r`'s MAC and its chain `ps` under the old keys, and MACs
/// the chain anew under the current key.
fn rechain(keys: &RowKeys, kid: &str, adopt: bool, r: &Row, ps: &[&Row]) -> Rechained {
    let mut v = card_values(r);
    let card_key: Option<String> = r.get(11);
    // A chain from before migration 0016 is rewritten with its places.
    let all_new = card_key.as_deref() == Some(kid)
        && ps.iter().all(|p| {
            p.get::<_, Option<&str>>(15) == Some(kid) && p.get::<_, Option<i64>>(17).is_some()
        });
    if all_new {
        return Rechained::Already(1 + ps.len() as u64);
    }
    let legacy = adopt && card_key.is_none();
    let mut ok = legacy || keys.verify(card_key.as_deref(), &v.image(), None, r.get(10));
    let (mut old_head, mut new_head): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut postings = Vec::with_capacity(ps.len());
    for (at, p) in ps.iter().enumerate() {
        let pv = posting_values(p);
        let image = pv.image();
        let mac: Option<Vec<u8>> = p.get(14);
        let pk: Option<&str> = p.get(15);
        ok = ok
            && (adopt && pk.is_none()
                || keys.verify(pk, &image, old_head.as_deref(), mac.as_deref()));
        old_head = mac;
        let placed = PostingValues {
            chain_pos: Some(at as i64 + 1),
            ..pv
        };
        let m = keys.mac(&placed.image(), new_head.as_deref());
        postings.push((p.get::<_, i64>(16), m.clone()));
        new_head = Some(m);
    }
    ok = ok && (legacy || old_head == v.last_mac && ps.len() as i64 == v.chain_len);
    if !ok {
        return Rechained::Refused(format!("cards {}", v.card_no));
    }
    v.chain_len = ps.len() as i64;
    v.last_mac = new_head;
    let img = v.image();
    Rechained::Rewritten {
        mac: keys.mac(&img, None),
        sealed: keys.seal(&img),
        card: Box::new(v),
        postings,
    }
}

/// The new MACs of one batch, as the two UPDATEs' arrays.
#[derive(Default)]
struct CardBatch {
    p_card: Vec<String>,
    p_id: Vec<i64>,
    p_mac: Vec<Vec<u8>>,
    p_pos: Vec<i64>,
    c_no: Vec<String>,
    c_mac: Vec<Vec<u8>>,
    c_last: Vec<Option<Vec<u8>>>,
    c_sealed: Vec<Vec<u8>>,
    c_len: Vec<i64>,
}

impl CardBatch {
    fn add(&mut self, r: Rechained, rep: &mut RekeyReport) {
        match r {
            Rechained::Already(n) => rep.already += n,
            Rechained::Refused(what) => rep.refused.push(what),
            Rechained::Rewritten {
                card,
                mac,
                sealed,
                postings,
            } => {
                let card = *card;
                rep.rewritten += 1 + postings.len() as u64;
                for (at, (id, m)) in postings.into_iter().enumerate() {
                    self.p_card.push(card.card_no.clone());
                    self.p_id.push(id);
                    self.p_mac.push(m);
                    self.p_pos.push(at as i64 + 1);
                }
                self.c_mac.push(mac);
                self.c_sealed.push(sealed);
                self.c_last.push(card.last_mac);
                self.c_len.push(card.chain_len);
                self.c_no.push(card.card_no);
            }
        }
    }

    async fn write(&self, tx: &Transaction<'_>, kid: &str) -> anyhow::Result<()> {
        tx.execute(
            "UPDATE postings p SET row_mac = x.mac, mac_key_id = $4, chain_pos = x.pos
               FROM unnest($1::text[], $2::bigint[], $3::bytea[], $5::bigint[])
                    AS x(card, id, mac, pos)
              WHERE p.card_no = x.card AND p.posting_id = x.id",
            &[&self.p_card, &self.p_id, &self.p_mac, &kid, &self.p_pos],
        )
        .await?;
        tx.execute(
            "UPDATE cards c SET row_mac = x.mac, last_mac = x.last, sealed = x.sealed,
                    mac_key_id = $5, chain_len = x.len
               FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[], $6::bigint[])
                    AS x(no, mac, last, sealed, len)
              WHERE c.card_no = x.no",
            &[
                &self.c_no,
                &self.c_mac,
                &self.c_last,
                &self.c_sealed,
                &kid,
                &self.c_len,
            ],
        )
        .await?;
        Ok(())
    }
}

/// The rows of a table keyed by one bigint (members, lots) in batches of
/// ids, a transaction each.
async fn by_id<T: Protected>(run: &Run<'_>, rep: &mut RekeyReport) -> anyhow::Result<()> {
    let pool = run.pool;
    let sql = select_batch::<T>();
    let mut after = i64::MIN.to_string();
    loop {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx.query(&sql, &[&after, &ROW_BATCH]).await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        after = T::decode(last).key().remove(0);
        remac::<T>(&tx, &rows, run, rep).await?;
        tx.commit().await?;
    }
}

/// Orders in batches of (terminal, order number), a transaction each, the
/// rows locked as a reverse or refund locks its original.
async fn orders(run: &Run<'_>, rep: &mut RekeyReport) -> anyhow::Result<()> {
    let pool = run.pool;
    let sql = crate::store::protected::select_order_batch();
    let mut after = (String::new(), String::new());
    loop {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx.query(&sql, &[&after.0, &after.1, &ROW_BATCH]).await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        let last = OrderRow::decode(last).values;
        after = (last.terminal_id, last.order_no);
        remac::<OrderRow>(&tx, &rows, run, rep).await?;
        tx.commit().await?;
    }
}

async fn audit(run: &Run<'_>, rep: &mut RekeyReport) -> anyhow::Result<()> {
    let Run {
        pool,
        keys,
        kid,
        adopt,
        pb,
    } = *run;
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
