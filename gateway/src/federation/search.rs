//! The meta-tools of catalog mode (their definitions, what a result shows
//! of a tool) and search over a catalog of tools (`search_tools`): BM25
//! over each tool's name, title, description and parameter names and
//! descriptions, the fields weighted (BM25F-style: a term's frequency in a
//! tool is the weighted sum of its frequencies in the fields). An index is
//! built from the tools one caller may see, so nothing about another
//! caller's tools — not even through term statistics — shapes a ranking.
//! Pure and allocation-light per query: postings are sorted by term, scores
//! accumulate in one vector.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// BM25's term-frequency saturation and length normalisation.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// How much a term counts in each field.
const NAME: f32 = 3.0;
const TITLE: f32 = 2.0;
const DESCRIPTION: f32 = 1.0;
const PARAMETER: f32 = 1.5;
const PARAMETER_DESCRIPTION: f32 = 0.5;

/// Words too common in tool descriptions to tell tools apart.
const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "is", "it",
    "its", "me", "my", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when",
    "which", "with", "you", "your",
];

/// Most results a search returns (said in the errors and the schema).
pub const MAX_LIMIT: u64 = 50;
/// A result's description is cut to this many characters.
const SUMMARY_CHARS: usize = 300;

pub const SEARCH: &str = "search_tools";
pub const DETAILS: &str = "get_tool_details";
pub const EXECUTE: &str = "execute_tool";

static META_TOOLS: LazyLock<Value> = LazyLock::new(|| {
    json!([
        {
            "name": SEARCH,
            "title": "Search tools",
            "description": "Find tools by what they do. Returns the best matches (name, title, short description), best first. Then call get_tool_details for a tool's parameters and execute_tool to run it.",
            "inputSchema": {"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string", "description": "What the tool should do, in words."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "Most results; default 5."},
                "filters": {"type": "object", "properties": {
                    "source": {"type": "string", "description": "Only tools of this source (upstream)."},
                    "read_only": {"type": "boolean", "description": "Only tools that change nothing."}
                }, "additionalProperties": false}
            }, "additionalProperties": false},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": DETAILS,
            "title": "Tool details",
            "description": "The whole definition of one tool: description, input and output schemas, annotations.",
            "inputSchema": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "description": "The tool's name, as search_tools gave it."}
            }, "additionalProperties": false},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": EXECUTE,
            "title": "Execute a tool",
            "description": "Run one tool with its arguments, exactly as calling it directly; returns the tool's result.",
            "inputSchema": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "description": "The tool's name."},
                "arguments": {"type": "object", "description": "The tool's arguments, as its inputSchema says."}
            }, "additionalProperties": false}
        }
    ])
});

/// The meta-tools' definitions, as a catalog server lists them.
pub fn meta_tools() -> &'static Value {
    &META_TOOLS
}

/// What a search returns of a tool: name, title, a short description.
pub fn summary(t: &Value) -> Value {
    let mut s = Map::new();
    s.insert("name".into(), t["name"].clone());
    if let Some(title) = t.get("title") {
        s.insert("title".into(), title.clone());
    }
    if let Some(d) = t["description"].as_str() {
        let cut: String = d.chars().take(SUMMARY_CHARS).collect();
        let more = if cut.len() < d.len() { "…" } else { "" };
        s.insert("description".into(), Value::String(format!("{cut}{more}")));
    }
    Value::Object(s)
}

/// A term's postings: (tool, weighted frequency).
type Postings = Vec<(u32, f32)>;

pub struct Index {
    tools: Vec<Value>,
    /// Each tool's source (upstream name).
    sources: Vec<Option<String>>,
    /// Each tool's weighted length.
    lengths: Vec<f32>,
    average: f32,
    postings: HashMap<Box<str>, Postings>,
}

/// How long a caller's index is kept before their list is read again.
pub const INDEX_TTL: Duration = Duration::from_secs(30);

/// Indexes kept per caller and server (the caller builds the key), for
/// `INDEX_TTL`.
#[derive(Default)]
pub struct Indexes {
    map: dashmap::DashMap<String, (Instant, Arc<Index>)>,
}

const MAX_INDEXES: usize = 1024;

impl Indexes {
    pub fn get(&self, key: &str) -> Option<Arc<Index>> {
        let hit = self.map.get(key)?;
        (hit.0.elapsed() < INDEX_TTL).then(|| hit.1.clone())
    }

    pub fn put(&self, key: String, index: Arc<Index>) {
        if self.map.len() >= MAX_INDEXES {
            self.map.retain(|_, (at, _)| at.elapsed() < INDEX_TTL);
            if self.map.len() >= MAX_INDEXES {
                self.map.clear();
            }
        }
        self.map.insert(key, (Instant::now(), index));
    }
}

/// What a search may be narrowed to.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// Only tools of this source (upstream name).
    pub source: Option<String>,
    /// Only tools annotated `readOnlyHint: true`.
    pub read_only: bool,
}

impl Index {
    /// An index of `tools`; `source_of` names each one's source.
    pub fn build(tools: Vec<Value>, source_of: impl Fn(&Value) -> Option<String>) -> Index {
        let sources = tools.iter().map(source_of).collect();
        let mut postings: HashMap<Box<str>, Postings> = HashMap::new();
        let mut lengths = Vec::with_capacity(tools.len());
        let mut weights: HashMap<String, f32> = HashMap::new();
        for (i, t) in tools.iter().enumerate() {
            weights.clear();
            let mut length = 0.0;
            let mut add = |text: &str, weight: f32| {
                for term in terms(text) {
                    *weights.entry(term).or_default() += weight;
                    length += weight;
                }
            };
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            add(&text(&t["name"]), NAME);
            add(&text(&t["title"]), TITLE);
            add(&text(&t["description"]), DESCRIPTION);
            if let Some(props) = t["inputSchema"]["properties"].as_object() {
                for (p, schema) in props {
                    add(p, PARAMETER);
                    add(&text(&schema["description"]), PARAMETER_DESCRIPTION);
                }
            }
            lengths.push(length);
            for (term, w) in weights.drain() {
                postings
                    .entry(term.into_boxed_str())
                    .or_default()
                    .push((i as u32, w));
            }
        }
        let average = if lengths.is_empty() {
            1.0
        } else {
            (lengths.iter().sum::<f32>() / lengths.len() as f32).max(1.0)
        };
        Index {
            tools,
            sources,
            lengths,
            average,
            postings,
        }
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.tools.iter().find(|t| t["name"].as_str() == Some(name))
    }

    /// The `limit` tools that best match `query`, best first (ties in
    /// catalog order); tools that match no term are not returned.
    pub fn search(&self, query: &str, limit: usize, filters: &Filters) -> Vec<&Value> {
        let n = self.tools.len() as f32;
        let mut scores = vec![0f32; self.tools.len()];
        let mut seen_terms: Vec<String> = Vec::new();
        for term in terms(query) {
            if seen_terms.contains(&term) {
                continue;
            }
            let Some(list) = self.postings.get(term.as_str()) else {
                seen_terms.push(term);
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in list {
                let norm = K1 * (1.0 - B + B * self.lengths[doc as usize] / self.average);
                scores[doc as usize] += idf * tf * (K1 + 1.0) / (tf + norm);
            }
            seen_terms.push(term);
        }
        let mut ranked: Vec<(f32, u32)> = scores
            .into_iter()
            .enumerate()
            .filter(|&(i, s)| s > 0.0 && filters.admit(&self.tools[i], self.sources[i].as_deref()))
            .map(|(i, s)| (s, i as u32))
            .collect();
        // Best first; ties in catalog order. Only the top `limit` sorted.
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if limit == 0 {
            return Vec::new();
        }
        if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit - 1, order);
            ranked.truncate(limit);
        }
        ranked.sort_unstable_by(order);
        ranked
            .into_iter()
            .map(|(_, i)| &self.tools[i as usize])
            .collect()
    }
}

impl Filters {
    fn admit(&self, t: &Value, source: Option<&str>) -> bool {
        let source_ok = self.source.is_none() || self.source.as_deref() == source;
        source_ok && (!self.read_only || t["annotations"]["readOnlyHint"] == Value::Bool(true))
    }
}

/// The terms of `text`: split at anything not a letter or digit and at
/// lower-to-upper case changes (`getRepo`), lower-cased, stop words out,
/// a plural `s` taken off.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .filter(|w| !STOP.contains(&w.as_str()))
        .map(stem)
}

/// A light stemmer: plurals and `-ing`, so "files" finds "file",
/// "queries" finds "query" and "listing" finds "list".
fn stem(mut w: String) -> String {
    let n = w.len();
    if n > 4 && w.ends_with("ies") {
        w.truncate(n - 3);
        w.push('y');
    } else if n > 4
        && ["sses", "xes", "ches", "shes", "zes"]
            .iter()
            .any(|s| w.ends_with(s))
    {
        w.truncate(n - 2);
    } else if n > 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|s| w.ends_with(s)) {
        w.truncate(n - 1);
    } else if n >= 7 && w.ends_with("ing") {
        w.truncate(n - 3);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Index {
        let source = |t: &Value| t["name"].as_str()?.split('_').next().map(str::to_owned);
        Index::build(
            vec![
                json!({"name": "fs_read_file", "description": "Read the complete contents of a file from disk.",
                   "inputSchema": {"properties": {"path": {"description": "Where the file is"}}},
                   "annotations": {"readOnlyHint": true}}),
                json!({"name": "fs_write_file", "description": "Create a new file or overwrite an existing one.",
                   "inputSchema": {"properties": {"path": {}, "content": {}}}}),
                json!({"name": "git_log", "title": "Commit history", "description": "Shows the commit logs.",
                   "inputSchema": {"properties": {"max_count": {}}}}),
                json!({"name": "getCurrentTime", "description": "Get the current time in a timezone.",
                   "inputSchema": {"properties": {"timezone": {}}}}),
            ],
            source,
        )
    }

    fn names(found: Vec<&Value>) -> Vec<&str> {
        found
            .iter()
            .map(|t| t["name"].as_str().unwrap_or(""))
            .collect()
    }

    #[test]
    fn terms_split_names_and_drop_what_says_nothing() {
        let t: Vec<String> = terms("getCurrentTime of the read_file files, listing").collect();
        assert_eq!(
            t,
            ["get", "current", "time", "read", "file", "file", "list"]
        );
    }

    #[test]
    fn the_best_match_comes_first() {
        let idx = catalog();
        let none = Filters::default();
        assert_eq!(
            names(idx.search("read a file", 5, &none))[0],
            "fs_read_file"
        );
        assert_eq!(
            names(idx.search("overwrite file", 5, &none))[0],
            "fs_write_file"
        );
        assert_eq!(
            names(idx.search("show commit history", 5, &none)),
            ["git_log"]
        );
        assert_eq!(
            names(idx.search("what time is it in Tokyo timezone", 5, &none))[0],
            "getCurrentTime"
        );
        assert!(idx.search("unrelated words", 5, &none).is_empty());
        assert_eq!(idx.search("file", 1, &none).len(), 1);
    }

    #[test]
    fn filters_narrow_the_results() {
        let idx = catalog();
        let ro = Filters {
            read_only: true,
            ..Filters::default()
        };
        assert_eq!(names(idx.search("file", 5, &ro)), ["fs_read_file"]);
        let git = Filters {
            source: Some("git".into()),
            ..Filters::default()
        };
        assert!(idx.search("file", 5, &git).is_empty());
        assert_eq!(names(idx.search("commit", 5, &git)), ["git_log"]);
    }
}
