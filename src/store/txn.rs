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
use crate::protocol::xml::Rows;
use crate::store::seen_ts;

/// What every txn may need besides its request: the configuration (ledger
/// rules, business day) and the key of password and PIN hashes.
pub struct TxnEnv {
    pub config: std::sync::Arc<crate::config::Config>,
    pub hash_key: crate::crypto::Secret32,
    /// Row MACs and sealed copies (issue 5).
    pub row_keys: std::sync::Arc<crate::integrity::RowKeys>,
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
/// A deadlock or serialization failure (which the ledger's lock order should
/// never cause) is retried a few times before it is answered 3002.
pub async fn run(pool: &Pool, env: &TxnEnv, ctx: &TxnContext, form: &InnerForm) -> Result<Rows> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run_once(pool, env, ctx, form).await {
            Err(Error::Db(e)) if attempt < 4 && is_retryable(&e) => {
                tracing::warn!(error = %e, attempt, "txn retried");
                continue;
            }
            Err(Error::Tampered(what)) => {
                tampered(pool, env, ctx, form, &what).await;
                return Err(Error::Tampered(what));
            }
            Err(Error::Internal(m)) if m == STALE => {
                if attempt < 4 {
                    continue;
                }
                return Err(Errno::Unavailable.into());
            }
            other => return other,
        }
    }
}

/// A row failed its integrity check: the posting's transaction is rolled
/// back (nothing changed); the finding is logged at error level and audited
/// in a transaction of its own.
async fn tampered(pool: &Pool, env: &TxnEnv, ctx: &TxnContext, form: &InnerForm, what: &str) {
    tracing::error!(
        terminal = ctx.terminal,
        op = form.op.as_str(),
        finding = what,
        "integrity check failed: request refused (3001)"
    );
    let detail = serde_json::json!({"finding": what, "op": form.op.as_str()});
    let result = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        crate::store::audit::insert(
            &client,
            &env.row_keys,
            "integrity.tampered",
            Some(&ctx.terminal),
            None,
            None,
            &detail,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot audit an integrity failure");
    }
}

/// The marker of a pooled connection found closed before BEGIN.
const STALE: &str = "stale pooled connection";

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

async fn run_once(pool: &Pool, env: &TxnEnv, ctx: &TxnContext, form: &InnerForm) -> Result<Rows> {
    let mut client = pool.get().await?;
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        // A pooled connection the server closed (a terminated backend, a
        // restart): nothing was sent, so a fresh one may be tried.
        Err(e) if e.is_closed() => return Err(Error::Internal(STALE.into())),
        Err(e) => return Err(e.into()),
    };
    match dispatch(&tx, env, ctx, form).await {
        Ok(rows) => {
            tx.commit().await?;
            Ok(rows)
        }
        Err(Error::Refused(Errno::TsUsed)) => Err(Errno::TsUsed.into()),
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

/// Every op of protocol.md §6: the ledger records the `ts` in its first
/// statement (one round trip less), then runs the op.
async fn dispatch(
    tx: &Transaction<'_>,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Rows> {
    crate::store::ledger::execute(tx, env, ctx, form).await
}
