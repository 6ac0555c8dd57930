//! A rule's conditions on one call's arguments, read in three values: a
//! value an upstream could read more than one way counts against the caller.

use sluice_config::fold::fold_eq;
use sluice_config::{glob_path, Condition, Test};

/// What a condition says of one call's arguments. `Unknown` is a value the
/// condition cannot read one way — a string where a number is tested, a
/// float sitting on a bound, a key an upstream could match in another case —
/// and an upstream could read it either way: it counts against the caller
/// (a deny holds, an approval is needed, an allow does not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    /// Every condition of a rule: false if one is false, else unknown if
    /// one is unknown.
    pub fn all(conds: &[Condition], args: &serde_json::Value) -> Truth {
        let mut out = Truth::True;
        for c in conds {
            match test(c, args) {
                Truth::False => return Truth::False,
                Truth::Unknown => out = Truth::Unknown,
                Truth::True => {}
            }
        }
        out
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

/// The condition on these arguments, in three values.
pub fn test(c: &Condition, args: &serde_json::Value) -> Truth {
    let v = match lookup(args, &c.pointer) {
        Lookup::Found(v) => v,
        Lookup::Missing => return Truth::False,
        Lookup::Ambiguous => return Truth::Unknown,
    };
    match &c.test {
        Test::Equals(want) => equals(v, want),
        Test::Glob(g) => v
            .as_str()
            .map_or(Truth::Unknown, |s| glob_path(g, s).into()),
        Test::Max(m) => compare(v, *m, |x, m| x <= m),
        Test::Min(m) => compare(v, *m, |x, m| x >= m),
    }
}

/// A number against a bound. A float equal to the bound may be a longer
/// literal that a double rounded onto it (`10.0000000000000001`), which an
/// exact reader puts on the other side: unknown. Any other float is on the
/// same side of the bound whatever precision reads it.
fn compare(v: &serde_json::Value, bound: f64, ok: fn(f64, f64) -> bool) -> Truth {
    let Some(n) = v.as_number() else {
        return Truth::Unknown;
    };
    let Some(x) = n.as_f64() else {
        return Truth::Unknown;
    };
    if n.is_f64() && x == bound {
        return Truth::Unknown;
    }
    ok(x, bound).into()
}

/// JSON equality as an upstream in any language reads it: another type is
/// unknown (a lax decoder coerces `"5"` to 5), numbers compare by value,
/// a float that equals an integer may have been rounded onto it.
fn equals(v: &serde_json::Value, want: &serde_json::Value) -> Truth {
    use serde_json::Value::*;
    match (v, want) {
        (Number(a), Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if x == y => {
                if a == b && !a.is_f64() {
                    Truth::True
                } else {
                    Truth::Unknown
                }
            }
            (Some(_), Some(_)) => Truth::False,
            _ => Truth::Unknown,
        },
        (String(a), String(b)) => (a == b).into(),
        (Bool(a), Bool(b)) => (a == b).into(),
        (Null, Null) => Truth::True,
        (Array(_), Array(_)) | (Object(_), Object(_)) => (v == want).into(),
        _ => Truth::Unknown,
    }
}

enum Lookup<'a> {
    Found(&'a serde_json::Value),
    Missing,
    /// An object on the way holds a key that equals the wanted one under
    /// case folding (Go's decoder matches `"Repo"` to a `repo` field).
    Ambiguous,
}

/// `serde_json::Value::pointer`, refusing keys an upstream could match in
/// another case.
fn lookup<'a>(mut v: &'a serde_json::Value, pointer: &str) -> Lookup<'a> {
    if pointer.is_empty() {
        return Lookup::Found(v);
    }
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        v = match v {
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| *k != token && fold_eq(k, &token)) {
                    return Lookup::Ambiguous;
                }
                match map.get(&token) {
                    Some(next) => next,
                    None => return Lookup::Missing,
                }
            }
            serde_json::Value::Array(items) => {
                let at = (!token.starts_with('+') && (token == "0" || !token.starts_with('0')))
                    .then(|| token.parse::<usize>().ok())
                    .flatten();
                match at.and_then(|i| items.get(i)) {
                    Some(next) => next,
                    None => return Lookup::Missing,
                }
            }
            _ => return Lookup::Missing,
        };
    }
    Lookup::Found(v)
}
