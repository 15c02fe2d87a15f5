//! The strict XML decoder clients use: never panics; what it accepts is what
//! the encoder writes.
#![no_main]
use cardswitch::protocol::xml::{encode_rows, parse_answer, parse_rows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_answer(data);
    if let Ok(rows) = parse_rows(data) {
        let again = encode_rows(&rows);
        assert_eq!(parse_rows(again.as_bytes()).expect("re-encoded rows parse"), rows);
    }
});
