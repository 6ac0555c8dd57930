//! Scope patterns: `<kind>:<upstream>/<name>:<action>` parsed into
//! per-segment matchers, and the globs they are made of. Compiling a policy
//! matches scopes against each other (to report rules that can never match);
//! the gateway matches them against each call.
//!
//! Scope grammar: `<kind>:<upstream>/<name>:<action>` with kind/action one of
//! `tools…:call`, `resources…:read`, `prompts…:get`, `models…:use`. `<upstream>` is one
//! segment; `<name>` is a tool or prompt name, or a resource URI, split on
//! `/` into segments. In a segment `*` matches any run of characters except
//! `/`, so `github/*` never matches `github/admin/x`; a whole segment `**`
//! matches any number of segments.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tools,
    Resources,
    Prompts,
    /// Model traffic: `models:<upstream>/<model>:use`, where `<upstream>` is
    /// the LLM route's upstream and `<model>` the name the client asked for.
    Models,
}

impl Kind {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
    pub fn action(self) -> &'static str {
        match self {
            Kind::Tools => "call",
            Kind::Resources => "read",
            Kind::Prompts => "get",
            Kind::Models => "use",
        }
    }
}

/// One `/`-free piece of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Literal(String),
    Glob(String),
    /// `**`: zero or more whole segments.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
struct Path(Vec<Seg>);

impl Path {
    fn parse(s: &str) -> Self {
        Path(
            s.split('/')
                .map(|seg| match seg {
                    "**" => Seg::Any,
                    s if s.contains('*') => Seg::Glob(s.to_owned()),
                    s => Seg::Literal(s.to_owned()),
                })
                .collect(),
        )
    }

    fn literal(&self) -> Option<String> {
        let mut out = Vec::new();
        for s in &self.0 {
            match s {
                Seg::Literal(l) => out.push(l.as_str()),
                _ => return None,
            }
        }
        Some(out.join("/"))
    }

    fn matches(&self, name: &str) -> bool {
        // With two or more `**` the backtracking walk below takes time
        // polynomial in the name's segments, of that degree: a long name
        // (a client's resource URI) could hold a thread for minutes. Those
        // patterns are matched by a table instead, in segments × pattern.
        if self.0.iter().filter(|s| matches!(s, Seg::Any)).count() > 1 {
            return self.matches_by_table(name);
        }
        /// `rest` is what is left of the name; `None` once every segment was used.
        fn go(pat: &[Seg], rest: Option<&str>) -> bool {
            match (pat.first(), rest) {
                (None, r) => r.is_none(),
                (Some(Seg::Any), None) => go(&pat[1..], None),
                (Some(Seg::Any), Some(r)) => go(&pat[1..], Some(r)) || go(pat, split(r).1),
                (Some(_), None) => false,
                (Some(Seg::Literal(l)), Some(r)) => {
                    let (head, tail) = split(r);
                    l == head && go(&pat[1..], tail)
                }
                (Some(Seg::Glob(g)), Some(r)) => {
                    let (head, tail) = split(r);
                    glob(g.as_bytes(), head.as_bytes()) && go(&pat[1..], tail)
                }
            }
        }
        fn split(s: &str) -> (&str, Option<&str>) {
            match s.split_once('/') {
                Some((h, t)) => (h, Some(t)),
                None => (s, None),
            }
        }
        go(&self.0, Some(name))
    }
}

impl Path {
    /// `matches`, by dynamic programming over (pattern, name) segment
    /// positions: `row[j]` says whether the pattern's segments from `i` on
    /// match the name's from `j` on.
    fn matches_by_table(&self, name: &str) -> bool {
        let segs: Vec<&str> = name.split('/').collect();
        let m = segs.len();
        // The pattern's end matches only the name's end.
        let mut next = vec![false; m + 1];
        next[m] = true;
        let mut row = vec![false; m + 1];
        for seg in self.0.iter().rev() {
            for j in (0..=m).rev() {
                row[j] = match seg {
                    // Zero segments, or one and then still `**`.
                    Seg::Any => next[j] || (j < m && row[j + 1]),
                    Seg::Literal(l) => j < m && l == segs[j] && next[j + 1],
                    Seg::Glob(g) => j < m && glob(g.as_bytes(), segs[j].as_bytes()) && next[j + 1],
                };
            }
            std::mem::swap(&mut row, &mut next);
        }
        next[0]
    }
}

/// `*` matches any run of bytes (the caller has split on `/` already).
pub fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pat.len() && pat[p] != b'*' && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// A glob over a whole string, where `*` does not cross `/`.
pub fn glob_path(pat: &str, text: &str) -> bool {
    Path::parse(pat).matches(text)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub kind: Kind,
    upstream: Seg,
    name: Path,
    pub text: String,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or("expected <kind>:<upstream>/<name>:<action>")?;
        let kind = match kind {
            "tools" => Kind::Tools,
            "resources" => Kind::Resources,
            "prompts" => Kind::Prompts,
            "models" => Kind::Models,
            k => {
                return Err(format!(
                    "unknown kind `{k}` (tools, resources, prompts, models)"
                ))
            }
        };
        let (path, action) = rest.rsplit_once(':').ok_or("missing :<action>")?;
        if action != kind.action() {
            return Err(format!(
                "the action for {kind:?} is `{}`, not `{action}`",
                kind.action()
            ));
        }
        let (upstream, name) = path.split_once('/').ok_or("expected <upstream>/<name>")?;
        if upstream.is_empty() || name.is_empty() {
            return Err("upstream and name must not be empty".into());
        }
        let upstream = match upstream {
            "**" => return Err("`**` is not allowed for the upstream".into()),
            u if u.contains('*') => Seg::Glob(u.to_owned()),
            u => Seg::Literal(u.to_owned()),
        };
        Ok(Scope {
            kind,
            upstream,
            name: Path::parse(name),
            text: s.to_owned(),
        })
    }

    pub fn upstream_literal(&self) -> Option<&str> {
        match &self.upstream {
            Seg::Literal(l) => Some(l),
            _ => None,
        }
    }

    pub fn name_literal(&self) -> Option<String> {
        self.name.literal()
    }

    pub fn matches(&self, kind: Kind, upstream: &str, name: &str) -> bool {
        kind == self.kind
            && match &self.upstream {
                Seg::Literal(l) => l == upstream,
                Seg::Glob(g) => glob(g.as_bytes(), upstream.as_bytes()),
                Seg::Any => true,
            }
            && self.name.matches(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_never_cross() {
        let s = Scope::parse("tools:github/*:call").expect("scope");
        assert!(s.matches(Kind::Tools, "github", "create_issue"));
        assert!(!s.matches(Kind::Tools, "github", "admin/x"));
        assert!(!s.matches(Kind::Prompts, "github", "x"));
        let s = Scope::parse("tools:git*/get-*:call").expect("scope");
        assert!(s.matches(Kind::Tools, "github", "get-sum"));
        assert!(!s.matches(Kind::Tools, "gitlab", "put-sum"));
        let s = Scope::parse("resources:fs/file:///home/**:read").expect("scope");
        assert!(s.matches(Kind::Resources, "fs", "file:///home/a/b.txt"));
        assert!(!s.matches(Kind::Resources, "fs", "file:///etc/passwd"));
        assert!(Scope::parse("tools:github/x:read").is_err());
        assert!(Scope::parse("tools:**/x:call").is_err());
        assert!(glob(b"a*c*", b"abcxc"));
        assert!(!glob(b"a*d", b"abc"));
    }

    #[test]
    fn patterns_with_several_double_stars_match_as_the_walk_does_even_on_long_names() {
        let pats = [
            "**/a/**/b",
            "a/**/**",
            "**/**",
            "x/**/y/*/z/**",
            "**/a*/**",
            "**",
            "a/**/b",
        ];
        let names = [
            "a/b",
            "x/a/y/b",
            "a",
            "b",
            "",
            "a/x/b/b",
            "x/y/q/z",
            "x/y/q/z/w",
            "aa/b/c",
            "a/a/a/b",
        ];
        for p in pats {
            let path = Path::parse(p);
            for n in names {
                // The walk, forced, against the table.
                let walk = {
                    let single = Path(path.0.clone());
                    fn go(pat: &[Seg], rest: Option<&str>) -> bool {
                        let split = |s: &str| -> (String, Option<String>) {
                            match s.split_once('/') {
                                Some((h, t)) => (h.to_owned(), Some(t.to_owned())),
                                None => (s.to_owned(), None),
                            }
                        };
                        match (pat.first(), rest) {
                            (None, r) => r.is_none(),
                            (Some(Seg::Any), None) => go(&pat[1..], None),
                            (Some(Seg::Any), Some(r)) => {
                                go(&pat[1..], Some(r)) || go(pat, split(r).1.as_deref())
                            }
                            (Some(_), None) => false,
                            (Some(Seg::Literal(l)), Some(r)) => {
                                let (h, t) = split(r);
                                *l == h && go(&pat[1..], t.as_deref())
                            }
                            (Some(Seg::Glob(g)), Some(r)) => {
                                let (h, t) = split(r);
                                glob(g.as_bytes(), h.as_bytes()) && go(&pat[1..], t.as_deref())
                            }
                        }
                    }
                    go(&single.0, Some(n))
                };
                assert_eq!(path.matches_by_table(n), walk, "{p} vs {n}");
                assert_eq!(path.matches(n), walk, "{p} vs {n}");
            }
        }
        // 20,000 segments against four `**`: a table of 180,000 cells.
        let long = vec!["a"; 20_000].join("/") + "/c";
        assert!(!Path::parse("**/a/**/a/**/a/**/b").matches(&long));
        assert!(Path::parse("**/a/**/a/**/a/**/c").matches(&long));
    }
}
