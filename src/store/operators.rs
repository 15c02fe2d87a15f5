//! Operators and levels, as the CLI manages them. Manager PINs are stored
//! only as keyed hashes (domain `DOMAIN_MANAGER_PIN`, a salt per row).

use crate::ledger::Standing;
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;

use crate::crypto::keyed_hash::{keyed_hash, random_salt, DOMAIN_MANAGER_PIN};
use crate::crypto::Secret32;
use crate::integrity::{level_image, operator_image, LevelLimits, RowKeys};
use crate::store::protected::{select_all, LevelRow, Protected};

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
    keys: &RowKeys,
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
    let img = operator_image(
        store_id,
        operator_id,
        role,
        "active",
        hash.as_deref(),
        salt.as_deref(),
    );
    let (mac, kid) = keys.mac_with_id(&img, None);
    let sealed = keys.seal(&img);
    c.execute(
        "INSERT INTO operators (store_id, operator_id, role, status, pin_hash, pin_salt,
                row_mac, mac_key_id, sealed)
         VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)",
        &[
            &store_id,
            &operator_id,
            &role,
            &hash,
            &salt,
            &mac,
            &kid,
            &sealed,
        ],
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

/// Rewrites an operator's status (and PIN) with its MAC, under its row lock.
async fn rewrite_operator<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    store_id: &str,
    operator_id: &str,
    status: &str,
    pin: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<()> {
    let r = c
        .query_opt(
            "SELECT role, pin_hash, pin_salt FROM operators
              WHERE store_id = $1 AND operator_id = $2 FOR UPDATE",
            &[&store_id, &operator_id],
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("no operator {operator_id} in store {store_id}"))?;
    let role: String = r.get(0);
    let (hash, salt): (Option<Vec<u8>>, Option<Vec<u8>>) = match pin {
        Some((h, s)) => (Some(h), Some(s)),
        None => (r.get(1), r.get(2)),
    };
    let img = operator_image(
        store_id,
        operator_id,
        &role,
        status,
        hash.as_deref(),
        salt.as_deref(),
    );
    let (mac, kid) = keys.mac_with_id(&img, None);
    let sealed = keys.seal(&img);
    c.execute(
        "UPDATE operators SET status = $3, pin_hash = $4, pin_salt = $5, row_mac = $6,
                mac_key_id = $7, sealed = $8,
                pin_fail_count = CASE WHEN $3 = 'active' THEN 0 ELSE pin_fail_count END
          WHERE store_id = $1 AND operator_id = $2",
        &[
            &store_id,
            &operator_id,
            &status,
            &hash,
            &salt,
            &mac,
            &kid,
            &sealed,
        ],
    )
    .await?;
    Ok(())
}

/// Enables or disables an operator; enabling also clears its PIN counter.
pub async fn set_operator_status<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    store_id: &str,
    operator_id: &str,
    active: bool,
) -> anyhow::Result<()> {
    let status = if active {
        Standing::Active
    } else {
        Standing::Disabled
    }
    .as_str();
    rewrite_operator(c, keys, store_id, operator_id, status, None).await
}

/// Sets a new PIN, clears the counter and re-enables the operator.
pub async fn reset_pin<C: GenericClient>(
    c: &C,
    hash_key: &Secret32,
    keys: &RowKeys,
    store_id: &str,
    operator_id: &str,
    pin: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::protocol::attr2::pin(pin).is_ok(),
        "a PIN is 4 to 12 digits"
    );
    let (hash, salt) = pin_columns(hash_key, Some(pin));
    let pin = hash.zip(salt);
    rewrite_operator(
        c,
        keys,
        store_id,
        operator_id,
        Standing::Active.as_str(),
        pin,
    )
    .await
}

/// Adds a level: `discount` is the share paid (0.95 = 5 % off), in (0, 1];
/// `points_rate` points per currency unit charged, at least 0.
pub async fn add_level<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
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
    let img = level_image(name, discount, points_rate, LevelLimits::default());
    let (mac, kid) = keys.mac_with_id(&img, None);
    c.execute(
        "INSERT INTO levels (level, discount, points_rate, row_mac, mac_key_id, sealed)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&name, &discount, &points_rate, &mac, &kid, &keys.seal(&img)],
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot add level {name}: {e}"))?;
    Ok(())
}

/// Sets a level's limits (protocol.md §6.2; `None`: none) to what `change`
/// makes of the limits read under the row's lock, so two changes of one
/// level never lose either; its MAC and sealed copy are written anew (a
/// level that fails its MAC check is left for `verify`). Run in a
/// transaction. Returns the limits set.
pub async fn set_level_limits<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    name: &str,
    change: impl FnOnce(LevelLimits) -> LevelLimits,
) -> anyhow::Result<LevelLimits> {
    let sql = format!(
        "SELECT {} FROM levels WHERE level = $1 FOR UPDATE",
        LevelRow::COLUMNS
    );
    let row = c
        .query_opt(&sql, &[&name])
        .await?
        .ok_or_else(|| anyhow::anyhow!("no level {name}"))?;
    let mut level = LevelRow::decode(&row);
    anyhow::ensure!(
        level.mac_ok(keys),
        "level {name} fails its MAC check: run verify"
    );
    let limits = change(level.limits);
    for v in [limits.max_balance, limits.daily_debit_limit]
        .into_iter()
        .flatten()
    {
        anyhow::ensure!(
            crate::ledger::Money::new(v).is_ok(),
            "a limit is an amount >= 0 with at most two decimals"
        );
    }
    level.limits = limits;
    let img = level.image();
    let (mac, kid) = keys.mac_with_id(&img, None);
    c.execute(
        "UPDATE levels SET max_balance = $2, daily_debit_limit = $3, row_mac = $4,
                mac_key_id = $5, sealed = $6 WHERE level = $1",
        &[
            &name,
            &limits.max_balance,
            &limits.daily_debit_limit,
            &mac,
            &kid,
            &keys.seal(&img),
        ],
    )
    .await?;
    Ok(limits)
}

/// Every level as stored, limits included.
pub async fn levels<C: GenericClient>(c: &C) -> anyhow::Result<Vec<LevelRow>> {
    let rows = c.query(&select_all::<LevelRow>(false), &[]).await?;
    Ok(rows.iter().map(LevelRow::decode).collect())
}
