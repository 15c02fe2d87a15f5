//! The outer request forms of hello, login and txn, and the MAC header.
#![no_main]
use cardswitch::protocol::canonical::parse_mac_header;
use cardswitch::protocol::fault::{is_field_name, Malformed};
use cardswitch::protocol::message::{split_login_secret, HelloRequest, LoginRequest, TxnRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A refusal names a field the answer's XSD allows.
    let named = |m: Malformed| assert!(is_field_name(m.field()), "{m:?}");
    match HelloRequest::parse(data) {
        Ok(h) => assert_eq!(HelloRequest::parse(h.encode().as_bytes()).unwrap(), h),
        Err(m) => named(m),
    }
    match LoginRequest::parse(data) {
        Ok(l) => assert_eq!(LoginRequest::parse(l.encode().as_bytes()).unwrap(), l),
        Err(m) => named(m),
    }
    match TxnRequest::parse(data) {
        Ok(t) => assert_eq!(TxnRequest::parse(t.encode().as_bytes()).unwrap(), t),
        Err(m) => named(m),
    }
    let _ = parse_mac_header(data);
    let _ = split_login_secret(data);
});
