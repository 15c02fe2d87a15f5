//! Operators and levels, as the CLI manages them. Manager PINs are stored
//! only as keyed hashes (domain `DOMAIN_MANAGER_PIN`, a salt per row).

use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;

use crate::crypto::keyed_hash::{keyed_hash, random_salt, DOMAIN_MANAGER_PIN};
use crate::crypto::Secret32;

/// An operator as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorInfo {
    pub store_id: String,
    pub operator_id: String,
    pub role: String,
    pub status: String,
    pub has_pin: bool,
    pub pin_fail_count: i32,
}

fn pin_columns(hash_key: &Secret32, pin: Option<&str>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match pin {
        None => (None, None),
        Some(p) => {
            let salt = random_salt();
            let h = keyed_hash(hash_key, DOMAIN_MANAGER_PIN, &salt, p.as_bytes());
            (Some(h.to_vec()), Some(salt.to_vec()))
        }
    }
}

/// Adds an operator to a store. A manager needs a PIN (`[0-9]{4,12}`).
pub async fn add_operator<C: GenericClient>(
    c: &C,
    hash_key: &Secret32,
    store_id: &str,
    operator_id: &str,
    role: &str,
    pin: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        role == "cashier" || role == "manager",
        "role must be cashier or manager"
    );
    anyhow::ensure!(
        crate::protocol::grammar::operator(operator_id).is_ok(),
        "operator ids are [A-Za-z0-9_-]{{1,32}}"
    );
    if let Some(p) = pin {
        anyhow::ensure!(
            crate::protocol::attr2::pin(p).is_ok(),
            "a PIN is 4 to 12 digits"
        );
    }
    anyhow::ensure!(role != "manager" || pin.is_some(), "a manager needs a PIN");
    let (hash, salt) = pin_columns(hash_key, pin);
    c.execute(
        "INSERT INTO operators (store_id, operator_id, role, pin_hash, pin_salt)
         VALUES ($1, $2, $3, $4, $5)",
        &[&store_id, &operator_id, &role, &hash, &salt],
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot add operator {operator_id} to store {store_id}: {e}"))?;
    Ok(())
}

pub async fn list_operators<C: GenericClient>(
    c: &C,
    store_id: Option<&str>,
) -> anyhow::Result<Vec<OperatorInfo>> {
    let rows = c
        .query(
            "SELECT store_id, operator_id, role, status, pin_hash IS NOT NULL, pin_fail_count
               FROM operators WHERE $1::text IS NULL OR store_id = $1
              ORDER BY store_id, operator_id",
            &[&store_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OperatorInfo {
            store_id: r.get(0),
            operator_id: r.get(1),
            role: r.get(2),
            status: r.get(3),
            has_pin: r.get(4),
            pin_fail_count: r.get(5),
        })
        .collect())
}

/// Enables or disables an operator; enabling also clears its PIN counter.
pub async fn set_operator_status<C: GenericClient>(
    c: &C,
    store_id: &str,
    operator_id: &str,
    active: bool,
) -> anyhow::Result<()> {
    let status = if active { "active" } else { "disabled" };
    let n = c
        .execute(
            "UPDATE operators SET status = $3,
                    pin_fail_count = CASE WHEN $3 = 'active' THEN 0 ELSE pin_fail_count END
              WHERE store_id = $1 AND operator_id = $2",
            &[&store_id, &operator_id, &status],
        )
        .await?;
    anyhow::ensure!(n == 1, "no operator {operator_id} in store {store_id}");
    Ok(())
}

/// Sets a new PIN, clears the counter and re-enables the operator.
pub async fn reset_pin<C: GenericClient>(
    c: &C,
    hash_key: &Secret32,
    store_id: &str,
    operator_id: &str,
    pin: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::protocol::attr2::pin(pin).is_ok(),
        "a PIN is 4 to 12 digits"
    );
    let (hash, salt) = pin_columns(hash_key, Some(pin));
    let n = c
        .execute(
            "UPDATE operators SET pin_hash = $3, pin_salt = $4, pin_fail_count = 0,
                    status = 'active'
              WHERE store_id = $1 AND operator_id = $2",
            &[&store_id, &operator_id, &hash, &salt],
        )
        .await?;
    anyhow::ensure!(n == 1, "no operator {operator_id} in store {store_id}");
    Ok(())
}

/// Adds a level: `discount` is the share paid (0.95 = 5 % off), in (0, 1];
/// `points_rate` points per currency unit charged, at least 0.
pub async fn add_level<C: GenericClient>(
    c: &C,
    name: &str,
    discount: Decimal,
    points_rate: Decimal,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        discount > Decimal::ZERO && discount <= Decimal::ONE,
        "discount must be in (0, 1]: the share the member pays"
    );
    anyhow::ensure!(!points_rate.is_sign_negative(), "points rate must be >= 0");
    anyhow::ensure!(
        crate::protocol::grammar::terminal(name).is_ok(),
        "level names are [A-Za-z0-9_-]{{1,32}}"
    );
    c.execute(
        "INSERT INTO levels (level, discount, points_rate) VALUES ($1, $2, $3)",
        &[&name, &discount, &points_rate],
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot add level {name}: {e}"))?;
    Ok(())
}

/// `(name, discount, points_rate)` of every level.
pub async fn list_levels<C: GenericClient>(
    c: &C,
) -> anyhow::Result<Vec<(String, Decimal, Decimal)>> {
    let rows = c
        .query(
            "SELECT level, discount, points_rate FROM levels ORDER BY level",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
