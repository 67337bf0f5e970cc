//! Differential test against CPython: tests/data/literals.tsv holds random literal texts
//! with what `ast.literal_eval` made of them (scripts/gen_npy_literal_corpus.py). Every
//! text this evaluator accepts must be accepted by Python with the same value; texts
//! Python accepts may be refused here (the evaluator is a strict subset), but the
//! header-shaped ones numpy writes must not be.

use tensorseal_npy::{literal_eval, Value};

fn canon(v: &Value) -> String {
    match v {
        Value::None => "N".into(),
        Value::Bool(b) => format!("B{}", u8::from(*b)),
        Value::Int(n) => format!("i{n}"),
        Value::Str(s) => format!("s{}", hex(s.as_bytes())),
        Value::Bytes(b) => format!("b{}", hex(b)),
        Value::Tuple(items) => format!(
            "T({})",
            items.iter().map(canon).collect::<Vec<_>>().join(",")
        ),
        Value::List(items) => format!(
            "L[{}]",
            items.iter().map(canon).collect::<Vec<_>>().join(",")
        ),
        Value::Set(items) => {
            // Python keeps the first of equal items (1 == True).
            let mut seen: Vec<(String, String)> = Vec::new();
            for i in items {
                let k = eq_key(i);
                if !seen.iter().any(|(e, _)| *e == k) {
                    seen.push((k, canon(i)));
                }
            }
            let mut shown: Vec<String> = seen.into_iter().map(|(_, c)| c).collect();
            shown.sort();
            format!("S{{{}}}", shown.join(","))
        }
        Value::Dict(items) => {
            // Python keeps the first key's position and spelling, and the last value.
            let mut out: Vec<(String, String, String)> = Vec::new();
            for (k, v) in items {
                let e = eq_key(k);
                match out.iter_mut().find(|(x, _, _)| *x == e) {
                    Some(slot) => slot.2 = canon(v),
                    None => out.push((e, canon(k), canon(v))),
                }
            }
            let parts: Vec<String> = out
                .into_iter()
                .map(|(_, k, v)| format!("{k}={v}"))
                .collect();
            format!("D{{{}}}", parts.join(","))
        }
    }
}

/// Python equality for hashing: True == 1, False == 0.
fn eq_key(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("i{}", u8::from(*b)),
        Value::Tuple(items) => format!(
            "T({})",
            items.iter().map(eq_key).collect::<Vec<_>>().join(",")
        ),
        other => canon(other),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("corpus hex"))
        .collect()
}

#[test]
fn agrees_with_cpython() {
    let corpus = include_str!("data/literals.tsv");
    let (mut accepted, mut python_ok) = (0, 0);
    for line in corpus.lines() {
        let (input, expected) = line.split_once('\t').expect("corpus line");
        let text = String::from_utf8(unhex(input)).expect("corpus text is UTF-8");
        if !expected.starts_with("ERR") {
            python_ok += 1;
        }
        if let Ok(v) = literal_eval(&text, false) {
            accepted += 1;
            assert_eq!(canon(&v), expected, "{text:?}");
        }
    }
    // The corpus must exercise the evaluator, not just its refusals.
    assert!(
        accepted > python_ok / 2,
        "accepted {accepted} of {python_ok}"
    );
}
