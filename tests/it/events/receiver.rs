//! A webhook receiver: records every request, answers as told.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    /// The status to answer; 0 never answers (the request hangs).
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

/// A CA and a certificate for `localhost` signed by it, for a receiver on
/// https; the CA's PEM is what a daemon is told to trust.
pub struct TestTls {
    pub ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TestTls {
    pub fn new() -> TestTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], der)
        .unwrap();
        TestTls {
            ca_pem: ca.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// On https, with `tls`'s certificate.
    pub async fn start_tls(tls: &TestTls) -> Receiver {
        Receiver::start_with(Some(tls.acceptor.clone())).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (g, st) = (got.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (g, st, tls) = (g.clone(), st.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |r: Request<Incoming>| {
                        let (g, st) = (g.clone(), st.clone());
                        async move { Ok::<_, hyper::Error>(answer(r, &g, &st).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(sock), svc).await,
                        Some(t) => match t.accept(sock).await {
                            Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        Receiver {
            addr,
            got,
            status,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Its https URL (the certificate names `localhost`).
    pub fn tls_url(&self) -> String {
        format!("https://localhost:{}/hook", self.addr.port())
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests came (at most 20 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} requests came, not {n}", self.received().len());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    r: Request<Incoming>,
    got: &Mutex<Vec<Received>>,
    status: &AtomicU16,
) -> Response<Full<Bytes>> {
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    got.lock().unwrap().push(Received { headers, body });
    let s = status.load(Ordering::SeqCst);
    if s == 0 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Response::builder()
        .status(s)
        .body(Full::new(Bytes::new()))
        .unwrap()
}
