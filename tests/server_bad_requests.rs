//! Bad requests on every route, over real sockets on loopback, as one table: each answers
//! its 4xx with a JSON `{"error": "…"}` body, never a 500 and never a bare status. The few
//! requests that look hostile but are valid (huge paging numbers, a query of exactly the
//! longest length, an unknown podcast on `/api/speakers`) answer 200 with JSON.

mod common;
mod loopback;
mod support;

use loopback::{raw, send, start, Server};
use podmap::server::api::MAX_QUERY_CHARS;
use podmap::server::Settings;
use support::openai_standin::{Behaviour, StandIn};

const JSON: &str = "application/json";

/// One request of the table and the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
}

fn case(name: &'static str, method: &'static str, path: &str, body: &str, status: u16) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: Some(JSON),
        body: Some(body.as_bytes().to_vec()),
        status,
    }
}

fn bare(name: &'static str, method: &'static str, path: &str, status: u16) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: None,
        body: None,
        status,
    }
}

fn bytes(
    name: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
) -> Case {
    Case {
        name,
        method: "POST",
        path: path.to_owned(),
        content_type,
        body: Some(body),
        status,
    }
}

/// A query of `n` characters of two bytes each: the cap counts characters, not bytes.
fn query_of(n: usize) -> String {
    "ä".repeat(n)
}

/// The bad (and borderline) requests of a POST route with a JSON body; `numbers` are the
/// route's paging fields, the first of them used for the wrong-type cases.
fn body_cases(path: &'static str, with_query: bool, numbers: &[&str]) -> Vec<Case> {
    let p = r#""podcastId": "demo-raumfahrt""#;
    let q = if with_query {
        r#""query": "Raketen", "#
    } else {
        ""
    };
    let n = numbers[0];
    let largest: Vec<String> = numbers
        .iter()
        .map(|f| format!(r#""{f}": {}"#, usize::MAX))
        .collect();
    let mut cases = vec![
        case("malformed JSON", "POST", path, r#"{"query": "#, 400),
        case("JSON that is not an object", "POST", path, "[1, 2]", 422),
        case(
            "wrong type: number as text",
            "POST",
            path,
            &format!(r#"{{{q}{p}, "{n}": "10"}}"#),
            422,
        ),
        case(
            "wrong type: podcastId as number",
            "POST",
            path,
            &format!(r#"{{{q}"podcastId": 7}}"#),
            422,
        ),
        case(
            "negative number",
            "POST",
            path,
            &format!(r#"{{{q}{p}, "{n}": -1}}"#),
            422,
        ),
        case(
            "fraction",
            "POST",
            path,
            &format!(r#"{{{q}{p}, "{n}": 2.5}}"#),
            422,
        ),
        case(
            "float beyond 64 bits",
            "POST",
            path,
            &format!(r#"{{{q}{p}, "{n}": 1e40}}"#),
            422,
        ),
        case(
            "integer beyond 64 bits",
            "POST",
            path,
            &format!(r#"{{{q}{p}, "{n}": 99999999999999999999999}}"#),
            422,
        ),
        case(
            "largest paging numbers",
            "POST",
            path,
            &format!(r#"{{{q}{p}, {}}}"#, largest.join(", ")),
            200,
        ),
        case(
            "unknown podcast",
            "POST",
            path,
            &format!(r#"{{{q}"podcastId": "nope"}}"#),
            404,
        ),
        case(
            "path as podcast",
            "POST",
            path,
            &format!(r#"{{{q}"podcastId": "../../etc/passwd"}}"#),
            404,
        ),
        bytes(
            "invalid UTF-8 in the body",
            path,
            Some(JSON),
            b"{\"podcastId\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        bytes("a 1 MiB body", path, Some(JSON), vec![b' '; 1 << 20], 413),
        bytes(
            "text/plain body",
            path,
            Some("text/plain"),
            format!(r#"{{{q}{p}}}"#).into_bytes(),
            415,
        ),
        bytes(
            "no content type",
            path,
            None,
            format!(r#"{{{q}{p}}}"#).into_bytes(),
            415,
        ),
        bare("wrong method", "GET", path, 405),
        bare("wrong method", "DELETE", path, 405),
    ];
    if with_query {
        let longest = query_of(MAX_QUERY_CHARS);
        let over = query_of(MAX_QUERY_CHARS + 1);
        cases.extend([
            case("missing query", "POST", path, &format!("{{{p}}}"), 422),
            case(
                "wrong type: query as number",
                "POST",
                path,
                &format!(r#"{{"query": 5, {p}}}"#),
                422,
            ),
            case(
                "blank query",
                "POST",
                path,
                &format!(r#"{{"query": "  \n ", {p}}}"#),
                400,
            ),
            case(
                "query one character too long",
                "POST",
                path,
                &format!(r#"{{"query": "{over}", {p}}}"#),
                400,
            ),
            case(
                "query of the longest length",
                "POST",
                path,
                &format!(r#"{{"query": "{longest}", {p}}}"#),
                200,
            ),
        ]);
    } else {
        // Every field of /api/episodes/latest is optional; with several podcasts served and
        // none of them the original's default, the podcast must be named.
        cases.push(case(
            "no podcastId with several podcasts",
            "POST",
            path,
            "{}",
            400,
        ));
    }
    cases
}

fn table() -> Vec<Case> {
    let mut cases = body_cases("/api/episodes/search", true, &["limit", "offset", "topK"]);
    cases.extend(body_cases(
        "/api/episodes/latest",
        false,
        &["limit", "offset"],
    ));
    cases.extend(body_cases("/api/chat", true, &["topK"]));
    let p = r#""query": "Raketen", "podcastId": "demo-raumfahrt""#;
    cases.extend([
        case(
            "wrong type: crossPodcast as text",
            "POST",
            "/api/episodes/search",
            &format!(r#"{{{p}, "crossPodcast": "yes"}}"#),
            422,
        ),
        case(
            "wrong type: stream as text",
            "POST",
            "/api/chat",
            &format!(r#"{{{p}, "stream": "yes"}}"#),
            422,
        ),
        case(
            "wrong type: speakerSlug as list",
            "POST",
            "/api/chat",
            &format!(r#"{{{p}, "speakerSlug": ["a"]}}"#),
            422,
        ),
        bare(
            "invalid UTF-8 in the query string",
            "GET",
            "/api/speakers?podcast_id=%FF%FE",
            400,
        ),
        bare(
            "half a character in the query string",
            "GET",
            "/api/speakers?podcast_id=demo%C3",
            400,
        ),
        bare(
            "podcast_id twice",
            "GET",
            "/api/speakers?podcast_id=a&podcast_id=b",
            400,
        ),
        // The original answered an unknown podcast's speakers with an empty list.
        bare(
            "unknown podcast",
            "GET",
            "/api/speakers?podcast_id=nope",
            200,
        ),
        bare(
            "huge podcast_id",
            "GET",
            &format!("/api/speakers?podcast_id={}", "a".repeat(8000)),
            200,
        ),
        bare("wrong method", "POST", "/api/speakers", 405),
        bare("wrong method", "POST", "/api/podcasts", 405),
        bare("wrong method", "DELETE", "/api/podcasts", 405),
        bare("wrong method", "POST", "/api/health", 405),
        bare("wrong method", "PUT", "/api/ready", 405),
        bare("no such route", "GET", "/api/nope", 404),
        bare("no such route", "POST", "/api/episodes", 404),
    ]);
    cases
}

async fn server() -> (Server, StandIn) {
    let standin = StandIn::start(Behaviour::default()).await;
    let settings = common::unlimited(Settings {
        llm_base_url: Some(standin.base_url.clone()),
        llm_api_key: Some("key".into()),
        embedding_base_url: Some(standin.base_url.clone()),
        ..Settings::default()
    });
    (start(settings).await, standin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_4xx_json_on_every_route() {
    let (server, _standin) = server().await;
    let mut wrong = Vec::new();
    let cases = table();
    for c in &cases {
        let headers: Vec<(&str, &str)> = c
            .content_type
            .map(|t| ("content-type", t))
            .into_iter()
            .collect();
        let reply = send(&server, c.method, &c.path, &headers, c.body.clone()).await;
        let shown = format!(
            "{} {} ({}): {} {}",
            c.method,
            c.path.chars().take(60).collect::<String>(),
            c.name,
            reply.status,
            reply.text.chars().take(200).collect::<String>()
        );
        let json_type = reply
            .header("content-type")
            .is_some_and(|t| t.starts_with(JSON));
        let error = reply.json.as_ref().and_then(|j| j.get("error"));
        let fine = reply.status == c.status
            && json_type
            && match c.status {
                200 => error.is_none(),
                _ => error.is_some_and(|e| e.as_str().is_some_and(|e| !e.is_empty())),
            }
            && (reply.status != 405 || reply.header("allow").is_some());
        if !fine {
            wrong.push(format!("expected {}: {shown}", c.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_cap_refuses_before_any_upstream_call() {
    let (server, standin) = server().await;
    let over = query_of(MAX_QUERY_CHARS + 1);
    for path in ["/api/episodes/search", "/api/chat"] {
        let body = serde_json::json!({"query": over, "podcastId": "demo-raumfahrt"});
        let reply = loopback::post_json(&server, path, &[], body).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert_eq!(reply.error(), "query must be at most 2000 characters long");
    }
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_outside_ascii_in_the_request_target_are_refused() {
    let (server, _standin) = server().await;
    let answer = raw(
        &server,
        b"GET /api/speakers?podcast_id=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let status = answer.split_whitespace().nth(1).unwrap_or_default();
    assert_eq!(status, "400", "{answer}");
}
