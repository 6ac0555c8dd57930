//! An incremental Server-Sent Events parser: fed the response body chunk by
//! chunk as it streams, it reports each complete event, whatever the chunk
//! boundaries (inside a field name, between CR and LF, mid-UTF-8). It never
//! holds bytes back from the client: it only watches. Built to `read_oversize`,
//! an event whose data passes the cap is not kept but read as it passes
//! (`Probe`), so a slow client reading a huge answer costs no more memory.

use super::probe::Probe;

/// One dispatched event. `event` is empty for the default `message` type.
#[derive(Debug)]
pub struct Event<'a> {
    pub event: &'a [u8],
    pub data: &'a [u8],
    pub id: Option<&'a [u8]>,
    /// The data passed the size cap and was cut; do not parse it.
    pub oversize: bool,
    /// An oversize event's data as read in passing, when the parser was
    /// built to read oversize events.
    pub outline: Option<&'a Probe>,
}

#[derive(Debug)]
pub struct SseParser {
    /// A line split across chunks.
    carry: Vec<u8>,
    carry_overflow: bool,
    /// The previous chunk ended in CR: a leading LF belongs to that line end.
    skip_lf: bool,
    data: Vec<u8>,
    event: Vec<u8>,
    id: Vec<u8>,
    has_id: bool,
    has_fields: bool,
    oversize: bool,
    data_lines: u32,
    max_event: usize,
    /// Bytes of a leading byte order mark matched so far; 3 once the
    /// stream's start is settled (a client drops one BOM there).
    bom: u8,
    /// Read an oversize event's data in passing (`outline`).
    read_oversize: bool,
    outline: Option<Box<Probe>>,
    /// The carried line is an oversize data line whose bytes go to `outline`.
    carry_data: bool,
}

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

impl SseParser {
    /// `max_event` caps the bytes kept for one event's data.
    pub fn new(max_event: usize) -> Self {
        Self {
            carry: Vec::new(),
            carry_overflow: false,
            skip_lf: false,
            data: Vec::new(),
            event: Vec::new(),
            id: Vec::new(),
            has_id: false,
            has_fields: false,
            oversize: false,
            data_lines: 0,
            max_event,
            bom: 0,
            read_oversize: false,
            outline: None,
            carry_data: false,
        }
    }

    /// Like `new`, but an event whose data passes `max_event` is read as it
    /// passes, holding a few hundred bytes, and reported with its `outline`.
    pub fn reading_oversize(max_event: usize) -> Self {
        Self {
            read_oversize: true,
            ..Self::new(max_event)
        }
    }

    /// Feed the next chunk; `on_event` runs for every event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        if self.bom < 3 {
            let mut n = usize::from(self.bom);
            while n < 3 && chunk.first() == Some(&BOM[n]) {
                n += 1;
                chunk = &chunk[1..];
            }
            if n < 3 && chunk.is_empty() {
                // Perhaps a BOM split across chunks: wait for the rest.
                self.bom = n as u8;
                return;
            }
            self.bom = 3;
            if n < 3 && n > 0 {
                // Not a BOM after all: its bytes were the stream's first.
                self.feed_lines(&BOM[..n], &mut on_event);
            }
        }
        self.feed_lines(chunk, &mut on_event);
    }

    fn feed_lines(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) {
            let line_end = pos;
            let mut next = pos + 1;
            if chunk[pos] == b'\r' {
                match chunk.get(pos + 1) {
                    Some(b'\n') => next += 1,
                    None => self.skip_lf = true,
                    _ => {}
                }
            }
            if self.carry.is_empty() && !self.carry_overflow {
                self.line(&chunk[..line_end], on_event);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                self.push_carry(&mut line, &chunk[..line_end]);
                let overflow = std::mem::take(&mut self.carry_overflow);
                if !overflow {
                    self.line(&line, on_event);
                } else if std::mem::take(&mut self.carry_data) {
                    // Only a data line too long to keep makes the event
                    // oversize (`push_carry`): another field is ignored, as
                    // it is when it comes in one chunk.
                    self.has_fields = true;
                    self.mark_data_line();
                }
                line.clear();
                self.carry = line;
            }
            chunk = &chunk[next..];
        }
        if !chunk.is_empty() {
            let mut carry = std::mem::take(&mut self.carry);
            self.push_carry(&mut carry, chunk);
            self.carry = carry;
        }
    }

    fn push_carry(&mut self, carry: &mut Vec<u8>, bytes: &[u8]) {
        if self.carry_overflow {
            if self.carry_data {
                self.feed_outline(bytes);
            }
            return;
        }
        if carry.len() + bytes.len() > self.max_event + 16 {
            self.carry_overflow = true;
            carry.extend_from_slice(bytes);
            if let Some(value) = carry.strip_prefix(b"data:") {
                // A data line too long to keep: the event is oversize, and
                // what came of the line is read now, the rest as it comes.
                let value = value.strip_prefix(b" ").unwrap_or(value);
                self.spill();
                if self.has_data_line() {
                    self.feed_outline(b"\n");
                }
                self.feed_outline(value);
                self.carry_data = true;
            }
            // The line is never kept: its memory goes back now, not when
            // the rest of it has passed (a slow client can take minutes).
            *carry = Vec::new();
            return;
        }
        carry.extend_from_slice(bytes);
    }

    /// The event's data no longer fits: what was kept goes to the outline
    /// reader (when reading oversize events) and its memory goes back.
    fn spill(&mut self) {
        if !self.oversize {
            self.oversize = true;
            if self.read_oversize {
                let mut outline = Box::new(Probe::new());
                outline.feed(&self.data);
                self.outline = Some(outline);
            }
        }
        self.data = Vec::new();
    }

    /// Bytes this parser holds now (its buffers' capacity).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.carry.capacity()
            + self.data.capacity()
            + self.event.capacity()
            + self.id.capacity()
            + self.outline.as_ref().map_or(0, |o| o.held())
    }

    fn feed_outline(&mut self, bytes: &[u8]) {
        if let Some(o) = &mut self.outline {
            o.feed(bytes);
        }
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.has_fields = true;
                if !self.oversize && self.data.len() + value.len() + 1 > self.max_event {
                    // An oversize event is not kept.
                    self.spill();
                }
                if self.oversize {
                    if self.has_data_line() {
                        self.feed_outline(b"\n");
                    }
                    self.feed_outline(value);
                } else {
                    if self.has_data_line() {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                }
                self.mark_data_line();
            }
            b"event" => {
                self.has_fields = true;
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"id" => {
                self.has_fields = true;
                self.has_id = true;
                self.id.clear();
                self.id.extend_from_slice(value);
            }
            _ => {}
        }
    }

    // Data lines join with "\n", also after an empty first line.
    fn has_data_line(&self) -> bool {
        self.data_lines > 0
    }
    fn mark_data_line(&mut self) {
        self.data_lines += 1;
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if self.has_fields {
            on_event(Event {
                event: &self.event,
                data: &self.data,
                id: self.has_id.then_some(&self.id[..]),
                oversize: self.oversize,
                outline: self.outline.as_deref(),
            });
        }
        self.outline = None;
        self.data.clear();
        self.event.clear();
        self.has_id = false;
        self.has_fields = false;
        self.oversize = false;
        self.data_lines = 0;
    }
}

/// One `message` event carrying `data` (a `data:` field per line of it, so
/// that data joined from several lines is framed as it was read).
pub fn write_event(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"event: message\n");
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}
