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

/// How many cards exist whose number starts with `prefix`.
pub async fn count_cards<C: GenericClient>(c: &C, prefix: &str) -> anyhow::Result<i64> {
    let like = format!("{prefix}%");
    Ok(
        c.query_one("SELECT count(*) FROM cards WHERE card_no LIKE $1", &[&like])
            .await?
            .get(0),
    )
}
