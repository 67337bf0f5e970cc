//! DSSE (Dead Simple Signing Envelope) pre-authentication encoding.

/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths in ASCII decimal (DSSE protocol v1.0).
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The faulty encoding of model-signing before 1.0 (`pae_compat` there),
/// which model-signing still accepts when verifying: `"DSSEV1"`, and the
/// payload written as Python's `repr()` of a `bytes` object.
pub fn pae_compat(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut s = format!(
        "DSSEV1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    python_bytes_repr(payload, &mut s);
    s.into_bytes()
}

/// Appends Python's `repr(b"...")` of `b` to `out`.
fn python_bytes_repr(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if char::from(c) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // Example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn bytes_repr_matches_python() {
        let mut s = String::new();
        python_bytes_repr(b"a'b\n\x00\xff\\", &mut s);
        assert_eq!(s, r#"b"a'b\n\x00\xff\\""#);
        let mut s = String::new();
        python_bytes_repr(b"a'\"", &mut s);
        assert_eq!(s, r#"b'a\'"'"#);
    }
}
