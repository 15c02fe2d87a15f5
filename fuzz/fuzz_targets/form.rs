//! The strict form decoder: never panics; what it accepts re-encodes to a
//! form that decodes to the same pairs.
#![no_main]
use cardswitch::protocol::form::{encode_form, parse_attr2, parse_form_any};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = parse_form_any(data) {
        let pairs: Vec<(&str, &str)> = form.pairs().collect();
        let again = encode_form(&pairs);
        let back = parse_form_any(again.as_bytes()).expect("re-encoded form decodes");
        assert_eq!(back.pairs().collect::<Vec<_>>(), pairs);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_attr2(s, &["pin", "mpin", "tender", "terminal", "limit"]);
    }
});
