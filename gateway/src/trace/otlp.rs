//! OTLP's protobuf, written by hand for the few messages a trace export
//! needs (`ExportTraceServiceRequest` down to `Span`), field numbers from
//! opentelemetry-proto's `trace/v1/trace.proto`, `common/v1/common.proto`
//! and `resource/v1/resource.proto`. The suite decodes it with the official
//! definitions.

use super::span::{AttrValue, Kind, SpanData};

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;

/// A protobuf writer into one buffer (this runs on the exporter's thread,
/// never on the data path).
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, WIRE_LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, WIRE_VARINT);
            self.varint(v);
        }
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.key(field, WIRE_FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// A nested message written in place: one byte is kept for its length,
    /// and the few messages of 128 bytes or more (spans, the scope, the
    /// resource) move over for a longer varint.
    fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        self.key(field, WIRE_LEN);
        let at = self.0.len();
        self.0.push(0);
        build(self);
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
        } else {
            let mut varint = Writer::default();
            varint.varint(len as u64);
            self.0.splice(at..=at, varint.0);
        }
    }
}

/// `KeyValue { key = 1; AnyValue value = 2 }`,
/// `AnyValue { string_value = 1; bool_value = 2; int_value = 3; double_value = 4 }`.
fn key_value(w: &mut Writer, field: u32, key: &str, value: &AttrValue) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |v| match value {
            AttrValue::Str(s) => v.bytes(1, s.as_bytes()),
            AttrValue::Static(s) => v.bytes(1, s.as_bytes()),
            AttrValue::Bool(b) => {
                v.key(2, WIRE_VARINT);
                v.varint(u64::from(*b));
            }
            AttrValue::Int(i) => {
                v.key(3, WIRE_VARINT);
                v.varint(*i as u64);
            }
        });
    });
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`
/// with one resource (`service.name`, `telemetry.sdk.*`) and one scope.
pub fn export_request(service: &str, spans: &[SpanData]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        // Resource { repeated KeyValue attributes = 1 }
        rs.message(1, |r| {
            key_value(r, 1, "service.name", &AttrValue::Str(service.into()));
            key_value(r, 1, "telemetry.sdk.name", &AttrValue::Static("sluice"));
            key_value(r, 1, "telemetry.sdk.language", &AttrValue::Static("rust"));
            key_value(
                r,
                1,
                "service.version",
                &AttrValue::Static(env!("CARGO_PKG_VERSION")),
            );
        });
        // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.string(1, "sluice-gateway");
                scope.string(2, env!("CARGO_PKG_VERSION"));
            });
            for s in spans {
                ss.message(2, |sp| span(sp, s));
            }
        });
    });
    w.0
}

/// `Span { trace_id = 1; span_id = 2; trace_state = 3; parent_span_id = 4;
/// name = 5; kind = 6; start_time_unix_nano = 7; end_time_unix_nano = 8;
/// attributes = 9; status = 15; flags = 16 }`.
fn span(w: &mut Writer, s: &SpanData) {
    w.bytes(1, &s.trace_id);
    w.bytes(2, &s.span_id);
    if let Some(state) = &s.trace_state {
        w.string(3, state);
    }
    if let Some(parent) = &s.parent {
        w.bytes(4, parent);
    }
    w.string(5, &s.name);
    w.uint(
        6,
        match s.kind {
            Kind::Internal => 1,
            Kind::Server => 2,
            Kind::Client => 3,
        },
    );
    w.fixed64(7, s.start_unix_ns);
    w.fixed64(8, s.end_unix_ns.max(s.start_unix_ns));
    for (k, v) in &s.attributes {
        key_value(w, 9, k, v);
    }
    // Status { message = 2; code = 3 (0 unset, 1 ok, 2 error) }
    if let Some(message) = &s.error {
        w.message(15, |st| {
            st.string(2, message);
            st.uint(3, 2);
        });
    }
    // Flags: the W3C trace flags (sampled) and "parent is known remote or
    // not" bits (0x100 known, 0x200 remote).
    let remote = if s.remote_parent { 0x300 } else { 0x100 };
    w.key(16, 5);
    w.0.extend_from_slice(&(0x01u32 | remote).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut w = Writer::default();
        w.varint(300);
        assert_eq!(w.0, [0xac, 0x02]);
        let mut w = Writer::default();
        w.varint(u64::MAX);
        assert_eq!(w.0.len(), 10);
    }

    #[test]
    fn nested_messages_of_any_length_are_framed_with_their_length() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let mut w = Writer::default();
            w.message(2, |m| m.bytes(1, &vec![7u8; n]));
            let mut inner = Writer::default();
            inner.bytes(1, &vec![7u8; n]);
            let mut expected = Writer::default();
            expected.bytes(2, &inner.0);
            assert_eq!(w.0, expected.0, "{n}");
        }
    }

    #[test]
    fn negative_ints_take_ten_bytes_as_protobuf_says() {
        let mut w = Writer::default();
        key_value(&mut w, 1, "k", &AttrValue::Int(-32600));
        // field 1 (len) | len | key | value message (len) | int (varint 10 bytes)
        assert_eq!(w.0.len(), 2 + 3 + 2 + 1 + 10);
    }
}
