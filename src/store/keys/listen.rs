//! The NOTIFY side of key revocation and the LISTEN connection's SQL.

use deadpool_postgres::GenericClient;

use super::{PgResult, NOTIFY_CHANNEL};

pub async fn notify<C: GenericClient>(c: &C, payload: &str) -> PgResult<()> {
    c.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// A connection LISTENing on [`NOTIFY_CHANNEL`]: its notifications'
/// payloads arrive on `payloads`; the channel closes when the connection is
/// lost. Dropping it closes the connection.
pub struct Listening {
    client: tokio_postgres::Client,
    pub payloads: tokio::sync::mpsc::UnboundedReceiver<String>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Listening {
    /// NOTIFYs the channel on this connection (the listener's own ping).
    pub async fn ping(&self, payload: &str) -> PgResult<()> {
        self.client
            .execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
            .await?;
        Ok(())
    }
}

/// Connects on a connection of its own (never pooled: LISTEN belongs to
/// one session) and LISTENs.
pub async fn listen(pg: &tokio_postgres::Config) -> PgResult<Listening> {
    let (client, mut conn) = pg.connect(tokio_postgres::NoTls).await?;
    let (tx, payloads) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "key listener connection lost");
                    break;
                }
                None => break,
            }
        }
    });
    let listening = Listening {
        client,
        payloads,
        driver,
    };
    listening
        .client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await?;
    Ok(listening)
}
