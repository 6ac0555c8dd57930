//! A reference reader of `text/event-stream`, written from the WHATWG
//! HTML "server-sent events" parsing rules as an EventSource (or a client
//! library following them) reads a whole stream: one leading BOM dropped,
//! lines ended by CRLF, LF or a lone CR, an event dispatched at a blank line
//! only if it had a `data` line, an unfinished event at the end discarded.

/// One dispatched event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEvent {
    /// The event type; `message` when none was given.
    pub event: Vec<u8>,
    pub data: Vec<u8>,
    /// The last event id at dispatch (it carries over between events).
    pub last_id: Vec<u8>,
    /// An `event` field was given, with an empty value (the type is then
    /// `message`, as if none had been given).
    pub typed_empty: bool,
}

/// Every event a client dispatches from the whole `stream`.
pub fn events(stream: &[u8]) -> Vec<RefEvent> {
    events_from(stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream))
}

/// `events`, except that a leading BOM is read as part of the first line
/// (as a client that skips that rule would read it).
pub fn events_keeping_bom(stream: &[u8]) -> Vec<RefEvent> {
    events_from(stream)
}

fn events_from(stream: &[u8]) -> Vec<RefEvent> {
    let mut s = stream;
    let (mut data, mut event, mut last_id) = (Vec::new(), Vec::new(), Vec::new());
    let mut typed = false;
    let mut out = Vec::new();
    while let Some(end) = s.iter().position(|&b| b == b'\n' || b == b'\r') {
        let line = &s[..end];
        let skip = if s[end] == b'\r' && s.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        s = &s[end + skip..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.push(RefEvent {
                    typed_empty: typed && event.is_empty(),
                    event: if event.is_empty() {
                        b"message".to_vec()
                    } else {
                        std::mem::take(&mut event)
                    },
                    data: std::mem::take(&mut data),
                    last_id: last_id.clone(),
                });
            }
            data.clear();
            event.clear();
            typed = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                event = value.to_vec();
                typed = true;
            }
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => last_id = value.to_vec(),
            _ => {}
        }
    }
    out
}
