//! The strict XML decoder clients use: never panics; what it accepts is what
//! the encoder writes.
#![no_main]
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::xml::{encode_answer_at, encode_rows, parse_answer, parse_rows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_answer(data) {
        let again = encode_answer_at(a.errno, a.field.as_deref(), a.now, &a.body);
        let back = parse_answer(again.as_bytes()).expect("a re-encoded answer parses");
        // A 1001 without a field is re-encoded naming `body`; no other
        // errno carries one.
        let field = match a.errno {
            Errno::Malformed => Some(a.field.clone().unwrap_or_else(|| "body".into())),
            _ => None,
        };
        assert_eq!(
            (back.errno, back.now, &back.body, back.field),
            (a.errno, a.now, &a.body, field)
        );
    }
    if let Ok(rows) = parse_rows(data) {
        let again = encode_rows(&rows);
        assert_eq!(
            parse_rows(again.as_bytes()).expect("re-encoded rows parse"),
            rows
        );
    }
});
