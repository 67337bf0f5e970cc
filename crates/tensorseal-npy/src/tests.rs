use super::*;
use proptest::prelude::*;

fn npy(version: u8, header: &str) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.push(version);
    b.push(0);
    let h = header.as_bytes();
    if version == 1 {
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(h);
    b
}

fn verdict(header: &str) -> Verdict {
    parse_header(&npy(1, header), DEFAULT_MAX_HEADER)
        .unwrap()
        .dtype_verdict()
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

#[test]
fn literals_follow_python() {
    let ev = |t: &str| literal_eval(t, false);
    assert_eq!(ev("'\\x4f'"), Ok(s("O")));
    assert_eq!(ev("'\\u004f'"), Ok(s("O")));
    assert_eq!(ev("'\\U0000004f'"), Ok(s("O")));
    assert_eq!(ev("'\\117'"), Ok(s("O")));
    assert_eq!(ev("r'\\x4f'"), Ok(s("\\x4f")));
    assert_eq!(ev("'\\q'"), Ok(s("\\q")));
    assert_eq!(ev("'O' \"8\""), Ok(s("O8")));
    assert_eq!(ev("('O'\n  # c\n '8')"), Ok(s("O8")));
    assert_eq!(ev("'''O'''"), Ok(s("O")));
    assert_eq!(ev("'a\\\nb'"), Ok(s("ab")));
    assert_eq!(ev("b'\\777'"), Ok(Value::Bytes(vec![0xff])));
    assert_eq!(ev("'\\777'"), Ok(s("\u{1ff}")));
    assert_eq!(ev("Rb'\\x'"), Ok(Value::Bytes(b"\\x".to_vec())));
    assert_eq!(ev("-1_0"), Ok(Value::Int(-10)));
    assert_eq!(ev("- 0x_1f"), Ok(Value::Int(-31)));
    assert_eq!(ev("00"), Ok(Value::Int(0)));
    assert_eq!(ev("(1)"), Ok(Value::Int(1)));
    assert_eq!(ev("( 1 , )"), Ok(Value::Tuple(vec![Value::Int(1)])));
    assert_eq!(ev("()"), Ok(Value::Tuple(vec![])));
    assert_eq!(ev("{1,}"), Ok(Value::Set(vec![Value::Int(1)])));
    assert_eq!(ev(" \t{}\n  \n# x\n"), Ok(Value::Dict(vec![])));
    for bad in [
        "01",
        "1__0",
        "1_",
        "0x",
        "0x__1",
        "--1",
        "'a' b'b'",
        "f'x'",
        "ur'x'",
        "'x",
        "'a\nb'",
        "{'a':1,,}",
        "{**a}",
        "[,]",
        "(,)",
        "1 2",
        "x",
        "set(1)",
        "set\n()",
        "{}\\\n",
        "b'\u{e9}'",
        "'\\x4'",
        "3L",
        "0b2",
        "0b12",
        "1if 1 else 2",
        "\u{0}",
    ] {
        assert!(
            matches!(ev(bad), Err(LiteralError::Invalid { .. })),
            "{bad:?} -> {:?}",
            ev(bad)
        );
    }
    for unsupported in [
        "1.5",
        "1e3",
        "1j",
        "...",
        "'\\N{LATIN CAPITAL LETTER O}'",
        "'\\ud800'",
        "{}\r\n",
        "'\r'",
    ] {
        assert!(
            matches!(ev(unsupported), Err(LiteralError::Unsupported { .. })),
            "{unsupported:?} -> {:?}",
            ev(unsupported)
        );
    }
    assert_eq!(
        literal_eval("(3L, 4 L)", true),
        Ok(Value::Tuple(vec![Value::Int(3), Value::Int(4)]))
    );
    assert!(literal_eval("3Lx", true).is_err());
}

#[test]
fn nesting_is_bounded() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert!(matches!(
        literal_eval(&deep, false),
        Err(LiteralError::Unsupported { .. })
    ));
}

#[test]
fn last_duplicate_key_wins() {
    let h = "{'descr': '<f4', 'descr': '|O', 'fortran_order': False, 'shape': (2,)}";
    assert_eq!(verdict(h), Verdict::Object("\"|O\"".into()));
    let h = "{'descr': '|O', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}";
    assert_eq!(verdict(h), Verdict::Plain);
    let hdr = parse_header(&npy(1, h), DEFAULT_MAX_HEADER).unwrap();
    assert_eq!(
        hdr.numeric(),
        Some(Numeric {
            kind: Kind::Float,
            size: 4,
            order: ByteOrder::Little
        })
    );
}

#[test]
fn every_object_spelling() {
    for d in [
        "'O'",
        "'|O'",
        "'<O'",
        "'>O'",
        "'=O'",
        "'O8'",
        "'O4'",
        "'O 8'",
        "'O+8'",
        "'object'",
        "'object_'",
        "'\\x4f'",
        "'\\u004f'",
        "'\\x11'",
        "'T'",
        "'f4,O'",
        "'(2,)O'",
        "'2O'",
        "('|O', (2,))",
        "[('a', '<f4'), ('b', [('c', [('d', '|O')])])]",
        "[(('t', 'a'), '|O')]",
        "[('a', '|O', (3,))]",
        "[['a', '|O']]",
        "{'aO': 1}",
        "['aO']",
        "[('a', ('|O', 2))]",
    ] {
        let h = format!("{{'descr': {d}, 'fortran_order': False, 'shape': ()}}");
        assert!(
            matches!(verdict(&h), Verdict::Object(_)),
            "{d} -> {:?}",
            verdict(&h)
        );
    }
}

#[test]
fn plain_and_unknown() {
    for d in [
        "'<f4'",
        "'|b1'",
        "'<U3'",
        "'|S5'",
        "'<M8[ns]'",
        "'|V8'",
        "[('a', '<f4'), ('', '|V4'), ('b', '<i8', (2, 3))]",
        "('<f4', (2,))",
    ] {
        let h = format!("{{'descr': {d}, 'fortran_order': True, 'shape': (1, 2)}}");
        assert_eq!(verdict(&h), Verdict::Plain, "{d}");
    }
    for d in [
        "'float32'",
        "'f4,i8'",
        "'Object'",
        "b'O'",
        "{'a': 1}",
        "[('a',)]",
        "('<f4', '|O8x')",
        "'\\x0c'",
    ] {
        let h = format!("{{'descr': {d}, 'fortran_order': True, 'shape': (1, 2)}}");
        assert!(
            matches!(verdict(&h), Verdict::Unknown(_)),
            "{d} -> {:?}",
            verdict(&h)
        );
    }
}

#[test]
fn header_rules() {
    let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }";
    let h = parse_header(&npy(2, ok), DEFAULT_MAX_HEADER).unwrap();
    assert!(h.python2_ints);
    assert_eq!(h.shape, vec![Value::Int(3), Value::Int(4)]);
    // Version 3.0 does not get the Python 2 filter.
    assert!(parse_header(&npy(3, ok), DEFAULT_MAX_HEADER).is_err());
    for bad in [
        "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}",
        "{b'descr': '<f4', 'fortran_order': False, 'shape': ()}",
        "['descr']",
    ] {
        assert!(
            matches!(
                parse_header(&npy(1, bad), DEFAULT_MAX_HEADER),
                Err(NpyError::Header { .. })
            ),
            "{bad}"
        );
    }
    let mut v = npy(1, ok);
    v[7] = 1;
    assert_eq!(
        parse_header(&v, DEFAULT_MAX_HEADER),
        Err(NpyError::Version { major: 1, minor: 1 })
    );
    let long = npy(
        2,
        &format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (){}}}",
            " ".repeat(20_000)
        ),
    );
    let h = parse_header(&long, DEFAULT_MAX_HEADER).unwrap();
    assert!(h.exceeds_numpy_default_limit());
    assert!(parse_header(&long, 100).unwrap_err().may_load());
    // latin-1 versus UTF-8.
    let mut l1 = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
    let n = l1.len();
    l1[n - 3] = 0xe9; // inside no string: refused
    assert!(parse_header(&l1, DEFAULT_MAX_HEADER).is_err());
    let mut v3 = npy(3, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}");
    v3[20] = 0xff;
    assert!(matches!(
        parse_header(&v3, DEFAULT_MAX_HEADER),
        Err(NpyError::Encoding(_))
    ));
    assert!(matches!(
        read_preamble(b"\x93NUM"),
        Err(NpyError::Truncated(_))
    ));
    assert!(matches!(
        read_preamble(b"\x93NUMPX\x01\x00"),
        Err(NpyError::NoMagic)
    ));
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&bytes, DEFAULT_MAX_HEADER).map(|h| h.dtype_verdict());
        let mut v = npy(1, "");
        v.truncate(8);
        v.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        v.extend_from_slice(&bytes);
        let _ = parse_header(&v, DEFAULT_MAX_HEADER).map(|h| h.dtype_verdict());
    }

    /// Values rendered as Python source evaluate back to themselves.
    #[test]
    fn round_trip(v in value_strategy()) {
        let text = to_python(&v);
        prop_assert_eq!(literal_eval(&text, false), Ok(v));
    }

    /// Object-free descrs numpy writes stay Plain; putting an object type anywhere
    /// in them makes them Object.
    #[test]
    fn object_anywhere(fields in proptest::collection::vec(("[a-z]{1,4}", prop::sample::select(vec!["<f4", "|b1", ">i8", "<U2", "|S3", "<c8"])), 1..6), at in 0usize..6) {
        let mut list: Vec<Value> = fields.iter().map(|(n, d)| Value::Tuple(vec![s(n), s(d)])).collect();
        prop_assert_eq!(classify_descr(&Value::List(list.clone())), Verdict::Plain);
        let i = at % list.len();
        list[i] = Value::Tuple(vec![s("x"), Value::List(vec![Value::Tuple(vec![s("y"), s("|O")])])]);
        prop_assert!(matches!(classify_descr(&Value::List(list)), Verdict::Object(_)));
    }
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| Value::Int(n.into())),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::None),
        any::<String>()
            .prop_filter("no surrogates", |_| true)
            .prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ];
    leaf.clone().prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            // Keys must be hashable: leaves only.
            proptest::collection::vec((leaf.clone(), inner), 0..4).prop_map(Value::Dict),
        ]
    })
}

/// Python source for `v`, with escapes chosen at random-ish from the value itself.
fn to_python(v: &Value) -> String {
    match v {
        Value::Str(x) => {
            let mut out = String::from("'");
            for (i, c) in x.chars().enumerate() {
                match (c, i % 3) {
                    ('\'', _) => out.push_str("\\'"),
                    ('\\', _) => out.push_str("\\\\"),
                    (c, 0) if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
                    (c, 1) if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    (c, _) => out.push_str(&format!("\\U{:08x}", c as u32)),
                }
            }
            out.push('\'');
            out
        }
        Value::Bytes(b) => {
            let mut out = String::from("b'");
            for c in b {
                out.push_str(&format!("\\{:o}", c));
            }
            out.push('\'');
            out
        }
        Value::Int(n) => format!("{n}"),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::None => "None".into(),
        Value::Tuple(items) => {
            let inner: Vec<String> = items.iter().map(to_python).collect();
            if items.len() == 1 {
                format!("( {} ,)", inner[0])
            } else {
                format!("({})", inner.join(" ,\n "))
            }
        }
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(to_python).collect::<Vec<_>>().join(", ")
        ),
        Value::Set(items) => format!(
            "{{{}}}",
            items.iter().map(to_python).collect::<Vec<_>>().join(", ")
        ),
        Value::Dict(items) => format!(
            "{{{}}}",
            items
                .iter()
                .map(|(k, v)| format!("{} : {}", to_python(k), to_python(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
