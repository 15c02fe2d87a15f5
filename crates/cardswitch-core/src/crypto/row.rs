//! Tamper evidence for stored rows: a canonical, versioned encoding of a row's
//! values, its MAC (optionally chained to the MAC of the row before it), and a
//! sealed copy from which the values can be restored.
//!
//! The encoding is unambiguous by construction: every field is written as its
//! name, a type tag and a length-prefixed value, so no two different rows can
//! encode to the same bytes, whatever their text contains.

use rust_decimal::Decimal;

use super::mac::MacKey;
use super::seal::MasterKey;
use super::{CryptoError, SecretVec};

/// The first bytes of every encoding; bump the version to change the format.
const MAGIC: &[u8] = b"cardswitch row v1\n";

/// One column value as the MAC sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Money(Decimal),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl Value {
    fn tag(&self) -> u8 {
        match self {
            Value::Null => b'N',
            Value::Text(_) => b'T',
            Value::Int(_) => b'I',
            Value::Money(_) => b'M',
            Value::Bytes(_) => b'B',
            Value::Bool(_) => b'?',
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Value::Null => Vec::new(),
            Value::Text(s) => s.as_bytes().to_vec(),
            Value::Int(i) => i.to_be_bytes().to_vec(),
            // Normalised, so 1.5 and 1.50 (equal in NUMERIC) encode alike.
            Value::Money(d) => d.normalize().to_string().into_bytes(),
            Value::Bytes(b) => b.clone(),
            Value::Bool(b) => vec![u8::from(*b)],
        }
    }
}

/// A row of `table` as the program last wrote it: its key and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowImage {
    pub table: String,
    pub key: String,
    pub fields: Vec<(String, Value)>,
}

impl RowImage {
    pub fn new(table: &str, key: &str) -> Self {
        RowImage {
            table: table.to_owned(),
            key: key.to_owned(),
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.fields.push((name.to_owned(), value));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The canonical bytes the MAC and the sealed copy cover.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put(&mut out, self.table.as_bytes());
        put(&mut out, self.key.as_bytes());
        out.extend_from_slice(&(self.fields.len() as u32).to_be_bytes());
        for (name, value) in &self.fields {
            put(&mut out, name.as_bytes());
            out.push(value.tag());
            put(&mut out, &value.payload());
        }
        out
    }

    /// The inverse of [`RowImage::encode`], for restoring from a sealed copy.
    pub fn decode(bytes: &[u8]) -> Result<RowImage, CryptoError> {
        let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or(CryptoError::Encoding)?);
        let table = r.text()?;
        let key = r.text()?;
        let n = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
        let mut fields = Vec::new();
        for _ in 0..n {
            let name = r.text()?;
            let tag = r.take(1)?[0];
            let raw = r.chunk()?;
            let value = match tag {
                b'N' if raw.is_empty() => Value::Null,
                b'T' => {
                    Value::Text(String::from_utf8(raw.to_vec()).map_err(|_| CryptoError::Encoding)?)
                }
                b'I' => Value::Int(i64::from_be_bytes(
                    raw.try_into().map_err(|_| CryptoError::Encoding)?,
                )),
                b'M' => Value::Money(
                    std::str::from_utf8(raw)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(CryptoError::Encoding)?,
                ),
                b'B' => Value::Bytes(raw.to_vec()),
                b'?' if raw.len() == 1 && raw[0] <= 1 => Value::Bool(raw[0] == 1),
                _ => return Err(CryptoError::Encoding),
            };
            fields.push((name, value));
        }
        if !r.0.is_empty() {
            return Err(CryptoError::Encoding);
        }
        Ok(RowImage { table, key, fields })
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if self.0.len() < n {
            return Err(CryptoError::Encoding);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn chunk(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }

    fn text(&mut self) -> Result<String, CryptoError> {
        String::from_utf8(self.chunk()?.to_vec()).map_err(|_| CryptoError::Encoding)
    }
}

/// The row MAC: HMAC-SHA256 under the row key over the encoding, chained to
/// `prev` (the MAC of the row before it in its chain) when there is one, so a
/// deleted, inserted or reordered row breaks every MAC after it.
pub fn row_mac(key: &MacKey, image: &RowImage, prev: Option<&[u8]>) -> [u8; 32] {
    let encoded = image.encode();
    match prev {
        Some(p) => key.sign(&[b"chained\n", &(p.len() as u32).to_be_bytes(), p, &encoded]),
        None => key.sign(&[b"single\n", &encoded]),
    }
}

/// Checks a stored MAC in constant time.
pub fn verify_row_mac(key: &MacKey, image: &RowImage, prev: Option<&[u8]>, mac: &[u8]) -> bool {
    let encoded = image.encode();
    match prev {
        Some(p) => key.verify(
            &[b"chained\n", &(p.len() as u32).to_be_bytes(), p, &encoded],
            mac,
        ),
        None => key.verify(&[b"single\n", &encoded], mac),
    }
}

fn sealed_aad(table: &str, key: &str) -> Vec<u8> {
    format!("cardswitch v1 sealed row\n{table}\n{key}").into_bytes()
}

/// The sealed copy: the encoding under the data key, bound by its associated
/// data to the row's table and key, so it cannot be copied onto another row.
pub fn seal_row(data_key: &MasterKey, image: &RowImage) -> Vec<u8> {
    data_key.seal(&sealed_aad(&image.table, &image.key), &image.encode())
}

/// Opens the sealed copy of the row `key` of `table`.
pub fn open_row(
    data_key: &MasterKey,
    table: &str,
    key: &str,
    sealed: &[u8],
) -> Result<RowImage, CryptoError> {
    let plain: SecretVec = data_key.open(&sealed_aad(table, key), sealed)?;
    let image = RowImage::decode(plain.expose())?;
    if image.table != table || image.key != key {
        return Err(CryptoError::Decrypt);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret32;

    fn card(balance: i64) -> RowImage {
        RowImage::new("cards", "8800001")
            .with("status", Value::Text("active".into()))
            .with("balance", Value::Money(Decimal::new(balance, 2)))
            .with("points", Value::Int(120))
            .with("pin_hash", Value::Null)
            .with("locked", Value::Bool(false))
            .with("salt", Value::Bytes(vec![0, 1, 2]))
    }

    #[test]
    fn encoding_round_trips_and_normalises_money() {
        let img = card(10_050);
        assert_eq!(
            RowImage::decode(&img.encode()).unwrap().encode(),
            img.encode()
        );
        let a = RowImage::new("t", "k").with("m", Value::Money(Decimal::new(150, 2)));
        let b = RowImage::new("t", "k").with("m", Value::Money(Decimal::new(15, 1)));
        assert_eq!(a.encode(), b.encode());
    }

    #[test]
    fn encoding_is_unambiguous() {
        let a = RowImage::new("t", "k").with("a", Value::Text("b".into()));
        let b = RowImage::new("t", "k").with("ab", Value::Text("".into()));
        let c = RowImage::new("t", "ka").with("", Value::Text("b".into()));
        assert_ne!(a.encode(), b.encode());
        assert_ne!(a.encode(), c.encode());
        let n = RowImage::new("t", "k").with("a", Value::Null);
        let e = RowImage::new("t", "k").with("a", Value::Text(String::new()));
        assert_ne!(n.encode(), e.encode());
    }

    #[test]
    fn decode_refuses_garbage() {
        let good = card(1).encode();
        for cut in 0..good.len() {
            assert!(RowImage::decode(&good[..cut]).is_err(), "prefix {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(RowImage::decode(&long).is_err());
    }

    #[test]
    fn mac_detects_changes_and_chain_breaks() {
        let key = MacKey::new(Secret32::random().expose());
        let img = card(100);
        let m = row_mac(&key, &img, None);
        assert!(verify_row_mac(&key, &img, None, &m));
        assert!(!verify_row_mac(&key, &card(101), None, &m));
        let other = MacKey::new(Secret32::random().expose());
        assert!(!verify_row_mac(&other, &img, None, &m));
        let prev = [1u8; 32];
        let chained = row_mac(&key, &img, Some(&prev));
        assert_ne!(chained, m);
        assert!(verify_row_mac(&key, &img, Some(&prev), &chained));
        assert!(!verify_row_mac(&key, &img, Some(&[2u8; 32]), &chained));
        assert!(!verify_row_mac(&key, &img, None, &chained));
    }

    #[test]
    fn sealed_copy_restores_and_is_bound_to_its_row() {
        let dk = MasterKey::generate();
        let img = card(4_200);
        let sealed = seal_row(&dk, &img);
        assert_eq!(open_row(&dk, "cards", "8800001", &sealed).unwrap(), img);
        assert_eq!(
            open_row(&dk, "cards", "8800002", &sealed),
            Err(CryptoError::Decrypt)
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_row(&dk, "cards", "8800001", &flipped).is_err());
    }
}
