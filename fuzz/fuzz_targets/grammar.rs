//! The value grammars of protocol.md §1.
#![no_main]
use cardswitch::protocol::grammar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for check in [
        grammar::terminal,
        grammar::operator,
        grammar::order_no,
        grammar::card,
        grammar::key_id,
        grammar::sid,
        grammar::root_id,
    ] {
        if let Ok(v) = check(s) {
            assert!(v.is_ascii() && !v.is_empty());
        }
    }
    let _ = grammar::ts(s);
    if let Ok(a) = grammar::amount(s) {
        assert!(a.scale() <= 2 && !a.is_sign_negative());
    }
    let _ = grammar::points(s);
    if let Ok(bytes) = grammar::base64(s) {
        assert_eq!(grammar::base64_encode(&bytes), s);
    }
});
