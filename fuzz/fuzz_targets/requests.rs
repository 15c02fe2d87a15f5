//! The outer request forms of hello, login and txn, and the MAC header.
#![no_main]
use cardswitch::protocol::canonical::parse_mac_header;
use cardswitch::protocol::message::{split_login_secret, HelloRequest, LoginRequest, TxnRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = HelloRequest::parse(data) {
        assert_eq!(HelloRequest::parse(h.encode().as_bytes()).unwrap(), h);
    }
    if let Ok(l) = LoginRequest::parse(data) {
        assert_eq!(LoginRequest::parse(l.encode().as_bytes()).unwrap(), l);
    }
    if let Ok(t) = TxnRequest::parse(data) {
        assert_eq!(TxnRequest::parse(t.encode().as_bytes()).unwrap(), t);
    }
    let _ = parse_mac_header(data);
    let _ = split_login_secret(data);
});
