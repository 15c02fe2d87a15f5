//! Member files (`import members`): any bytes as a CSV never panic, and a
//! row the check accepts is accepted again, unchanged, from its own values
//! written back as text.
#![no_main]
use cardswitch::import::read;
use cardswitch::import::row::{check, Cell};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sheet) = read::csv(data) else { return };
    for (_, cells) in &sheet.rows {
        let Ok(r) = check(cells) else { continue };
        let text = |s: &str| Cell::Text(s.to_owned());
        let opt = |s: &Option<String>| s.as_deref().map_or(Cell::Empty, text);
        let again = [
            text(&r.card),
            text(&r.name),
            text(&r.phone),
            text(&r.level),
            text(&r.balance),
            text(&r.points.to_string()),
            opt(&r.pin),
            opt(&r.birthday),
        ];
        assert_eq!(check(&again).as_ref(), Ok(&r));
    }
});
