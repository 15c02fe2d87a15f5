//! Sealed server secrets (the hash key, …): stored only as AES-GCM blobs
//! under the master key; this module moves the blobs, `keys` seals and opens.

use deadpool_postgres::GenericClient;

/// The sealed blob of `name` and the id of the master key it is sealed under.
pub async fn get<C: GenericClient>(
    c: &C,
    name: &str,
) -> Result<Option<(String, Vec<u8>)>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT master_key_id, sealed FROM sealed_secrets WHERE name = $1",
        &[&name],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

/// Stores a new secret; `Ok(false)` if one of that name exists (never replaced).
pub async fn insert<C: GenericClient>(
    c: &C,
    name: &str,
    master_key_id: &str,
    sealed: &[u8],
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO sealed_secrets (name, master_key_id, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &master_key_id, &sealed],
        )
        .await?;
    Ok(n == 1)
}
