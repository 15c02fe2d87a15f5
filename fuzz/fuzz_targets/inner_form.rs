//! The decrypted inner form: never panics; an accepted form re-encodes to an
//! equal one with the same idempotency digest.
#![no_main]
use cardswitch::protocol::message::InnerForm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = InnerForm::parse(data) {
        let again = InnerForm::parse(f.encode().as_bytes()).expect("re-encoded inner form parses");
        assert_eq!(again.digest(), f.digest());
    }
});
