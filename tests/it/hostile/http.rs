//! Family 6: attacks on HTTP itself, over raw TCP — slow heads, idle
//! connections by the thousand, huge and lying requests, smuggling,
//! pipelining and garbage. Health keeps answering within a second, and the
//! tills keep transacting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use cardswitch::protocol::errno::Errno;

use super::{world_with, World};
use crate::harness::{raw_request, read_answer};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// `/healthz` answers 200 within a second, and T1 can still transact.
async fn still_serving(w: &World, while_what: &str) {
    let t = Instant::now();
    let a = raw_request(w.d.addr, HEALTHZ).await.unwrap();
    assert_eq!(a.status, 200, "{while_what}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "{while_what}: healthz took {:?}",
        t.elapsed()
    );
    w.ok(&w.t1, "op=query&attr1=CARD0001").await;
}

/// Whether the server closed `s` (or answered and closed) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut buf))
        .await
        .is_ok()
}

async fn status_of(addr: SocketAddr, bytes: &[u8]) -> u16 {
    match raw_request(addr, bytes).await {
        Ok(a) => a.status,
        // Closed without an answer.
        Err(_) => 0,
    }
}

async fn tuned() -> World {
    world_with(|c| {
        c.server.header_timeout = Duration::from_secs(2);
        c.server.body_timeout = Duration::from_secs(2);
        c.server.max_connections = 2500;
    })
    .await
}

#[tokio::test]
async fn slowloris_and_idle_connections() {
    let w = tuned().await;
    // 200 heads sent a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(w.d.addr).await.unwrap();
        s.write_all(b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    for _ in 0..3 {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"a").await;
        }
        still_serving(&w, "slowloris").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The header timeout ends every one of them.
    for s in slow.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a slow head held its connection"
        );
    }
    // 2,000 connections that send nothing, under the limit of 2,500.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(w.d.addr).await.unwrap());
    }
    still_serving(&w, "2,000 idle connections").await;
    drop(idle);
    still_serving(&w, "after the idle connections").await;
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn huge_lying_and_smuggled_requests() {
    let w = tuned().await;
    let addr = w.d.addr;
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100_000));
    let refused: [(&str, Vec<u8>); 8] = [
        ("1 MB of headers", big_header.into_bytes()),
        ("a URI of 100 KB", long_uri.into_bytes()),
        ("Content-Length and Transfer-Encoding both", b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("two Content-Lengths that differ", b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef".to_vec()),
        ("a negative Content-Length", b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec()),
        ("a NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n".to_vec()),
        ("a TLS hello on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage".to_vec()),
        ("garbage bytes", b"\xff\xfe\xfd\r\n\r\n".to_vec()),
    ];
    for (name, bytes) in &refused {
        let status = status_of(addr, bytes).await;
        assert!(
            status == 0 || (400..500).contains(&status),
            "case {name:?}: {status}"
        );
        still_serving(&w, name).await;
    }
    // Declared over 16 KiB: 413 before a body byte; chunked over 16 KiB: 413.
    let declared = b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";
    assert_eq!(
        status_of(addr, declared).await,
        413,
        "a Content-Length of 1 MB"
    );
    let mut chunked = b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'a'; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(status_of(addr, &chunked).await, 413, "chunks past 16 KiB");
    // A Content-Length that promises more than comes: 408 after the body timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nterminal=T1")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut s).await.unwrap().status,
        408,
        "a body that never ends"
    );
    // One that promises less than comes: the body is what it says (not a
    // form of ours: 1001), and the rest a request of its own (garbage: 400).
    let short = b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\n\r\njunkGARBAGE\r\n\r\n";
    let a = raw_request(addr, short).await.unwrap();
    assert_eq!(a.status, 400, "a body longer than its length");
    assert!(String::from_utf8_lossy(&a.body).contains("<errno>1001</errno>"));
    still_serving(&w, "lying lengths").await;
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let w = tuned().await;
    let mut s = TcpStream::connect(w.d.addr).await.unwrap();
    let two = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s.write_all(two).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let first = text.find("HTTP/1.1 200").expect("the first answer");
    let second = text.find("HTTP/1.1 404").expect("the second answer");
    assert!(first < second, "{text}");
    // A txn's refusal in a pipeline is answered like any other.
    let mut s = TcpStream::connect(w.d.addr).await.unwrap();
    let junk = b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\n\r\njunk";
    s.write_all(&[&junk[..], HEALTHZ].concat()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.contains(&format!("<errno>{}</errno>", Errno::Malformed.code())));
    w.d.stop().await.unwrap();
}
