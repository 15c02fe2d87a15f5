//! XML answers (protocol.md §4.1): the encoder the daemon uses and the strict
//! decoder the client and the tests use.
//!
//! proto-spec decides: the declaration is followed by exactly one `\n`, and
//! nothing else in the document is whitespace between elements; the body has
//! no trailing newline. The decoder refuses anything the encoder never writes
//! (DOCTYPE, entity declarations, processing instructions, comments, CDATA,
//! attributes other than `iv` on `data`, unknown elements, mixed content),
//! because an answer that parses in two ways is an answer two clients can
//! read differently.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::errno::Errno;
use super::grammar;
use super::message::IV_LEN;

/// The XML declaration and the newline after it.
pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// One result row: `(name, value)` pairs in the order they are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(String, String)>);

impl Row {
    pub fn new() -> Self {
        Row::default()
    }

    /// Appends a field; `name` must match `[a-z_][a-z0-9_]*`.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((name.into(), value.into()));
        self
    }

    /// Builder form of [`Row::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A result set: rows in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows(pub Vec<Row>);

/// What follows `<now>` in an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerBody {
    /// Errors answered before the sid is known, and txn answers are never this.
    None,
    /// hello and login: the row in clear.
    Rows(Rows),
    /// txn: `<data iv="…">…</data>`, AES-GCM of the encoded [`Rows`].
    Data { iv: Vec<u8>, data: Vec<u8> },
}

/// A decoded answer. `success` is not stored: it is `errno == Errno::Ok`,
/// and the decoder refuses an answer where the two disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub errno: Errno,
    pub errmsg: String,
    /// A 1001's first field at fault (protocol.md §4.1), when the answer
    /// names one.
    pub field: Option<String>,
    pub now: u64,
    pub body: AnswerBody,
}

impl Answer {
    pub fn success(&self) -> bool {
        self.errno == Errno::Ok
    }
}

/// Whether `name` may be an element name in a row.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    matches!(b.first(), Some(b'a'..=b'z' | b'_'))
        && b.iter()
            .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Escapes element text. `\t \n \r` become character references so that a
/// value survives XML's line-end normalisation and the document stays free
/// of whitespace between tags; characters XML 1.0 cannot carry at all (other
/// C0 controls, U+FFFE, U+FFFF) become U+FFFD.
fn escape_into(s: &str, out: &mut String) {
    // Most values (digits, hex, names) need no escaping: copy them whole.
    if !s
        .bytes()
        .any(|b| b < 0x20 || matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | 0xef))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn leaf(name: &str, value: &str, out: &mut String) {
    debug_assert!(valid_name(name), "bad element name {name:?}");
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(value, out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn rows_into(rows: &Rows, out: &mut String) {
    out.push_str("<rows>");
    for row in &rows.0 {
        out.push_str("<row>");
        for (name, value) in &row.0 {
            leaf(name, value, out);
        }
        out.push_str("</row>");
    }
    out.push_str("</rows>");
}

/// About the length of `rows` encoded (exact when nothing needs escaping),
/// to size the output once.
fn rows_len_hint(rows: &Rows) -> usize {
    let fields: usize = rows
        .0
        .iter()
        .flat_map(|r| r.0.iter())
        .map(|(n, v)| 2 * n.len() + v.len() + 5)
        .sum();
    "<rows></rows>".len() + rows.0.len() * "<row></row>".len() + fields
}

/// The result set as encrypted into `<data>`: `<rows>…</rows>`, no declaration.
pub fn encode_rows(rows: &Rows) -> String {
    let mut out = String::with_capacity(rows_len_hint(rows));
    rows_into(rows, &mut out);
    out
}

/// A whole answer body, byte for byte what the daemon sends and MACs.
pub fn encode_answer(errno: Errno, now_ms: u64, body: &AnswerBody) -> String {
    encode_answer_at(errno, None, now_ms, body)
}

/// An answer naming the field at fault in `<field>`: every 1001 does
/// (`body` when `field` is `None`), no other errno. `field` is a name of ours
/// or one [`super::fault::Malformed::sent`] let through.
pub fn encode_answer_at(
    errno: Errno,
    field: Option<&str>,
    now_ms: u64,
    body: &AnswerBody,
) -> String {
    // Sized once: the fixed elements, the message, and the body.
    let body_len = match body {
        AnswerBody::None => 0,
        AnswerBody::Rows(rows) => rows_len_hint(rows),
        AnswerBody::Data { iv, data } => {
            32 + grammar::base64_len(iv.len()) + grammar::base64_len(data.len())
        }
    };
    let mut out =
        String::with_capacity(DECLARATION.len() + 160 + 2 * errno.message().len() + body_len);
    out.push_str(DECLARATION);
    out.push_str("<result>");
    leaf(
        "success",
        if errno == Errno::Ok { "1" } else { "0" },
        &mut out,
    );
    leaf("errno", &errno.code().to_string(), &mut out);
    leaf("errmsg", errno.message(), &mut out);
    if errno == Errno::Malformed {
        leaf("field", field.unwrap_or("body"), &mut out);
    }
    leaf("now", &now_ms.to_string(), &mut out);
    match body {
        AnswerBody::None => {}
        AnswerBody::Rows(rows) => rows_into(rows, &mut out),
        AnswerBody::Data { iv, data } => {
            out.push_str("<data iv=\"");
            grammar::base64_encode_into(iv, &mut out);
            out.push_str("\">");
            grammar::base64_encode_into(data, &mut out);
            out.push_str("</data>");
        }
    }
    out.push_str("</result>");
    out
}

/// Nesting needed by the deepest document (result/rows/row/field).
const MAX_DEPTH: usize = 4;

/// An element: either text (leaf) or child elements, never both.
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

fn parse_tree(bytes: &[u8]) -> Result<Node, Errno> {
    let text = std::str::from_utf8(bytes).map_err(|_| Errno::Malformed)?;
    if text.starts_with('\u{feff}') {
        return Err(Errno::Malformed);
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut first = true;
    loop {
        let ev = reader.read_event().map_err(|_| Errno::Malformed)?;
        let at_start = std::mem::take(&mut first);
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Decl(d) => {
                let version_ok = d.version().map_err(|_| Errno::Malformed)?.as_ref() == b"1.0";
                let enc_ok = match d.encoding() {
                    None => true,
                    Some(e) => e
                        .map_err(|_| Errno::Malformed)?
                        .eq_ignore_ascii_case(b"utf-8"),
                };
                if !at_start || !version_ok || !enc_ok {
                    return Err(Errno::Malformed);
                }
            }
            Event::Start(e) | Event::Empty(e) if root.is_none() => {
                let name = std::str::from_utf8(e.name().as_ref())
                    .ok()
                    .filter(|n| valid_name(n))
                    .ok_or(Errno::Malformed)?
                    .to_owned();
                let node = Node {
                    name,
                    attrs: attributes(&e)?,
                    children: Vec::new(),
                    text: String::new(),
                };
                stack.push(node);
                if stack.len() > MAX_DEPTH {
                    return Err(Errno::Malformed);
                }
                if empty {
                    close(&mut stack, &mut root)?;
                }
            }
            Event::End(_) => close(&mut stack, &mut root)?,
            Event::Text(t) => {
                let t = t.unescape().map_err(|_| Errno::Malformed)?;
                if !xml_chars(&t) {
                    return Err(Errno::Malformed);
                }
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&t),
                    None if t.bytes().all(|c| c.is_ascii_whitespace()) => {}
                    None => return Err(Errno::Malformed),
                }
            }
            Event::Eof => break,
            _ => return Err(Errno::Malformed),
        }
    }
    if !stack.is_empty() {
        return Err(Errno::Malformed);
    }
    root.ok_or(Errno::Malformed)
}

/// An element's attributes, each value in the characters XML allows.
fn attributes(e: &quick_xml::events::BytesStart<'_>) -> Result<Vec<(String, String)>, Errno> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|_| Errno::Malformed)?;
        let key = std::str::from_utf8(a.key.as_ref()).map_err(|_| Errno::Malformed)?;
        let value = a.unescape_value().map_err(|_| Errno::Malformed)?;
        if !xml_chars(&value) {
            return Err(Errno::Malformed);
        }
        attrs.push((key.to_owned(), value.into_owned()));
    }
    Ok(attrs)
}

/// Whether `s` holds only characters XML 1.0 allows (§2.2): no C0 control
/// but tab, line feed and carriage return, no U+FFFE or U+FFFF — raw or as
/// a character reference (fuzzing found raw ones accepted, and the encoder
/// writing them back as U+FFFD).
fn xml_chars(s: &str) -> bool {
    !s.chars().any(|c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    })
}

fn close(stack: &mut Vec<Node>, root: &mut Option<Node>) -> Result<(), Errno> {
    let node = stack.pop().ok_or(Errno::Malformed)?;
    if !node.children.is_empty() && !node.text.is_empty() {
        return Err(Errno::Malformed);
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
    Ok(())
}

fn leaf_text(node: &Node, name: &str) -> Result<String, Errno> {
    if node.name != name || !node.attrs.is_empty() || !node.children.is_empty() {
        return Err(Errno::Malformed);
    }
    Ok(node.text.clone())
}

fn rows_of(node: &Node) -> Result<Rows, Errno> {
    if node.name != "rows" || !node.attrs.is_empty() || !node.text.is_empty() {
        return Err(Errno::Malformed);
    }
    let mut rows = Vec::with_capacity(node.children.len());
    for r in &node.children {
        if r.name != "row" || !r.attrs.is_empty() || !r.text.is_empty() {
            return Err(Errno::Malformed);
        }
        let mut row = Row::new();
        for f in &r.children {
            if row.get(&f.name).is_some() {
                return Err(Errno::Malformed);
            }
            let v = leaf_text(f, &f.name)?;
            row.push(f.name.clone(), v);
        }
        rows.push(row);
    }
    Ok(Rows(rows))
}

/// Decodes a result set (the decrypted `<data>`, or `<rows>` on its own).
pub fn parse_rows(bytes: &[u8]) -> Result<Rows, Errno> {
    rows_of(&parse_tree(bytes)?)
}

/// Decodes a whole answer body. Check its MAC on these same bytes first.
pub fn parse_answer(bytes: &[u8]) -> Result<Answer, Errno> {
    let root = parse_tree(bytes)?;
    if root.name != "result" || !root.attrs.is_empty() || !root.text.is_empty() {
        return Err(Errno::Malformed);
    }
    let (head, field, rest) = match root.children.as_slice() {
        [a, b, c, f, d, rest @ ..] if f.name == "field" && rest.len() <= 1 => {
            ([a, b, c, d], Some(leaf_text(f, "field")?), rest)
        }
        [a, b, c, d, rest @ ..] if rest.len() <= 1 => ([a, b, c, d], None, rest),
        _ => return Err(Errno::Malformed),
    };
    let success = leaf_text(head[0], "success")?;
    let errno_text = leaf_text(head[1], "errno")?;
    let errmsg = leaf_text(head[2], "errmsg")?;
    let now = grammar::ts(&leaf_text(head[3], "now")?)?;
    // Only the one spelling the encoder writes: no sign, no leading zero.
    let errno = Errno::ALL
        .into_iter()
        .find(|e| e.code().to_string() == errno_text)
        .ok_or(Errno::Malformed)?;
    let success = match success.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(Errno::Malformed),
    };
    if success != (errno == Errno::Ok) || (field.is_some() && errno != Errno::Malformed) {
        return Err(Errno::Malformed);
    }
    let body = match rest.first() {
        None => AnswerBody::None,
        Some(n) if n.name == "rows" => AnswerBody::Rows(rows_of(n)?),
        Some(n) if n.name == "data" => {
            let iv = match n.attrs.as_slice() {
                [(k, v)] if k == "iv" => grammar::base64(v)?,
                _ => return Err(Errno::Malformed),
            };
            if iv.len() != IV_LEN || !n.children.is_empty() {
                return Err(Errno::Malformed);
            }
            AnswerBody::Data {
                iv,
                data: grammar::base64(&n.text)?,
            }
        }
        Some(_) => return Err(Errno::Malformed),
    };
    Ok(Answer {
        errno,
        errmsg,
        field,
        now,
        body,
    })
}

#[cfg(test)]
#[path = "xml_tests.rs"]
mod tests;
