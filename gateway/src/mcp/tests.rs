use super::jsonrpc::classify_capped;
use super::jsonrpc::{check_mirrored_headers, effective_revision};
use super::legacy::EndpointRewriter;
use super::sse::{Event, SseParser};
use super::*;
use bytes::Bytes;

fn one(body: &str) -> Message {
    classify(body.as_bytes(), 64)
        .expect("valid")
        .messages
        .remove(0)
}

#[test]
fn classifies_tools_call() {
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":2,"b":3}}}"#;
    let m = one(body);
    assert_eq!(m.kind, Kind::Request);
    assert_eq!(m.method, Method::ToolsCall);
    assert_eq!(m.id.as_ref().map(RequestId::raw), Some("7"));
    assert_eq!(m.target.as_deref(), Some("get-sum"));
    let args = m.arguments.expect("arguments");
    assert_eq!(&body[args], r#"{"a":2,"b":3}"#);
}

#[test]
fn classifies_resources_prompts_notifications_responses() {
    let m = one(
        r#"{"jsonrpc":"2.0","id":"r1","method":"resources/read","params":{"uri":"test://static-text"}}"#,
    );
    assert_eq!(
        (m.method.clone(), m.target.as_deref()),
        (Method::ResourcesRead, Some("test://static-text"))
    );
    assert_eq!(m.id.as_ref().map(RequestId::raw), Some("\"r1\""));
    let m = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(
        (m.kind, m.method),
        (Kind::Notification, Method::Initialized)
    );
    let m = one(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
    assert_eq!(m.kind, Kind::Response);
    let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"x/y"}"#);
    assert_eq!(m.method.as_label(), "other");
    assert_eq!(m.method.name(), "x/y");
}

#[test]
fn reads_the_revision_from_meta_only() {
    let m = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    );
    assert_eq!(m.revision, Some(Revision::V2026_07_28));
    let m = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
    );
    assert_eq!(
        m.revision, None,
        "an initialize proposes, it does not speak, a version"
    );
}

#[test]
fn batches_are_classified_per_message() {
    let f = classify(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#, 64).expect("ok");
    assert!(f.batch);
    assert_eq!(f.request_ids().count(), 1);
    assert!(matches!(
        classify(b"[]", 64),
        Err(ClassifyError::Invalid { .. })
    ));
}

#[test]
fn malformed_bodies_keep_the_id_when_it_can_be_read() {
    let e = classify(
        br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"#,
        64,
    )
    .expect_err("bad");
    assert!(matches!(e, ClassifyError::Parse { .. }));
    assert_eq!(e.id().map(RequestId::raw), Some("42"));
    let e = classify(b"not json", 64).expect_err("bad");
    assert_eq!(e.id(), None);
    let e = classify(b"", 64).expect_err("bad");
    assert!(matches!(e, ClassifyError::Parse { .. }));
    let e = classify(br#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#, 64).expect_err("bad");
    assert_eq!(e.id().map(RequestId::raw), Some("\"x\""));
    let e = classify(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, 64).expect_err("bad");
    assert!(matches!(e, ClassifyError::Invalid { .. }));
}

#[test]
fn duplicate_members_are_refused() {
    let e = classify(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"a"}}"#,
        64,
    )
    .expect_err("dup");
    assert!(
        matches!(
            e,
            ClassifyError::Invalid {
                reason: "duplicate member",
                ..
            }
        ),
        "{e:?}"
    );
    let e = classify(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        64,
    )
    .expect_err("dup");
    assert!(matches!(e, ClassifyError::Invalid { .. }), "{e:?}");
}

#[test]
fn depth_is_capped_before_parsing() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"x","arguments":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let e = classify(deep.as_bytes(), 64).expect_err("deep");
    assert!(matches!(e, ClassifyError::TooDeep { limit: 64, .. }));
    assert_eq!(e.id().map(RequestId::raw), Some("9"));
    // Brackets inside strings do not count.
    let s = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"s":"{}"}}}}"#,
        "[".repeat(500)
    );
    assert!(classify(s.as_bytes(), 8).is_ok());
}

#[test]
fn mirrored_headers_must_match_the_body() {
    let f = classify(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#, 64).expect("ok");
    let rev = effective_revision(None, &f);
    assert_eq!(rev, Some(Revision::V2026_07_28));
    assert!(check_mirrored_headers(&f, rev, Some(b"tools/call"), Some(b"echo")).is_ok());
    assert!(
        check_mirrored_headers(&f, rev, Some(b"tools/call"), Some(b"=?base64?ZWNobw==?=")).is_ok()
    );
    let e =
        check_mirrored_headers(&f, rev, Some(b"tools/list"), Some(b"echo")).expect_err("method");
    assert_eq!(e.id().map(RequestId::raw), Some("5"));
    assert!(check_mirrored_headers(&f, rev, Some(b"tools/call"), Some(b"other")).is_err());
    assert!(check_mirrored_headers(&f, rev, None, None).is_err());
    // Older revisions: absent headers are fine, present ones must still match.
    let old = Some(Revision::V2025_06_18);
    assert!(check_mirrored_headers(&f, old, None, None).is_ok());
    assert!(check_mirrored_headers(&f, old, Some(b"ping"), None).is_err());
}

fn collect(chunks: &[&[u8]]) -> Vec<(String, String, Option<String>)> {
    let mut p = SseParser::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        p.feed(
            c,
            |Event {
                 event, data, id, ..
             }| {
                out.push((
                    String::from_utf8_lossy(event).into_owned(),
                    String::from_utf8_lossy(data).into_owned(),
                    id.map(|i| String::from_utf8_lossy(i).into_owned()),
                ))
            },
        );
    }
    out
}

#[test]
fn sse_survives_every_chunk_boundary() {
    let stream: &[u8] = b"id: 0\ndata: \n\n: comment\r\nevent: message\r\nid: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\rdata: y\r\rdata: last\n\n";
    let want = collect(&[stream]);
    assert_eq!(want.len(), 4, "{want:?}");
    assert_eq!(want[0], ("".into(), "".into(), Some("0".into())));
    assert_eq!(
        want[1],
        ("message".into(), "{\"a\":\n1}".into(), Some("1".into()))
    );
    assert_eq!(want[2].1, "x\ny");
    assert_eq!(want[3].1, "last");
    for i in 0..stream.len() {
        for j in i..stream.len() {
            let got = collect(&[&stream[..i], &stream[i..j], &stream[j..]]);
            assert_eq!(got, want, "split at {i},{j}");
        }
    }
}

#[test]
fn sse_caps_event_size() {
    let mut p = SseParser::new(16);
    let mut seen = Vec::new();
    p.feed(b"data: 0123456789abcdefXYZ\n\ndata: ok\n\n", |e| {
        seen.push((e.oversize, e.data.to_vec()))
    });
    assert_eq!(seen, vec![(true, vec![]), (false, b"ok".to_vec())]);
}

/// A `tools/call` of tool `t` with this id, classified.
fn tools_call(id: u32) -> RequestFacts {
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t"}}}}"#);
    classify(body.as_bytes(), 64).expect("ok")
}

#[test]
fn a_huge_answer_is_read_in_passing_without_being_kept() {
    let facts = tools_call(5);
    let id = facts.first().id.clone().expect("id");
    // Twice the inspection cap, and the TypeScript SDK's member order: the
    // result (with its tool error) before the id.
    let text = "y".repeat(8 << 20);
    let message = format!(
        r#"{{"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":true}},"jsonrpc":"2.0","id":5}}"#
    );
    let sse = format!("event: message\ndata: {message}\n\n");
    for (content_type, body) in [("text/event-stream", &sse), ("application/json", &message)] {
        for piece in [1500, 16 * 1024, 256 * 1024] {
            let mut ins = ResponseInspector::off();
            ins.start(content_type.as_bytes(), Some(&facts), 4 << 20);
            let mut most = 0;
            for chunk in body.as_bytes().chunks(piece) {
                ins.feed(chunk);
                most = most.max(ins.held());
            }
            ins.finish();
            assert_eq!(
                ins.outcome(&id),
                Some(Outcome::ToolError),
                "{content_type} in pieces of {piece}"
            );
            assert_eq!(ins.unparsed, 0);
            // What it held at most: the kept start and one piece, not the answer.
            assert!(
                most <= 2 * (64 * 1024 + piece),
                "{content_type} in pieces of {piece}: held {most} bytes"
            );
        }
    }
    // A broken huge answer is counted as unreadable, not taken for one.
    let mut ins = ResponseInspector::off();
    ins.start(b"text/event-stream", Some(&facts), 4 << 20);
    ins.feed(format!("data: {}\n\n", &message[..message.len() - 1]).as_bytes());
    assert_eq!((ins.outcome(&id), ins.unparsed), (None, 1));
}

#[test]
fn inspector_matches_sse_and_json_responses() {
    let facts = tools_call(3);
    let mut ins = ResponseInspector::off();
    ins.start(b"text/event-stream", Some(&facts), 1 << 20);
    for chunk in [&b"id: 0\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"res"[..], b"ult\":{\"content\":[],\"isError\":true}}\n\n"] {
        ins.feed(chunk);
    }
    ins.finish();
    let id = facts.first().id.clone().expect("id");
    assert_eq!(ins.outcome(&id), Some(Outcome::ToolError));
    assert_eq!(ins.server_messages, vec![Method::Progress]);

    let facts = classify(br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#, 64).expect("ok");
    let mut ins = ResponseInspector::off();
    ins.start(b"application/json; charset=utf-8", Some(&facts), 1 << 20);
    ins.feed(br#"{"jsonrpc":"2.0","id":"l","result":{"tools":[{"name":"a","inputSchema":{}},"#);
    ins.feed(br#"{"name":"b"}]}}"#);
    ins.finish();
    let seen: Option<Vec<Box<str>>> = ins
        .tools_seen
        .as_ref()
        .map(|t| t.iter().map(|t| t.name.clone()).collect());
    assert_eq!(seen.as_deref(), Some(&["a".into(), "b".into()][..]));
    let facts = classify(br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#, 64).expect("ok");
    let mut ins = ResponseInspector::off();
    ins.start(b"application/json", Some(&facts), 1 << 20);
    ins.feed(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#);
    ins.finish();
    assert_eq!(
        ins.outcome(facts.first().id.as_ref().expect("id")),
        Some(Outcome::Error(-32601))
    );
}

#[test]
fn legacy_endpoint_is_rewritten_across_chunks() {
    let mut rw = EndpointRewriter::new("/legacy", "");
    let a = rw.process(Some(Bytes::from_static(b"event: endp")), false);
    assert_eq!(a, None);
    let b = rw.process(
        Some(Bytes::from_static(
            b"oint\ndata: /message?sessionId=abc\n\nevent: message\ndata: {}\n\n",
        )),
        false,
    );
    assert_eq!(b.as_deref(), Some(&b"event: endpoint\ndata: /legacy/message?sessionId=abc\n\nevent: message\ndata: {}\n\n"[..]));
    let c = rw.process(Some(Bytes::from_static(b"data: later\n\n")), false);
    assert_eq!(c.as_deref(), Some(&b"data: later\n\n"[..]));

    let mut rw = EndpointRewriter::new("/gw/legacy", "/v1");
    let out = rw.process(
        Some(Bytes::from_static(
            b"event: endpoint\r\ndata: http://10.0.0.1:9000/v1/messages/?sessionId=1\r\n\r\n",
        )),
        false,
    );
    assert_eq!(
        out.as_deref(),
        Some(&b"event: endpoint\ndata: /gw/legacy/messages/?sessionId=1\n\n"[..])
    );
}

#[test]
fn shape_caps_on_arrays_and_strings() {
    use super::scan::{check, JsonCaps, Violation};
    let caps = JsonCaps {
        depth: 8,
        array_len: 3,
        string_len: 5,
    };
    assert_eq!(check(br#"{"a":[1,2,3]}"#, caps), None);
    assert_eq!(
        check(br#"{"a":[1,2,3,4]}"#, caps),
        Some(Violation::ArrayLen)
    );
    // Commas in strings and objects are not array elements.
    assert_eq!(check(br#"{"a":"x,y","b":1,"c":2,"d":3}"#, caps), None);
    assert_eq!(check(br#"{"a":[[1,2],[3]]}"#, caps), None);
    assert_eq!(
        check(br#"{"a":"123456"}"#, caps),
        Some(Violation::StringLen)
    );
    assert_eq!(check(br#"{"a":"1\"4"}"#, caps), None);
    assert_eq!(check(&[b'['; 9], caps), Some(Violation::Depth));
    let e = classify_capped(
        br#"{"jsonrpc":"2.0","id":8,"method":"ping","params":{"a":[1,2,3,4]}}"#,
        caps,
    )
    .expect_err("cap");
    assert!(matches!(e, ClassifyError::TooLong { .. }));
    assert_eq!(e.id().map(RequestId::raw), Some("8"));
}

#[test]
fn params_are_an_object_or_absent_and_null_only_without_a_target() {
    let invalid = |body: &str| match classify(body.as_bytes(), 64) {
        Err(ClassifyError::Invalid { reason, id }) => (reason, id.map(|i| i.raw().to_owned())),
        other => panic!("{body}: {other:?}"),
    };
    for params in [r#"[1,{"name":"a"}]"#, r#""a""#, "1", "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":5,"method":"ping","params":{params}}}"#);
        assert_eq!(
            invalid(&body),
            ("params must be an object", Some("5".to_owned()))
        );
    }
    assert_eq!(
        invalid(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":null}"#),
        (
            "the call names no tool, resource or prompt",
            Some("6".to_owned())
        )
    );
    assert!(classify(
        br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":null}"#,
        64
    )
    .is_ok());
    assert!(classify(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#, 64).is_ok());
}

#[test]
fn broken_json_is_a_parse_error_and_a_wrong_shape_is_invalid() {
    let cases: [(&[u8], bool); 6] = [
        (br#"{"jsonrpc":"2.0","id":1,"method":5}"#, false),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"name":7}}"#,
            false,
        ),
        (b"5", false),
        (br#"{"jsonrpc":"2.0","id":1,"#, true),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#, true),
        (b"5x", true),
    ];
    for (body, parse) in cases {
        let e = classify(body, 64).expect_err("refused");
        assert_eq!(
            matches!(e, ClassifyError::Parse { .. }),
            parse,
            "{}: {e:?}",
            String::from_utf8_lossy(body)
        );
        assert!(matches!(
            e,
            ClassifyError::Parse { .. } | ClassifyError::Invalid { .. }
        ));
    }
}

#[test]
fn tool_errors_are_read_from_the_result_in_one_pass() {
    let facts = classify(
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"c"}}]"#,
        64,
    )
    .expect("ok");
    let mut inspector = ResponseInspector::off();
    inspector.start(b"application/json", Some(&facts), 1 << 20);
    inspector.feed(br#"[{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"isError"}],"isError" : true}},"#);
    inspector.feed(br#"{"jsonrpc":"2.0","id":2,"result":{"isError":false,"content":[]}},{"jsonrpc":"2.0","id":3,"result":[]}]"#);
    inspector.finish();
    let outcomes: Vec<_> = inspector.outcomes().map(|(_, _, o)| o).collect();
    assert_eq!(
        outcomes,
        [
            Some(Outcome::ToolError),
            Some(Outcome::Ok),
            Some(Outcome::Ok)
        ]
    );
    assert_eq!(inspector.unparsed, 0);
}

#[test]
fn messages_the_skim_cannot_read_plainly_are_parsed_or_counted() {
    let facts = classify(
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}]"#,
        64,
    )
    .expect("ok");
    let mut inspector = ResponseInspector::off();
    inspector.start(b"text/event-stream", Some(&facts), 1 << 20);
    // An escaped key: only a parser reads it as `id`.
    inspector.feed(b"data: {\"jsonrpc\":\"2.0\",\"\\u0069d\":1,\"result\":{\"isError\":true}}\n\n");
    // A duplicate member and broken text: counted, not guessed.
    inspector.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"id\":2,\"result\":{}}\n\n");
    inspector.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"isError\":tru}}\n\n");
    // A server notification with an escaped method name.
    inspector.feed(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/\\u0070rogress\",\"params\":{}}\n\n");
    let outcomes: Vec<_> = inspector.outcomes().map(|(_, _, o)| o).collect();
    assert_eq!(outcomes, [Some(Outcome::ToolError), None]);
    assert_eq!(inspector.unparsed, 2);
    assert_eq!(inspector.server_messages, [Method::Progress]);
}

#[test]
fn members_an_upstream_could_read_otherwise_are_refused() {
    let reason = |body: &str| match classify(body.as_bytes(), 64) {
        Err(ClassifyError::Invalid { reason, id }) => (reason, id.map(|i| i.raw().to_owned())),
        other => panic!("{body}: {other:?}"),
    };
    let variant = super::members::CASE_VARIANT;
    for body in [
        // A second copy, in another case, or folded from Unicode.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"admin"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","METHOD":"x","params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","param\u017f":{"name":"admin"},"params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","NAME":"b"}}}"#,
    ] {
        assert_eq!(reason(body), (variant, Some("1".to_owned())), "{body}");
    }
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\u0061me":"admin"}}"#).0,
        "duplicate member"
    );
    // Escapes that spell a known member are that member.
    let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"echo"}}"#);
    assert_eq!(m.target.as_deref(), Some("echo"));
    // Members the gateway does not read may be spelt any way.
    let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"Other":1,"other":2}}"#);
    assert_eq!(m.method, Method::Ping);
}

#[test]
fn a_completion_names_what_it_completes() {
    use super::jsonrpc::RefKind;
    let m = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"a","value":"x"}}}"#,
    );
    assert_eq!(
        (m.reference, m.target.as_deref()),
        (Some(RefKind::Prompt), Some("greet"))
    );
    let m = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{p}"}}}"#,
    );
    assert_eq!(
        (m.reference, m.target.as_deref()),
        (Some(RefKind::Resource), Some("file:///{p}"))
    );
}

#[test]
fn ids_match_by_value() {
    let id = RequestId::from_raw(r#""a""#);
    assert!(id.same(br#""a""#));
    assert!(id.same(br#""\u0061""#));
    assert!(!id.same(br#""b""#));
    assert!(!id.same(b"1"));
    let n = RequestId::from_raw("1");
    assert!(n.same(b"1.0") && n.same(b"1e0") && !n.same(br#""1""#));
}

#[test]
fn a_name_that_is_not_plain_ascii_is_sent_encoded_and_reads_back() {
    use super::revision::{decode_header_name, encode_header_name};
    assert_eq!(encode_header_name("get-sum"), "get-sum");
    for name in ["café", "=?base64?x?=", "tab\there", ""] {
        let sent = encode_header_name(name);
        assert!(sent.starts_with("=?base64?"), "{name}: {sent}");
        assert_eq!(decode_header_name(sent.as_bytes()).as_deref(), Some(name));
    }
}

#[test]
fn an_event_written_again_keeps_data_read_from_several_lines() {
    use super::sse::{write_event, SseParser};
    let mut parser = SseParser::new(1024);
    let mut read = Vec::new();
    parser.feed(b"data: {\"a\":\ndata:  1}\n\n", |e| {
        read.push(e.data.to_vec())
    });
    assert_eq!(read, [b"{\"a\":\n 1}".to_vec()]);
    let mut out = Vec::new();
    write_event(&mut out, &read[0]);
    assert_eq!(out, b"event: message\ndata: {\"a\":\ndata:  1}\n\n");
    let mut again = Vec::new();
    SseParser::new(1024).feed(&out, |e| again.push(e.data.to_vec()));
    assert_eq!(again, read);
}
