//! `POST /v1/hello` and `POST /v1/login` (protocol.md §3).

use crate::ledger::Standing;
use crate::store::protected::Protected;
use std::net::SocketAddr;

use bytes::Bytes;
use chrono::Utc;

use super::http::Answer;
use super::proto::{self, in_window, Refusal};
use super::AppState;
use crate::crypto::keyed_hash::{self, DOMAIN_TERMINAL_PASSWORD};
use crate::crypto::{aead, kdf, Secret32};
use crate::keys::day::{self as kday, random_hex};
use crate::protocol::answer::{HelloAnswer, LoginAnswer};
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::grammar::base64_encode;
use crate::protocol::message::{split_login_secret, HelloRequest, LoginRequest};
use crate::protocol::xml::{AnswerBody, Rows};
use crate::store::{keys as sk, terminals};

fn internal(e: impl std::fmt::Display) -> Errno {
    tracing::error!(error = %e, "internal error");
    Errno::Internal
}

fn db_errno(e: impl Into<crate::error::Error>) -> Errno {
    let e: crate::error::Error = e.into();
    let errno = e.errno();
    tracing::error!(error = %e, errno = errno.code(), "database error");
    errno
}

pub async fn hello(state: &AppState, peer: SocketAddr, body: Bytes) -> Answer {
    let mut refusal = Refusal::unproved("/v1/hello", peer);
    let req = match HelloRequest::parse(&body) {
        Ok(r) => r,
        Err(m) => return refusal.malformed(state, &m, "hello form", None).await,
    };
    refusal.terminal = Some(&req.terminal);
    match hello_row(state, &req).await {
        Ok(row) => proto::xml(Errno::Ok, &AnswerBody::Rows(Rows(vec![row.to_row()])), None),
        Err((errno, reason)) => refusal.answer(state, errno, reason, None).await,
    }
}

async fn hello_row(
    state: &AppState,
    req: &HelloRequest,
) -> Result<HelloAnswer, (Errno, &'static str)> {
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| (db_errno(e), "database"))?;
    match terminals::get(&client, &req.terminal).await {
        Ok(Some(t)) if t.standing() == Some(Standing::Active) => {}
        Ok(_) => return Err((Errno::UnknownTerminal, "unknown or disabled terminal")),
        Err(e) => return Err((db_errno(e), "database")),
    }
    if !in_window(state, req.ts) {
        return Err((Errno::TsOutsideWindow, "ts outside the window"));
    }
    let now = Utc::now();
    let root = sk::root_usable(&client, req.root.as_deref(), now)
        .await
        .map_err(|e| (db_errno(e), "database"))?
        .ok_or((Errno::KeyUnknown, "root neither current nor overlapping"))?;
    drop(client);
    let day = kday::business_day(now, state.config.business.offset());
    let key = state
        .keys
        .day_key_for(&state.pool, &state.config, &req.terminal, day)
        .await
        .map_err(|e| (internal(format!("{e:#}")), "day key"))?;
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| (db_errno(e), "database"))?;
    day_key_mac_check(state, &client, &key).await?;
    let signer = sk::signer(&client, &key.signer_id)
        .await
        .map_err(|e| (db_errno(e), "database"))?
        .ok_or_else(|| (internal("day key's signer missing"), "signer"))?;
    let cert = sk::signer_cert(&client, &signer.signer_id, &root)
        .await
        .map_err(|e| (db_errno(e), "database"))?
        .ok_or((Errno::KeyUnknown, "signer not certified by that root"))?;
    Ok(HelloAnswer {
        key_id: key.key_id,
        public_key: base64_encode(&key.public_der),
        not_before: key.not_before_ms as u64,
        not_after: key.not_after_ms as u64,
        day_sig: base64_encode(&key.day_sig),
        signer_id: signer.signer_id,
        signer_public_key: base64_encode(&signer.public_der),
        signer_not_after: signer.not_after_ms as u64,
        signer_sig: base64_encode(&cert),
        root,
    })
}

/// The delay before answering a login of a terminal from an address with
/// `failures` failed logins in a row: 50 ms doubled per failure, at most
/// `max`.
pub fn login_delay(failures: i32, max: std::time::Duration) -> std::time::Duration {
    if failures <= 0 {
        return std::time::Duration::ZERO;
    }
    let ms = 50u64.saturating_mul(1u64 << (failures - 1).min(20) as u32);
    std::time::Duration::from_millis(ms).min(max)
}

pub async fn login(state: &AppState, peer: SocketAddr, body: Bytes) -> Answer {
    let mut refusal = Refusal::unproved("/v1/login", peer);
    let req = match LoginRequest::parse(&body) {
        Ok(r) => r,
        Err(m) => return refusal.malformed(state, &m, "login form", None).await,
    };
    refusal.terminal = Some(&req.terminal);
    match login_row(state, peer.ip(), &req).await {
        Ok(row) => {
            state.login_failures.succeeded(&req.terminal, peer.ip());
            proto::xml(Errno::Ok, &AnswerBody::Rows(Rows(vec![row.to_row()])), None)
        }
        Err((errno, reason)) => {
            if errno == Errno::LoginRefused {
                state.login_failures.failed(&req.terminal, peer.ip());
            }
            refusal.answer(state, errno, reason, None).await
        }
    }
}

async fn login_row(
    state: &AppState,
    source: std::net::IpAddr,
    req: &LoginRequest,
) -> Result<LoginAnswer, (Errno, &'static str)> {
    let (terminal, key) = terminal_and_day_key(state, req).await?;
    // Before the RSA work: a guesser waits on its connection, not on our CPU.
    let failures = state.login_failures.count(&req.terminal, source);
    tokio::time::sleep(login_delay(failures, state.config.protocol.login_delay_max)).await;
    let key = state
        .keys
        .open_day_key(&key)
        .map_err(|e| (internal(format!("{e:#}")), "day key"))?;
    let s = check_secret(state, req, &terminal, &key)?;
    check_terminal_row(state, req, &terminal).await?;
    open_session(state, req, &key, &Secret32::from_bytes(s)).await
}

/// The terminal, active (1002), and the day key the login names: the
/// terminal's, active, today's and unexpired (1004), its MAC checked.
async fn terminal_and_day_key(
    state: &AppState,
    req: &LoginRequest,
) -> Result<(terminals::TerminalRow, sk::DayKeyRow), (Errno, &'static str)> {
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| (db_errno(e), "database"))?;
    let terminal = match terminals::get(&client, &req.terminal).await {
        Ok(Some(t)) if t.standing() == Some(Standing::Active) => t,
        Ok(_) => return Err((Errno::UnknownTerminal, "unknown or disabled terminal")),
        Err(e) => return Err((db_errno(e), "database")),
    };
    let now = Utc::now();
    let today = kday::business_day(now, state.config.business.offset());
    let key = sk::day_key(&client, &req.key_id)
        .await
        .map_err(|e| (db_errno(e), "database"))?
        .filter(|k| {
            k.terminal_id == req.terminal
                && k.key_status() == Some(sk::DayKeyStatus::Active)
                && k.business_day == today
                && k.not_after_ms > now.timestamp_millis()
        })
        .ok_or((
            Errno::KeyUnknown,
            "key_id is not the terminal's current day key",
        ))?;
    day_key_mac_check(state, &client, &key).await?;
    Ok((terminal, key))
}

/// The login secret opened and the password checked; the client's `S`.
/// Every path does the same work (decrypt, hash, compare), so a wrong
/// password, a bad secret and a wrong inner ts take the same time.
fn check_secret(
    state: &AppState,
    req: &LoginRequest,
    terminal: &terminals::TerminalRow,
    key: &crate::keys::ring::OpenDayKey,
) -> Result<[u8; 32], (Errno, &'static str)> {
    let plain = key.private.decrypt_oaep_sha256(&req.secret);
    let dummy = [0u8; 48];
    let (s, inner_ts, password, decrypted) =
        match plain.as_ref().ok().map(|p| split_login_secret(p.expose())) {
            Some(Ok((s, ts, pw))) => (s, ts, pw, true),
            _ => ([0u8; 32], 0, &dummy[..], false),
        };
    let (hash, salt) = match (&terminal.pw_hash, &terminal.pw_salt) {
        (Some(h), Some(s)) => (h.as_slice(), s.as_slice()),
        _ => (&dummy[..32], &dummy[..16]),
    };
    let pw_ok = keyed_hash::verify_keyed_hash(
        &state.keys.hash_key,
        DOMAIN_TERMINAL_PASSWORD,
        salt,
        password,
        hash,
    ) && terminal.pw_hash.is_some();
    let secret_ok = decrypted & (inner_ts == req.ts);
    if secret_ok && !in_window(state, req.ts) {
        return Err((Errno::TsOutsideWindow, "ts outside the window"));
    }
    if !(secret_ok & pw_ok) {
        return Err((Errno::LoginRefused, "bad secret or password"));
    }
    Ok(s)
}

/// Checked on use (issue 5): a password hash (or status) written by SQL
/// does not log in. A key id met for the first time (a row-key rotation
/// running) is loaded first.
async fn check_terminal_row(
    state: &AppState,
    req: &LoginRequest,
    terminal: &terminals::TerminalRow,
) -> Result<(), (Errno, &'static str)> {
    let row_keys = &state.txn_env.row_keys;
    if let Some(id) = &terminal.mac_key_id {
        if !row_keys.knows(id) {
            let refreshed = async {
                let c = state.pool.get().await?;
                crate::keys::refresh_row_keys(&c, &state.config.keys_dir, row_keys).await
            }
            .await;
            if let Err(e) = refreshed {
                tracing::error!(error = %e, "cannot load the new row keys");
            }
        }
    }
    if terminal.mac_ok(row_keys) {
        return Ok(());
    }
    state.metrics.tampered();
    tracing::error!(
        terminal = req.terminal,
        "integrity check failed: the terminal row's MAC does not match; login refused (3001)"
    );
    Err((Errno::Tampered, "terminal row failed its integrity check"))
}

/// A new session: `K_sid` derived, wrapped for the client under `S` and the
/// server's random, the statement signed with the day key, the session
/// stored with the login's `ts` spent (1006 when it was used before).
async fn open_session(
    state: &AppState,
    req: &LoginRequest,
    key: &crate::keys::ring::OpenDayKey,
    s: &Secret32,
) -> Result<LoginAnswer, (Errno, &'static str)> {
    let sid = random_hex(16);
    let not_after = key.not_after_ms as u64;
    let k_sid = kdf::session_key(&key.k_day, &req.terminal, &sid);
    let server_random = Secret32::random();
    let server_random_b64 = base64_encode(server_random.expose());
    let iv = aead::random_iv();
    let iv_b64 = base64_encode(&iv);
    let t = canonical::session_statement(
        &req.terminal,
        &req.key_id,
        req.ts,
        &sid,
        not_after,
        &server_random_b64,
    );
    let wrap = kdf::wrap_key(s, server_random.expose());
    let wrapped = aead::seal(&wrap, &iv, t.as_bytes(), k_sid.expose());
    let wrapped_b64 = base64_encode(&wrapped);
    let sig = key
        .private
        .sign_pss_sha256(canonical::session_sig_input(&t, &iv_b64, &wrapped_b64).as_bytes());
    let fresh = sk::open_session(
        &state.pool,
        &state.keys.row_keys,
        &sid,
        &req.terminal,
        &req.key_id,
        not_after as i64,
        req.ts as i64,
    )
    .await
    .map_err(|e| (db_errno(e), "database"))?;
    if !fresh {
        return Err((Errno::TsUsed, "ts used before"));
    }
    Ok(LoginAnswer {
        sid,
        not_after,
        server_random: server_random_b64,
        iv: iv_b64,
        wrapped: wrapped_b64,
        sig: base64_encode(&sig),
    })
}

/// Checked on use (issue 5): a day key row written by SQL (validity,
/// terminal, status) is not handed out nor logged in with (3001).
async fn day_key_mac_check(
    state: &AppState,
    client: &deadpool_postgres::Object,
    key: &sk::DayKeyRow,
) -> Result<(), (Errno, &'static str)> {
    if let Some(id) = &key.mac_key_id {
        state.keys.know_row_key(client, id).await;
    }
    if key.mac_ok(&state.keys.row_keys) {
        return Ok(());
    }
    state.metrics.tampered();
    tracing::error!(
        terminal = key.terminal_id,
        key_id = key.key_id,
        "integrity check failed: the day key row's MAC does not match; refused (3001)"
    );
    Err((Errno::Tampered, "day key row failed its integrity check"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn delays_grow_and_stop() {
        let max = Duration::from_secs(5);
        assert_eq!(login_delay(0, max), Duration::ZERO);
        assert_eq!(login_delay(1, max), Duration::from_millis(50));
        assert_eq!(login_delay(3, max), Duration::from_millis(200));
        assert_eq!(login_delay(100, max), max);
    }
}
