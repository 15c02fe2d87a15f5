//! One decrypted txn, one database transaction: the once-only `ts` is used up
//! in the same transaction as the operation, so a replay is refused after a
//! restart and on every instance, and a refused posting still spends its `ts`
//! without a second commit.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;

use crate::error::{Error, Result};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::op::Op;
use crate::protocol::xml::{Row, Rows};
use crate::store::seen_ts;

/// What every txn may need besides its request: the configuration (ledger
/// rules, business day) and the key of password and PIN hashes.
pub struct TxnEnv {
    pub config: std::sync::Arc<crate::config::Config>,
    pub hash_key: crate::crypto::Secret32,
}

/// Who sent the txn and when, as established by the protocol layer.
#[derive(Clone, Debug)]
pub struct TxnContext {
    pub terminal: String,
    pub store_id: String,
    pub ts: i64,
    pub now: DateTime<Utc>,
}

/// Runs `form` for `ctx`. The `ts` is recorded first (1006 when used before);
/// a refusal (an `Error::Refused`) commits the `ts` and whatever the refusal
/// itself must write (a wrong-PIN count); any other error rolls back all.
pub async fn run(pool: &Pool, env: &TxnEnv, ctx: &TxnContext, form: &InnerForm) -> Result<Rows> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if !seen_ts::record(&tx, &ctx.terminal, ctx.ts).await? {
        return Err(Errno::TsUsed.into());
    }
    match dispatch(&tx, env, ctx, form).await {
        Ok(rows) => {
            tx.commit().await?;
            Ok(rows)
        }
        Err(Error::Refused(e)) => {
            tx.commit().await?;
            Err(Error::Refused(e))
        }
        Err(other) => Err(other),
    }
}

/// Records a `ts` on its own, for requests refused after their MAC passed but
/// before an operation could run (1008, a bad inner form). `Ok(false)`: used before.
pub async fn spend_ts(pool: &Pool, terminal: &str, ts: i64) -> Result<bool> {
    let client = pool.get().await?;
    Ok(seen_ts::record(&client, terminal, ts).await?)
}

async fn dispatch(
    tx: &Transaction<'_>,
    _env: &TxnEnv,
    _ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Rows> {
    match form.op {
        Op::Query => query(tx, form).await,
        // The ledger work brings the other operations; until then they are
        // refused plainly, never answered with a made-up result.
        _ => Err(Error::internal(format!(
            "op {} is not implemented yet",
            form.op.as_str()
        ))),
    }
}

async fn query(tx: &Transaction<'_>, form: &InnerForm) -> Result<Rows> {
    let card = form.attr1.as_deref().unwrap_or_default();
    let row = tx
        .query_opt(
            "SELECT c.balance, c.points, m.level, c.status, c.pin_hash IS NOT NULL
               FROM cards c JOIN members m USING (member_id) WHERE c.card_no = $1",
            &[&card],
        )
        .await?
        .ok_or(Errno::CardNotFound)?;
    let balance: rust_decimal::Decimal = row.get(0);
    let points: i64 = row.get(1);
    let level: String = row.get(2);
    let status: String = row.get(3);
    let has_pin: bool = row.get(4);
    match status.as_str() {
        "lost" => return Err(Errno::CardLost.into()),
        "locked" | "closed" => return Err(Errno::CardLocked.into()),
        _ => {}
    }
    if has_pin {
        return Err(Error::internal("card PINs come with the ledger work"));
    }
    Ok(Rows(vec![Row::new()
        .with("card", card)
        .with("balance", format!("{:.2}", balance))
        .with("points", points.to_string())
        .with("level", level)
        .with("status", status)]))
}
