//! The outer request forms of hello, login and txn, and the MAC header.
#![no_main]
use cardswitch::protocol::canonical::parse_mac_header;
use cardswitch::protocol::fault::{is_field_name, Malformed};
use cardswitch::protocol::form::MAX_BODY;
use cardswitch::protocol::message::{split_login_secret, HelloRequest, LoginRequest, TxnRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A refusal names a field the answer's XSD allows.
    let named = |m: Malformed| assert!(is_field_name(m.field()), "{m:?}");
    // What a parser takes, its encoder writes back to the same value —
    // unless percent-encoding grew it past the 16 KiB limit, which is on
    // the bytes sent (fuzz/regressions/requests/): then it is `body`.
    macro_rules! round_trip {
        ($t:ty) => {
            match <$t>::parse(data) {
                Ok(v) => match v.encode() {
                    e if e.len() > MAX_BODY => {
                        assert_eq!(<$t>::parse(e.as_bytes()), Err(Malformed::body()))
                    }
                    e => assert_eq!(<$t>::parse(e.as_bytes()).unwrap(), v),
                },
                Err(m) => named(m),
            }
        };
    }
    round_trip!(HelloRequest);
    round_trip!(LoginRequest);
    round_trip!(TxnRequest);
    let _ = parse_mac_header(data);
    let _ = split_login_secret(data);
});
