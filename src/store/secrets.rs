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

/// Every secret whose name starts with `prefix`, oldest first:
/// `(name, master_key_id, sealed)`.
pub async fn list_prefix<C: GenericClient>(
    c: &C,
    prefix: &str,
) -> Result<Vec<(String, String, Vec<u8>)>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT name, master_key_id, sealed FROM sealed_secrets
              WHERE starts_with(name, $1) ORDER BY created_at, name",
        &[&prefix],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

/// Stores the data key and the first row key together, once: the unique
/// name of the data key makes a racing second creator wait and then store
/// nothing. `Ok(false)` when they existed.
pub async fn insert_row_keys<C: GenericClient>(
    c: &C,
    master_key_id: &str,
    data_sealed: &[u8],
    row_key_name: &str,
    row_sealed: &[u8],
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "WITH d AS (
                 INSERT INTO sealed_secrets (name, master_key_id, sealed)
                 VALUES ('data_key', $1, $2) ON CONFLICT (name) DO NOTHING RETURNING 1)
             INSERT INTO sealed_secrets (name, master_key_id, sealed)
             SELECT $3, $1, $4 FROM d",
            &[&master_key_id, &data_sealed, &row_key_name, &row_sealed],
        )
        .await?;
    Ok(n == 1)
}
