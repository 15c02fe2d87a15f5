//! The decrypted inner form: never panics; an accepted form re-encodes to an
//! equal one with the same idempotency digest, and parses (or is refused
//! 1001) into the ledger's typed request of the same op.
#![no_main]
use cardswitch::ledger::request::{op_kind, Request};
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::fault::is_field_name;
use cardswitch::protocol::message::InnerForm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = InnerForm::parse(data);
    if let Err(m) = &parsed {
        assert!(is_field_name(m.field()), "{m:?}");
    }
    if let Ok(f) = parsed {
        let again = InnerForm::parse(f.encode().as_bytes()).expect("re-encoded inner form parses");
        assert_eq!(again.digest(), f.digest());
        match Request::from_form(&f) {
            Ok(r) => {
                assert_eq!(r.op(), op_kind(f.op));
                assert_eq!(r.order_no(), f.order_no.as_deref());
            }
            Err(e) => assert_eq!(e, Errno::Malformed),
        }
    }
});
