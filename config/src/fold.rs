//! Case folding as case-insensitive JSON decoders apply it to member names.
//! Go's `encoding/json` matches `"Name"`, `"NAME"`, even `"ſ"` (U+017F) for
//! `s` and `"K"` (U+212A, Kelvin) for `k`, to a field named `name`: a key the
//! gateway reads as unknown can be the one such an upstream uses.

/// One character's simple case fold, close to Unicode's: what it lowercases
/// to after uppercasing, so `ſ` (upper `S`) folds to `s` and `K` to `k`.
fn fold(c: char) -> impl Iterator<Item = char> {
    c.to_uppercase().flat_map(char::to_lowercase)
}

/// Do `a` and `b` name the same member for a case-insensitive decoder?
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().flat_map(fold).eq(b.chars().flat_map(fold))
}

#[cfg(test)]
mod tests {
    use super::fold_eq;

    #[test]
    fn folds_as_a_case_insensitive_decoder_would() {
        assert!(fold_eq("Name", "name"));
        assert!(fold_eq("NAME", "name"));
        assert!(fold_eq("param\u{17f}", "params"));
        assert!(fold_eq("\u{212a}ey", "key"));
        assert!(fold_eq("ÉTÉ", "été"));
        assert!(!fold_eq("names", "name"));
        assert!(!fold_eq("nam", "name"));
    }
}
