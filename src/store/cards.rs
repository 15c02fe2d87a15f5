//! Cards outside the ledger: test fixtures only need a card with a balance
//! and no register posting. Its MACs are written like the ledger's; its
//! balance has no posting behind it, so `verify` reports balance ≠ postings
//! for such a card with a balance.

use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;

use crate::integrity::{member_image, CardValues, RowKeys};

/// A member (level `level`, which must exist) and an active card without a PIN.
pub async fn insert_fixture<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    card_no: &str,
    level: &str,
    balance: Decimal,
) -> Result<(), tokio_postgres::Error> {
    let member_id: i64 = c
        .query_one("SELECT nextval('members_member_id_seq')", &[])
        .await?
        .get(0);
    let (name, phone) = ("Test", "13800000000");
    let m = keys.mac(
        &member_image(member_id, name, phone, None, None, level),
        None,
    );
    c.execute(
        "INSERT INTO members (member_id, name, phone, level, row_mac, mac_key_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&member_id, &name, &phone, &level, &m, &keys.current_id()],
    )
    .await?;
    let v = CardValues {
        card_no: card_no.to_owned(),
        member_id,
        status: "active".into(),
        balance,
        points: 0,
        pin_hash: None,
        pin_salt: None,
        pin_fail_count: 0,
        chain_len: 0,
        last_mac: None,
    };
    let img = v.image();
    c.execute(
        "INSERT INTO cards (card_no, member_id, balance, row_mac, mac_key_id, sealed)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &card_no,
            &member_id,
            &balance,
            &keys.mac(&img, None),
            &keys.current_id(),
            &keys.seal(&img),
        ],
    )
    .await?;
    Ok(())
}
