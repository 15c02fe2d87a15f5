//! The reference client: the handshake with full verification, encrypted
//! transactions with MAC checks on the raw answer bytes, a `ts` clock that
//! follows the server's `<now>`, and a session cache file for the CLI.
//! Used by the integration tests, the benches and `cardswitch client`.

pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::crypto::kdf::SessionKeys;
use crate::crypto::rsa::RsaPublic;
use crate::crypto::{aead, Secret32};
use crate::protocol::answer::{HelloAnswer, LoginAnswer};
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::form::encode_form;
use crate::protocol::grammar::base64_encode;
use crate::protocol::message::InnerForm;
use crate::protocol::xml::{parse_answer, AnswerBody, Rows};
pub use wire::{DayKey, TxnOutcome, WireError};

pub const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// An HTTP answer as received.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }
}

/// `ts = max(now + offset, last + 1)`, with `offset` from the server's `<now>`.
#[derive(Debug, Default)]
pub struct TsClock {
    state: Mutex<(i64, u64)>,
}

impl TsClock {
    pub fn new(offset_ms: i64, last: u64) -> TsClock {
        TsClock {
            state: Mutex::new((offset_ms, last)),
        }
    }

    pub fn next(&self) -> u64 {
        let mut s = self.state.lock().expect("lock");
        let now = (chrono::Utc::now().timestamp_millis() + s.0) as u64;
        s.1 = now.max(s.1 + 1);
        s.1
    }

    /// Learns the offset from an answer's `<now>`.
    pub fn observe(&self, server_now: u64) {
        let mut s = self.state.lock().expect("lock");
        s.0 = server_now as i64 - chrono::Utc::now().timestamp_millis();
    }

    pub fn snapshot(&self) -> (i64, u64) {
        *self.state.lock().expect("lock")
    }
}

/// A logged-in session.
#[derive(Clone, Debug)]
pub struct Session {
    pub terminal: String,
    pub key_id: String,
    pub sid: String,
    pub not_after: u64,
    pub k_sid: Secret32,
    pub keys: SessionKeys,
}

impl Session {
    pub fn new(terminal: &str, key_id: &str, sid: &str, not_after: u64, k_sid: Secret32) -> Self {
        Session {
            terminal: terminal.to_owned(),
            key_id: key_id.to_owned(),
            sid: sid.to_owned(),
            not_after,
            keys: SessionKeys::derive(&k_sid),
            k_sid,
        }
    }
}

/// A refusal from the server, as an error (`anyhow` downcasts to it).
#[derive(Debug, thiserror::Error)]
#[error("refused: errno {} ({}){}", .errno.code(), .errno.message(), at_field(.field))]
pub struct Refused {
    pub errno: Errno,
    pub status: u16,
    /// A 1001's first field at fault.
    pub field: Option<String>,
}

fn at_field(f: &Option<String>) -> String {
    f.as_ref()
        .map(|f| format!(", field {f}"))
        .unwrap_or_default()
}

pub struct Client {
    base: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    pub clock: TsClock,
}

impl Client {
    /// `base` like `http://127.0.0.1:8080` (no trailing slash needed).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(HttpConnector::new()),
            clock: TsClock::default(),
        }
    }

    /// A client whose connections leave from `local`: on loopback, any
    /// 127.x.y.z, so a test can play an outsider at another address.
    pub fn bound(base: &str, local: std::net::IpAddr) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
            clock: TsClock::default(),
        }
    }

    /// POSTs `body` with exactly `headers` (nothing added).
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<RawResponse> {
        let mut b = Request::post(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into()))?;
        self.send(req).await
    }

    /// GETs `path` (health and metrics).
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<RawResponse> {
        let req = Request::get(format!("{}{path}", self.base)).body(Full::new(Bytes::new()))?;
        self.send(req).await
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<RawResponse> {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| anyhow!("no answer within 30 s"))?
            .context("HTTP request failed")?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// POSTs a form body with the form content type and `extra` headers.
    pub async fn post_form(
        &self,
        path: &str,
        body: impl Into<Bytes>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<RawResponse> {
        let mut h = vec![("content-type", FORM_TYPE)];
        h.extend_from_slice(extra);
        self.post_raw(path, body, &h).await
    }

    /// hello: the day key, verified against the pinned `root`.
    pub async fn hello(
        &self,
        terminal: &str,
        root: &RsaPublic,
        ask_root: Option<&str>,
    ) -> anyhow::Result<DayKey> {
        let ts = self.clock.next();
        let body = encode_form(&[
            ("terminal", terminal),
            ("ts", &ts.to_string()),
            ("root", ask_root.unwrap_or("")),
        ]);
        let r = self.post_form("/v1/hello", body, &[]).await?;
        let row = self.clear_row(&r)?;
        let a = HelloAnswer::from_row(&row).map_err(|_| anyhow!("hello answer row malformed"))?;
        Ok(wire::verify_hello(terminal, &a, root, self.now_ms())?)
    }

    /// login with the day key from [`Client::hello`].
    pub async fn login(
        &self,
        terminal: &str,
        password: &str,
        day: &DayKey,
    ) -> anyhow::Result<Session> {
        let ts = self.clock.next();
        let s = Secret32::random();
        let secret = wire::login_secret(&day.public, &s, ts, password)?;
        let r = self
            .post_form(
                "/v1/login",
                wire::login_body(terminal, &day.key_id, ts, &secret),
                &[],
            )
            .await?;
        let row = self.clear_row(&r)?;
        let a = LoginAnswer::from_row(&row).map_err(|_| anyhow!("login answer row malformed"))?;
        let k_sid = wire::open_login(terminal, day, ts, &s, &a)?;
        Ok(Session::new(
            terminal,
            &day.key_id,
            &a.sid,
            a.not_after,
            k_sid,
        ))
    }

    /// hello then login.
    pub async fn handshake(
        &self,
        terminal: &str,
        password: &str,
        root: &RsaPublic,
    ) -> anyhow::Result<Session> {
        let day = self.hello(terminal, root, None).await?;
        self.login(terminal, password, &day).await
    }

    /// Sends one encrypted txn and checks its answer.
    pub async fn txn(&self, s: &Session, inner: &InnerForm) -> anyhow::Result<TxnOutcome> {
        self.txn_raw_inner(s, inner.encode().as_bytes()).await
    }

    /// Sends `inner` as given (not checked here), with a fresh ts and IV.
    pub async fn txn_raw_inner(&self, s: &Session, inner: &[u8]) -> anyhow::Result<TxnOutcome> {
        let ts = self.clock.next();
        let built = wire::txn_body(&s.keys, &s.terminal, &s.sid, ts, &aead::random_iv(), inner);
        let mac = canonical::format_mac_header(&built.mac);
        let r = self
            .post_form("/v1/txn", built.body, &[("referer", &mac)])
            .await?;
        let out = wire::open_txn_answer(
            &s.keys,
            &s.terminal,
            &s.sid,
            ts,
            &built.mac,
            r.header("x-cardswitch-mac"),
            &r.body,
        )?;
        self.clock.observe(out.now);
        Ok(out)
    }

    fn now_ms(&self) -> u64 {
        (chrono::Utc::now().timestamp_millis() + self.clock.snapshot().0) as u64
    }

    /// The row of a hello or login answer; a refusal is [`Refused`].
    fn clear_row(&self, r: &RawResponse) -> anyhow::Result<crate::protocol::xml::Row> {
        let a = parse_answer(&r.body)
            .map_err(|_| anyhow!("answer is not a protocol answer (HTTP {})", r.status))?;
        self.clock.observe(a.now);
        if a.errno != Errno::Ok {
            return Err(Refused {
                errno: a.errno,
                status: r.status,
                field: a.field,
            }
            .into());
        }
        match a.body {
            AnswerBody::Rows(Rows(mut rows)) if rows.len() == 1 => Ok(rows.remove(0)),
            _ => bail!("answer has no single row"),
        }
    }
}

/// Builds an inner form from the CLI's fields and checks it locally.
pub fn inner_form(
    op: &str,
    amount: Option<&str>,
    order_no: Option<&str>,
    operator: Option<&str>,
    attr1: Option<&str>,
    attr2: Option<&str>,
) -> anyhow::Result<InnerForm> {
    let f = |o: Option<&str>| o.unwrap_or("").to_owned();
    let body = encode_form(&[
        ("op", op),
        ("amount", &f(amount)),
        ("order_no", &f(order_no)),
        ("operator", &f(operator)),
        ("attr1", &f(attr1)),
        ("attr2", &f(attr2)),
    ]);
    InnerForm::parse(body.as_bytes()).map_err(|m| {
        anyhow!(
            "field {} does not fit proto-spec §5.2/§10 (errno 1001; nothing was sent)",
            m.field()
        )
    })
}

// --- the session cache of `cardswitch client` ---

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedSession {
    url: String,
    terminal: String,
    key_id: String,
    sid: String,
    not_after: u64,
    k_sid: String,
    offset: i64,
    last_ts: u64,
}

pub fn cache_path(data_dir: &Path, terminal: &str) -> PathBuf {
    data_dir.join("client").join(format!("{terminal}.session"))
}

fn load_cache(path: &Path, url: &str, terminal: &str) -> Option<(Session, i64, u64)> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).ok()?);
    let c: CachedSession = serde_json::from_str(&text).ok()?;
    if c.url != url || c.terminal != terminal {
        return None;
    }
    let k = crate::protocol::grammar::base64(&c.k_sid).ok()?;
    let k_sid = Secret32::from_slice(&k).ok()?;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    if c.not_after <= now + 60_000 {
        return None;
    }
    Some((
        Session::new(terminal, &c.key_id, &c.sid, c.not_after, k_sid),
        c.offset,
        c.last_ts,
    ))
}

fn save_cache(path: &Path, url: &str, s: &Session, clock: &TsClock) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (offset, last_ts) = clock.snapshot();
    let c = CachedSession {
        url: url.to_owned(),
        terminal: s.terminal.clone(),
        key_id: s.key_id.clone(),
        sid: s.sid.clone(),
        not_after: s.not_after,
        k_sid: base64_encode(s.k_sid.expose()),
        offset,
        last_ts,
    };
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(zeroize::Zeroizing::new(serde_json::to_string(&c)?).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// What `cardswitch client` was asked.
pub struct CliRequest {
    pub url: String,
    pub terminal: String,
    pub password: zeroize::Zeroizing<String>,
    pub root: RsaPublic,
    pub inner: InnerForm,
    pub data_dir: PathBuf,
}

/// Runs one op with a cached (or new) session; re-does the handshake once
/// when the session is refused (1004).
pub async fn run_cli(req: &CliRequest) -> anyhow::Result<TxnOutcome> {
    let mut client = Client::new(&req.url);
    let path = cache_path(&req.data_dir, &req.terminal);
    let cached = load_cache(&path, &req.url, &req.terminal);
    let mut session = match cached {
        Some((s, offset, last)) => {
            client.clock = TsClock::new(offset, last);
            s
        }
        None => {
            client
                .handshake(&req.terminal, &req.password, &req.root)
                .await?
        }
    };
    let mut out = client.txn(&session, &req.inner).await?;
    if out.errno == Errno::KeyUnknown {
        session = client
            .handshake(&req.terminal, &req.password, &req.root)
            .await?;
        out = client.txn(&session, &req.inner).await?;
    }
    save_cache(&path, &req.url, &session, &client.clock)?;
    Ok(out)
}
