use super::*;
use proptest::prelude::*;

const NOW: u64 = 1_795_000_000_000;

fn sample_rows() -> Rows {
    Rows(vec![
        Row::new()
            .with("order_no", "A-1")
            .with("name", "Tom & \"Jerry\" <'x'>"),
        Row::new().with("empty", "").with("multi_line", "a\r\nb\tc"),
    ])
}

#[test]
fn encodes_exactly() {
    assert_eq!(
        encode_answer(Errno::Ok, NOW, &AnswerBody::Data { iv: vec![0; 12], data: vec![1, 2, 3] }),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<result><success>1</success><errno>0</errno>\
         <errmsg>ok</errmsg><now>1795000000000</now><data iv=\"AAAAAAAAAAAAAAAA\">AQID</data></result>"
    );
    assert_eq!(
        encode_answer(Errno::KeyUnknown, NOW, &AnswerBody::None),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<result><success>0</success><errno>1004</errno>\
         <errmsg>key or session unknown, expired or revoked</errmsg><now>1795000000000</now></result>"
    );
    assert_eq!(
        encode_rows(&sample_rows()),
        "<rows><row><order_no>A-1</order_no><name>Tom &amp; &quot;Jerry&quot; &lt;&apos;x&apos;&gt;</name></row>\
         <row><empty></empty><multi_line>a&#13;&#10;b&#9;c</multi_line></row></rows>"
    );
    assert_eq!(encode_rows(&Rows::default()), "<rows></rows>");
    let mut controls = String::new();
    escape_into("a\u{0}b\u{1b}\u{ffff}", &mut controls);
    assert_eq!(controls, "a\u{fffd}b\u{fffd}\u{fffd}");
    // The copy-whole fast path and the char-by-char path agree.
    for (raw, want) in [
        ("12.50 A-1 \u{e9}\u{f000}", "12.50 A-1 \u{e9}\u{f000}"),
        ("\u{fffe}\u{f000}", "\u{fffd}\u{f000}"),
        ("x\u{7f}", "x\u{7f}"),
        ("", ""),
    ] {
        let mut out = String::from("<");
        escape_into(raw, &mut out);
        assert_eq!(out, format!("<{want}"));
    }
}

#[test]
fn round_trips() {
    let bodies = [
        AnswerBody::None,
        AnswerBody::Rows(sample_rows()),
        AnswerBody::Rows(Rows::default()),
        AnswerBody::Data {
            iv: vec![9; 12],
            data: vec![7; 40],
        },
    ];
    for errno in Errno::ALL {
        for body in &bodies {
            let enc = encode_answer(errno, NOW, body);
            let a = parse_answer(enc.as_bytes()).unwrap();
            assert_eq!(
                a,
                Answer {
                    errno,
                    errmsg: errno.message().into(),
                    field: (errno == Errno::Malformed).then(|| "body".into()),
                    now: NOW,
                    body: body.clone()
                }
            );
            assert_eq!(a.success(), errno == Errno::Ok);
        }
    }
    assert_eq!(
        parse_rows(encode_rows(&sample_rows()).as_bytes()),
        Ok(sample_rows())
    );
}

#[test]
fn accepts_equivalent_spellings() {
    let a = parse_rows(b"<rows><row><a/><b>x&#x41;&#66;</b></row><row/></rows>").unwrap();
    assert_eq!(
        a,
        Rows(vec![Row::new().with("a", "").with("b", "xAB"), Row::new()])
    );
    assert_eq!(parse_rows(b"<rows/>"), Ok(Rows::default()));
    let no_decl = b"<result><success>1</success><errno>0</errno><errmsg>ok</errmsg><now>1795000000000</now></result>";
    assert!(parse_answer(no_decl).is_ok());
}

#[test]
fn refuses() {
    let head = "<success>1</success><errno>0</errno><errmsg>ok</errmsg><now>1795000000000</now>";
    let ok = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<result>{head}</result>");
    assert!(parse_answer(ok.as_bytes()).is_ok());
    let bad = [
        format!("<!DOCTYPE result [<!ENTITY x \"y\">]><result>{head}</result>"),
        format!("<!DOCTYPE result><result>{head}</result>"),
        format!("<?xml-stylesheet href=\"a\"?><result>{head}</result>"),
        format!("<result><?pi x?>{head}</result>"),
        format!("<result><!-- c -->{head}</result>"),
        format!("<result>{head}<![CDATA[x]]></result>"),
        format!("<result>{head}<extra>1</extra></result>"),
        format!("<result>{head}<rows></rows><rows></rows></result>"),
        format!("<result>\n{head}</result>"),
        format!("<result>{head}</result><result>{head}</result>"),
        format!("<result>{head}</result>x"),
        format!("<result a=\"1\">{head}</result>"),
        format!("<result>{head}<data>AA==</data></result>"),
        format!("<result>{head}<data iv=\"AA==\">AA==</data></result>"),
        format!("<result>{head}<data iv=\"AAAAAAAAAAAAAAAA\" x=\"1\">AA==</data></result>"),
        format!("<result>{head}<data iv=\"AAAAAAAAAAAAAAAA\">A A=</data></result>"),
        format!("<result>{head}<rows><row><a>&x;</a></row></rows></result>"),
        format!("<result>{head}<rows><row><A>1</A></row></rows></result>"),
        format!("<result>{head}<rows><row><a:b>1</a:b></row></rows></result>"),
        format!("<result>{head}<rows><row><a>1</a><a>2</a></row></rows></result>"),
        format!("<result>{head}<rows><row><a><b>1</b></a></row></rows></result>"),
        format!("<result>{head}<rows><item/></rows></result>"),
        format!("<result>{head}<rows>x<row/></rows></result>"),
        format!("<result>{head}"),
        format!("<result>{head}</reslt>"),
        format!("\u{feff}<result>{head}</result>"),
        format!("<?xml version=\"1.1\"?><result>{head}</result>"),
        format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><result>{head}</result>"),
        format!("<result>{head}</result><?xml version=\"1.0\"?>"),
        head.replace("<success>1", "<success>0"),
        format!(
            "<result>{}</result>",
            head.replace("<success>1", "<success>0")
        ),
        format!(
            "<result>{}</result>",
            head.replace("<errno>0", "<errno>1010")
        ),
        format!("<result>{}</result>", head.replace("<errno>0", "<errno>00")),
        format!(
            "<result>{}</result>",
            head.replace("<now>1795000000000", "<now>x")
        ),
        format!(
            "<result>{}</result>",
            head.replace("<errmsg>ok</errmsg>", "")
        ),
        format!(
            "<result><errno>0</errno>{}</result>",
            head.replace("<errno>0</errno>", "")
        ),
        String::new(),
    ];
    for b in &bad {
        assert_eq!(parse_answer(b.as_bytes()), Err(Errno::Malformed), "{b}");
    }
    assert_eq!(
        parse_answer(b"<result>\xff</result>"),
        Err(Errno::Malformed)
    );
    assert_eq!(
        parse_rows(b"<rows><row><x>1</x></row></rows><rows/>"),
        Err(Errno::Malformed)
    );
    assert_eq!(
        parse_rows(b"<rows><row><x><y><z/></y></x></row></rows>"),
        Err(Errno::Malformed)
    );
    assert_eq!(parse_rows(b"<result/>"), Err(Errno::Malformed));
}

#[test]
fn names() {
    for ok in ["a", "_", "order_no", "a1", "points_delta"] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in ["", "1a", "A", "a-b", "a.b", "a:b", "é"] {
        assert!(!valid_name(bad), "{bad}");
    }
}

fn arb_rows() -> impl Strategy<Value = Rows> {
    let row = proptest::collection::btree_map("[a-z_][a-z0-9_]{0,8}", any::<String>(), 0..5)
        .prop_map(|m| Row(m.into_iter().collect()));
    proptest::collection::vec(row, 0..4).prop_map(Rows)
}

/// What a value reads back as: the characters XML cannot carry are replaced.
fn carried(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

proptest! {
    #[test]
    fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_answer(&b);
        let _ = parse_rows(&b);
    }

    #[test]
    fn never_panics_xmlish(s in "[<>/a-z \"=&#;?!\\[\\]-]{0,80}") {
        let _ = parse_answer(s.as_bytes());
        let _ = parse_rows(s.as_bytes());
    }

    #[test]
    fn rows_round_trip(rows in arb_rows()) {
        let got = parse_rows(encode_rows(&rows).as_bytes()).unwrap();
        let want = Rows(rows.0.iter().map(|r| Row(r.0.iter().map(|(n, v)| (n.clone(), carried(v))).collect())).collect());
        prop_assert_eq!(got, want);
    }
}

/// Found by fuzzing (fuzz/regressions/xml_answer/): raw control characters
/// in a row value were accepted, and the encoder wrote them back as U+FFFD.
#[test]
fn control_characters_are_refused_raw_or_referenced() {
    let found = include_bytes!("../../../../fuzz/regressions/xml_answer/raw-control-characters");
    assert_eq!(parse_answer(found), Err(Errno::Malformed));
    let ok = encode_answer(Errno::Ok, NOW, &AnswerBody::Rows(sample_rows()));
    for bad in ["\u{1}", "\u{0}", "&#1;", "&#x1f;", "\u{fffe}"] {
        let doc = ok.replacen("<row>", &format!("<row><x>a{bad}b</x>"), 1);
        assert_eq!(
            parse_answer(doc.as_bytes()),
            Err(Errno::Malformed),
            "{bad:?}"
        );
    }
    let tab = ok.replacen("<row>", "<row><x>a&#9;b</x>", 1);
    assert!(parse_answer(tab.as_bytes()).is_ok());
}
