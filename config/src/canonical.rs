//! The canonical hash of a JSON value: what binds an approval to the exact
//! arguments (and tool definition) it was given for, on both sides.

/// Hex SHA-256 of `v` written canonically: object keys sorted at every
/// level, no whitespace. The gateway and control hash arguments (and tool
/// definitions) this way, so a key order or spacing change is the same call
/// and any value change is a different one.
pub fn canonical_hash(v: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    hex(&Sha256::digest(&out))
}

/// The fields of a tool definition that say what it does to a model and
/// what it takes and gives: what pins and approvals bind to. In canonical
/// (byte) order.
pub const DEFINITION_FIELDS: [&str; 6] = [
    "annotations",
    "description",
    "inputSchema",
    "name",
    "outputSchema",
    "title",
];

/// The digest of a listed tool's definition: the canonical hash of its
/// [`DEFINITION_FIELDS`] (others, such as `_meta` or `icons`, are left out).
/// Written as the canonical form of that object, without building it.
pub fn definition_digest(tool: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    for f in DEFINITION_FIELDS {
        let Some(v) = tool.get(f) else { continue };
        if out.len() > 1 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(f.as_bytes());
        out.extend_from_slice(b"\":");
        write_canonical(v, &mut out);
    }
    out.push(b'}');
    hex(&Sha256::digest(&out))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_definition_digest_is_the_canonical_hash_of_its_fields() {
        let t: serde_json::Value = serde_json::from_str(
            r#"{"name":"pay","description":"Pay.","inputSchema":{"type":"object","properties":{"a":{}}},
                "annotations":{"readOnlyHint":false},"_meta":{"x":1},"icons":[]}"#,
        )
        .expect("json");
        let kept: serde_json::Map<String, serde_json::Value> = super::DEFINITION_FIELDS
            .iter()
            .filter_map(|f| Some(((*f).to_owned(), t.get(*f)?.clone())))
            .collect();
        let whole = super::canonical_hash(&serde_json::Value::Object(kept));
        assert_eq!(super::definition_digest(&t), whole);
        let mut sorted = super::DEFINITION_FIELDS;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            super::DEFINITION_FIELDS,
            "written in canonical order"
        );
    }

    #[test]
    fn key_order_and_spacing_do_not_change_the_hash() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).expect("json");
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a": { "x": "s", "y": [1, 2] }, "b": 1 }"#).expect("json");
        let c: serde_json::Value =
            serde_json::from_str(r#"{"b":2,"a":{"y":[1,2],"x":"s"}}"#).expect("json");
        assert_eq!(super::canonical_hash(&a), super::canonical_hash(&b));
        assert_ne!(super::canonical_hash(&a), super::canonical_hash(&c));
        assert_eq!(super::canonical_hash(&a).len(), 64);
    }
}
