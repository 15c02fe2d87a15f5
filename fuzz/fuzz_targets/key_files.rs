//! Key file parsers: the master key text and PEM armour.
#![no_main]
use cardswitch::crypto::rsa::RsaPublic;
use cardswitch::crypto::seal::MasterKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = MasterKey::from_file_text(s);
    let _ = RsaPublic::from_pem(s);
    let _ = RsaPublic::from_spki_der(data);
});
