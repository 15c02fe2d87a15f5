//! The audit trail: ops actions, refused requests, failed logins.

use deadpool_postgres::GenericClient;

/// Appends one audit row. `source` is the client address for requests, the
/// OS user (if known) for ops actions.
pub async fn insert<C: GenericClient>(
    c: &C,
    kind: &str,
    terminal: Option<&str>,
    actor: Option<&str>,
    source: Option<&str>,
    detail: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO audit (kind, terminal_id, actor, source, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&kind, &terminal, &actor, &source, &detail],
    )
    .await?;
    Ok(())
}
