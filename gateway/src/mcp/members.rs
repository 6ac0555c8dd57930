//! Reading the members of a JSON object the gateway decides on, so that no
//! upstream can read them otherwise: each known member at most once, and no
//! member whose name equals a known one under case folding (`"Name"`,
//! `"METHOD"`, `"paramſ"`) — Go's decoder, among others, would take it for
//! the known one, while a case-sensitive reading skips it. Unknown members
//! are skipped without being kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, Visitor};
use sluice_config::fold::fold_eq;

/// The error text for a member named in another case; `jsonrpc` maps it to
/// its own refusal reason.
pub const CASE_VARIANT: &str = "a member name differs only in case from one the gateway reads";

/// The members a struct reads: their names, and `index`, the position of
/// a name among them (a `match`, as a derive would write it).
#[derive(Clone, Copy)]
pub struct Known {
    pub names: &'static [&'static str],
    pub index: fn(&str) -> Option<usize>,
}

/// Walk `map`: `on_known(i, map)` must read the value of `names[i]`.
pub fn read<'de, A: MapAccess<'de>>(
    mut map: A,
    known: Known,
    mut on_known: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = 0u32;
    let names = known.names;
    debug_assert!(names.len() <= 32);
    while let Some(key) = map.next_key_seed(KeySeed(known))? {
        match key {
            Key::Known(i) => {
                if seen & (1 << i) != 0 {
                    return Err(A::Error::duplicate_field(names[i]));
                }
                seen |= 1 << i;
                on_known(i, &mut map)?;
            }
            Key::Variant => return Err(A::Error::custom(CASE_VARIANT)),
            Key::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

enum Key {
    Known(usize),
    Variant,
    Other,
}

struct KeySeed(Known);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: Error>(self, key: &str) -> Result<Key, E> {
        if let Some(i) = (self.0.index)(key) {
            return Ok(Key::Known(i));
        }
        // Lengths differ for almost every unknown key; folding can change a
        // non-ASCII key's length, so those are always compared.
        let variant = self
            .0
            .names
            .iter()
            .any(|n| (n.len() == key.len() || !key.is_ascii()) && fold_eq(n, key));
        Ok(if variant { Key::Variant } else { Key::Other })
    }
}
