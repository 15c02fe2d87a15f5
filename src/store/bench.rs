//! SQL that only the load benchmark (`cardswitch bench`) issues: a database
//! of its own for pgbench, and facts read for the report.

use deadpool_postgres::GenericClient;
use tokio_postgres::NoTls;

/// Drops and creates the database `name` on the server of `pg` (connected
/// through its `postgres` database); the benchmark's pgbench database.
pub async fn recreate_database(pg: &tokio_postgres::Config, name: &str) -> anyhow::Result<()> {
    let mut admin = pg.clone();
    admin.dbname("postgres");
    let (client, conn) = admin.connect(NoTls).await?;
    let conn = tokio::spawn(conn);
    let quoted = name.replace('"', "\"\"");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        client
            .batch_execute(&format!("DROP DATABASE \"{quoted}\""))
            .await?;
    }
    client
        .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
        .await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// The server's settings that decide what a benchmark measures.
pub async fn server_facts<C: GenericClient>(c: &C) -> anyhow::Result<serde_json::Value> {
    let mut facts = serde_json::Map::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
        "max_connections",
    ] {
        let row = c.query_one("SELECT current_setting($1)", &[&name]).await?;
        facts.insert(name.into(), serde_json::Value::String(row.get(0)));
    }
    Ok(facts.into())
}

/// How many cards exist whose number starts with `prefix` and sorts before
/// `below` (byte order).
pub async fn count_cards_below<C: GenericClient>(
    c: &C,
    prefix: &str,
    below: &str,
) -> anyhow::Result<i64> {
    let like = format!("{prefix}%");
    Ok(c.query_one(
        "SELECT count(*) FROM cards WHERE card_no LIKE $1 AND card_no COLLATE \"C\" < $2",
        &[&like, &below],
    )
    .await?
    .get(0))
}

/// The numbers of the cards in `[from, to)` (byte order) that exist.
pub async fn cards_between<C: GenericClient>(
    c: &C,
    from: &str,
    to: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(c.query(
        "SELECT card_no FROM cards
              WHERE card_no COLLATE \"C\" >= $1 AND card_no COLLATE \"C\" < $2",
        &[&from, &to],
    )
    .await?
    .into_iter()
    .map(|r| r.get(0))
    .collect())
}

/// Ids for `n` seeded cards, taken from the sequences the ledger takes them
/// from: a member id each, and two txn ids and two posting ids each (its
/// register and its topup), posting ids ascending.
pub async fn take_seed_ids<C: GenericClient>(
    c: &C,
    n: usize,
) -> anyhow::Result<(Vec<i64>, Vec<i64>, Vec<i64>)> {
    let n = n as i64;
    let take = |seq: &'static str, k: i64| async move {
        let sql = format!("SELECT nextval('{seq}') FROM generate_series(1, $1::bigint)");
        let mut ids: Vec<i64> = c
            .query(&sql, &[&k])
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort_unstable();
        Ok::<_, anyhow::Error>(ids)
    };
    Ok((
        take("members_member_id_seq", n).await?,
        take("txn_id_seq", 2 * n).await?,
        take("posting_id_seq", 2 * n).await?,
    ))
}

/// Seeded rows, column by column: members, cards and postings exactly as
/// the ledger's write statement inserts them, MACs and sealed copies
/// computed by the caller with `integrity`.
#[derive(Default)]
pub struct SeedRows {
    pub m_id: Vec<i64>,
    pub m_name: Vec<String>,
    pub m_phone: Vec<String>,
    pub m_level: Vec<String>,
    pub m_mac: Vec<Vec<u8>>,
    pub m_key: Vec<String>,
    pub c_no: Vec<String>,
    pub c_member: Vec<i64>,
    pub c_status: Vec<String>,
    pub c_balance: Vec<rust_decimal::Decimal>,
    pub c_points: Vec<i64>,
    pub c_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub c_mac: Vec<Vec<u8>>,
    pub c_key: Vec<String>,
    pub c_sealed: Vec<Vec<u8>>,
    pub c_last: Vec<Vec<u8>>,
    pub c_len: Vec<i64>,
    pub p_id: Vec<i64>,
    pub p_txn: Vec<i64>,
    pub p_card: Vec<String>,
    pub p_terminal: Vec<String>,
    pub p_order: Vec<String>,
    pub p_op: Vec<String>,
    pub p_bdelta: Vec<rust_decimal::Decimal>,
    pub p_pdelta: Vec<i64>,
    pub p_balance: Vec<rust_decimal::Decimal>,
    pub p_points: Vec<i64>,
    pub p_amount: Vec<rust_decimal::Decimal>,
    pub p_discount: Vec<rust_decimal::Decimal>,
    pub p_charged: Vec<rust_decimal::Decimal>,
    pub p_day: Vec<chrono::NaiveDate>,
    pub p_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub p_detail: Vec<String>,
    pub p_mac: Vec<Vec<u8>>,
    pub p_key: Vec<String>,
}

/// Inserts one batch of seeded rows in one transaction (members, then their
/// cards, then the cards' postings), each table one multi-row INSERT.
pub async fn insert_seed(c: &mut deadpool_postgres::Object, r: &SeedRows) -> anyhow::Result<()> {
    let tx = c.transaction().await?;
    let n = tx
        .execute(
            "INSERT INTO members (member_id, name, phone, level, row_mac, mac_key_id)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                  $5::bytea[], $6::text[])",
            &[
                &r.m_id, &r.m_name, &r.m_phone, &r.m_level, &r.m_mac, &r.m_key,
            ],
        )
        .await?;
    let c_n = tx
        .execute(
            "INSERT INTO cards (card_no, member_id, status, balance, points, opened_at,
                    row_mac, mac_key_id, sealed, last_mac, chain_len)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::numeric[],
                                  $5::bigint[], $6::timestamptz[], $7::bytea[], $8::text[],
                                  $9::bytea[], $10::bytea[], $11::bigint[])",
            &[
                &r.c_no,
                &r.c_member,
                &r.c_status,
                &r.c_balance,
                &r.c_points,
                &r.c_at,
                &r.c_mac,
                &r.c_key,
                &r.c_sealed,
                &r.c_last,
                &r.c_len,
            ],
        )
        .await?;
    let p_n = tx
        .execute(
            "INSERT INTO postings (posting_id, txn_id, card_no, terminal_id, order_no, op,
                    balance_delta, points_delta, balance, points, amount, discount, charged,
                    business_day, posted_at, detail, row_mac, mac_key_id)
             SELECT i, t, c, te, o, op, bd, pd, b, p, a, d, ch, day, at, de::jsonb, m, k
               FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::numeric[], $8::bigint[], $9::numeric[],
                           $10::bigint[], $11::numeric[], $12::numeric[], $13::numeric[],
                           $14::date[], $15::timestamptz[], $16::text[], $17::bytea[],
                           $18::text[])
                    AS x(i, t, c, te, o, op, bd, pd, b, p, a, d, ch, day, at, de, m, k)",
            &[
                &r.p_id,
                &r.p_txn,
                &r.p_card,
                &r.p_terminal,
                &r.p_order,
                &r.p_op,
                &r.p_bdelta,
                &r.p_pdelta,
                &r.p_balance,
                &r.p_points,
                &r.p_amount,
                &r.p_discount,
                &r.p_charged,
                &r.p_day,
                &r.p_at,
                &r.p_detail,
                &r.p_mac,
                &r.p_key,
            ],
        )
        .await?;
    let want = (r.m_id.len(), r.c_no.len(), r.p_id.len());
    if (n as usize, c_n as usize, p_n as usize) != want {
        anyhow::bail!("seed batch wrote {n}/{c_n}/{p_n} rows, expected {want:?}");
    }
    tx.commit().await?;
    Ok(())
}

/// After a bulk seed: the grown tables vacuumed (as autovacuum keeps a
/// live ledger's: the visibility map set, so a card's chain count is an
/// index-only scan) with fresh planner statistics, and a checkpoint so the
/// seed's WAL is not flushed during the timed runs (the checkpoint needs a
/// superuser or `pg_checkpoint`; skipped otherwise).
pub async fn settle_after_seed<C: GenericClient>(c: &C) -> anyhow::Result<bool> {
    c.batch_execute("VACUUM (ANALYZE) members, cards, postings")
        .await?;
    Ok(c.batch_execute("CHECKPOINT").await.is_ok())
}
