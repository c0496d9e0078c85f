//! The logs of `podmap serve`: `--log-format json` writes one JSON object a line, and the
//! request's INFO line carries its span (request id, method, path, matched route) and status,
//! so a log shipper can join a request's lines.

mod common;

use std::time::Duration;

use serde_json::Value;

/// `podmap serve --log-format json`, run as a user runs it: every stderr line is a JSON
/// object, and the request's INFO line carries its span (id, method, path, route) and status.
#[test]
fn json_logs_are_json_lines_carrying_the_request_span() {
    use std::io::{Read, Write};
    let (mut child, received) = common::serve_with_json_logs(&[]);
    let mut seen = Vec::new();
    // Every line until `until` accepts one, each parsed as JSON (bounded for liveness).
    let mut next_matching = |until: &dyn Fn(&Value) -> bool| -> Value {
        loop {
            let line = received
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{e}; lines so far: {seen:#?}"));
            let parsed: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            seen.push(line);
            if until(&parsed) {
                return parsed;
            }
        }
    };
    let serving = next_matching(&|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("podmap serving"))
    });
    let message = serving["message"].as_str().unwrap();
    let addr = message
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address in the start-up line");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET /api/speakers?podcast_id=demo-raumfahrt HTTP/1.1\r\nHost: {addr}\r\n\
         x-request-id: json-log-line-1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let logged = next_matching(&|v| {
        v["spans"][0]["request_id"] == "json-log-line-1" && v["status"].is_number()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(logged["level"], "INFO");
    assert_eq!(logged["status"], 200);
    let span = &logged["span"];
    assert_eq!(span["request_id"], "json-log-line-1");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["path"], "/api/speakers");
    assert_eq!(span["route"], "/api/speakers");
}
