//! The key listener: one LISTEN connection per daemon that carries
//! revocations and key reloads to the caches of `ring` at once, and proves
//! that it works rather than assuming it.

use crate::store::keys::{listen, Listening};

/// How often the listener proves to itself that notifications arrive.
const PING_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// A listener that has not seen its own ping for this long is "down".
const PING_LOST: std::time::Duration = std::time::Duration::from_secs(2);
/// The wait before connecting again.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// LISTENs on the keys channel on a connection of its own, for ever:
/// `on_state(true)` once listening works, `on_state(false)` when it stops
/// (then it reconnects after a second), `on_notify(payload)` for each
/// notification.
///
/// "Works" is proven, not assumed: the listener NOTIFYs itself every 500 ms
/// and counts as down when its own ping has not come back for 2 s. So a
/// connection that silently stopped delivering (a pooler in transaction
/// mode, which does not carry LISTEN, or a half-open TCP connection) makes
/// the daemon fall back to checking the database on every request instead
/// of trusting a cache no notification can reach.
pub async fn listen_forever(
    pg: tokio_postgres::Config,
    on_state: impl Fn(bool),
    on_notify: impl Fn(&str),
) {
    let nonce = format!("ping:{:016x}", rand::random::<u64>());
    loop {
        match listen(&pg).await {
            Err(e) => tracing::warn!(error = %e, "key listener cannot listen; retrying"),
            Ok(l) => {
                serve(l, &nonce, &on_state, &on_notify).await;
                on_state(false);
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Passes notifications on until the connection is lost or stops carrying
/// this listener's own pings.
async fn serve(mut l: Listening, nonce: &str, on_state: &impl Fn(bool), on_notify: &impl Fn(&str)) {
    let mut up = false;
    let mut last_seen = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            got = l.payloads.recv() => match got {
                None => return,
                Some(p) if p == nonce => {
                    last_seen = tokio::time::Instant::now();
                    if !up {
                        up = true;
                        on_state(true);
                    }
                }
                // Other instances' pings.
                Some(p) if p.starts_with("ping:") => {}
                Some(p) => on_notify(&p),
            },
            _ = tick.tick() => {
                if last_seen.elapsed() > PING_LOST {
                    tracing::warn!("key notifications stopped arriving; reconnecting");
                    return;
                }
                if let Err(e) = l.ping(nonce).await {
                    tracing::warn!(error = %e, "key listener ping failed");
                    return;
                }
            }
        }
    }
}
