//! Whether a URI is one a resource template (RFC 6570) can expand to: how a
//! virtual server finds the source whose template serves a `resources/read`
//! of a URI no source lists. Literal text must match exactly; a simple
//! expression (`{id}`, `{/path}`, `{.ext}`, `{;p}`) matches a non-empty
//! run without `/`, `?` or `#` after its operator's character; a reserved
//! or fragment expression (`{+path}`, `{#frag}`) and a query expression
//! (`{?q}`, `{&q}`) match any run. A template that does not parse matches
//! nothing.

/// One piece of a parsed template.
#[derive(Debug, PartialEq)]
enum Piece<'t> {
    Literal(&'t str),
    /// An expression: the character its expansion starts with (`/`, `.`,
    /// `;`, `?`, `&`, `#`; none for `{x}` and `{+x}`), whether it can
    /// expand to nothing, and whether its values may hold `/`.
    Expr {
        lead: Option<u8>,
        optional: bool,
        any: bool,
    },
}

/// Longest URI or template compared (longer ones match nothing).
const MAX_LEN: usize = 2048;

fn parse(template: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}')?;
                let body = &rest[1..end];
                let (op, names) = match body.as_bytes().first()? {
                    c @ (b'+' | b'#' | b'/' | b'.' | b';' | b'?' | b'&') => (Some(*c), &body[1..]),
                    _ => (None, body),
                };
                if names.is_empty() || names.contains(['{', '}']) {
                    return None;
                }
                out.push(match op {
                    None => Piece::Expr {
                        lead: None,
                        optional: false,
                        any: false,
                    },
                    Some(b'+') => Piece::Expr {
                        lead: None,
                        optional: false,
                        any: true,
                    },
                    Some(c @ (b'#' | b'?' | b'&')) => Piece::Expr {
                        lead: Some(c),
                        optional: true,
                        any: true,
                    },
                    Some(c) => Piece::Expr {
                        lead: Some(c),
                        optional: true,
                        any: false,
                    },
                });
                rest = &rest[end + 1..];
            }
            Some(n) => {
                out.push(Piece::Literal(&rest[..n]));
                rest = &rest[n..];
            }
            None => {
                if rest.contains('}') {
                    return None;
                }
                out.push(Piece::Literal(rest));
                rest = "";
            }
        }
    }
    Some(out)
}

/// Can `template` expand to `uri`?
pub fn matches(template: &str, uri: &str) -> bool {
    if template.len() > MAX_LEN || uri.len() > MAX_LEN {
        return false;
    }
    let Some(pieces) = parse(template) else {
        return false;
    };
    let uri = uri.as_bytes();
    // reach[p]: the URI's first p bytes are matched by the pieces so far.
    let mut reach = vec![false; uri.len() + 1];
    reach[0] = true;
    for piece in &pieces {
        let mut next = vec![false; uri.len() + 1];
        for start in (0..=uri.len()).filter(|&p| reach[p]) {
            match piece {
                Piece::Literal(l) => {
                    if uri[start..].starts_with(l.as_bytes()) {
                        next[start + l.len()] = true;
                    }
                }
                Piece::Expr {
                    lead,
                    optional,
                    any,
                } => {
                    if *optional {
                        next[start] = true;
                    }
                    let mut at = start;
                    if let Some(c) = lead {
                        if uri.get(at) != Some(c) {
                            continue;
                        }
                        at += 1;
                    }
                    for end in at + 1..=uri.len() {
                        let b = uri[end - 1];
                        if !any && matches!(b, b'/' | b'?' | b'#') {
                            break;
                        }
                        next[end] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[uri.len()]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_simple_expression_is_one_segment() {
        let t = "test://template/{id}/data";
        assert!(matches(t, "test://template/123/data"));
        assert!(!matches(t, "test://template//data"), "empty");
        assert!(!matches(t, "test://template/1/2/data"), "two segments");
        assert!(!matches(t, "test://template/123/data/more"));
        assert!(!matches(t, "test://other/123/data"));
    }

    #[test]
    fn reserved_query_and_path_expressions() {
        assert!(matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(!matches("file:///{path}", "file:///a/b/c.txt"));
        assert!(matches(
            "db://rows{?limit,offset}",
            "db://rows?limit=5&offset=2"
        ));
        assert!(matches("db://rows{?limit,offset}", "db://rows"));
        assert!(matches("x://a{/b}", "x://a/seg"));
        assert!(matches("x://a{/b}", "x://a"));
        assert!(!matches("x://a{/b}", "x://a/seg/two"));
    }

    #[test]
    fn a_template_that_does_not_parse_matches_nothing() {
        assert!(!matches("x://{id", "x://{id"));
        assert!(!matches("x://}", "x://}"));
        assert!(!matches("x://{}", "x://{}"));
        assert!(matches("plain://uri", "plain://uri"));
        assert!(!matches(&"{a}".repeat(1000), "x"));
    }
}
