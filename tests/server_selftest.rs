//! Self-test of the loopback test server (`tests/support/server.rs`): each reply produces, for a
//! real ureq client over a real socket, what CRATES.md §1.5 says the client sees.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::server::{
    Reply, Server, SseOut, anthropic_error, anthropic_stream, anthropic_stream_error, gemini_error,
    gemini_stream, openai_error, openai_stream, openai_stream_error, refused_url,
};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn post(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    agent
        .post(format!("{url}/v1/chat/completions"))
        .header("Authorization", "Bearer sk-test")
        .send_json(json!({"model": "m", "stream": true}))
}

fn io_kind(e: &ureq::Error) -> Option<io::ErrorKind> {
    match e {
        ureq::Error::Io(e) => Some(e.kind()),
        _ => None,
    }
}

/// Reads SSE body lines until the body ends or fails; the lines read and the failure.
fn read_lines(resp: ureq::http::Response<ureq::Body>) -> (Vec<String>, Option<ureq::Error>) {
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return (lines, None),
            Ok(_) => lines.push(String::from_utf8(line).unwrap().trim_end().to_string()),
            Err(e) => return (lines, Some(ureq::Error::from(e))),
        }
    }
}

/// The `data:` payloads of the lines, parsed as JSON where possible.
fn data(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

#[test]
fn json_reply_has_status_headers_and_body_and_the_request_is_recorded() {
    let server = Server::start(vec![
        openai_error(
            429,
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
            "slow down",
        )
        .header("retry-after", "2")
        .header("retry-after-ms", "1500")
        .header("x-ratelimit-remaining-requests", "0"),
    ]);
    let mut resp = post(&agent(), &server.url()).unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let h = resp.headers();
    assert_eq!(h.get("retry-after").unwrap(), "2");
    assert_eq!(h.get("Retry-After-Ms").unwrap(), "1500");
    assert_eq!(h.get("x-ratelimit-remaining-requests").unwrap(), "0");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["param"], Value::Null);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("AUTHORIZATION"), Some("Bearer sk-test"));
    assert!(reqs[0].headers.contains_key("authorization"));
    assert_eq!(reqs[0].body, json!({"model": "m", "stream": true}));
}

#[test]
fn script_advances_last_reply_repeats_and_keep_alive_reuses_the_connection() {
    let server = Server::start(vec![
        anthropic_error("overloaded_error", "Overloaded"),
        gemini_error(429, "RESOURCE_EXHAUSTED", "quota", Some("22s")),
    ]);
    let agent = agent();
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let mut resp = post(&agent, &server.url()).unwrap();
        statuses.push(resp.status().as_u16());
        bodies.push(resp.body_mut().read_json::<Value>().unwrap());
    }
    assert_eq!(statuses, [529, 429, 429]);
    assert_eq!(bodies[0]["error"]["type"], "overloaded_error");
    assert_eq!(bodies[0]["type"], "error");
    assert_eq!(bodies[2]["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(bodies[2]["error"]["details"][0]["retryDelay"], "22s");
    assert_eq!(server.connection_count(), 1, "one pooled connection");
    let conns: Vec<usize> = server.requests().iter().map(|r| r.connection).collect();
    assert_eq!(conns, [0, 0, 0]);
}

#[test]
fn close_reply_and_connection_close_request_each_get_a_fresh_connection() {
    let server = Server::start(vec![
        Reply::json(200, json!({"ok": 1})).close(),
        Reply::json(200, json!({})),
    ]);
    let agent = agent();
    for _ in 0..2 {
        let mut resp = post(&agent, &server.url()).unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.body_mut().read_to_string().unwrap();
    }
    assert_eq!(server.connection_count(), 2);
    // A raw client asking for `Connection: close` gets it, and EOF after the body.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert_eq!(server.requests()[2].path, "/x?y=1");
    assert_eq!(server.requests()[2].body, Value::Null);
}

#[test]
fn close_before_headers_is_io_unexpected_eof() {
    let server = Server::start(vec![Reply::close_before_headers()]);
    let err = post(&agent(), &server.url()).unwrap_err();
    assert_eq!(io_kind(&err), Some(io::ErrorKind::UnexpectedEof), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn reset_is_io_connection_reset_and_the_request_is_recorded() {
    let server = Server::start(vec![Reply::reset()]);
    let err = post(&agent(), &server.url()).unwrap_err();
    assert_eq!(
        io_kind(&err),
        Some(io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    assert_eq!(server.requests()[0].body["model"], "m");
}

#[test]
fn refused_url_is_io_connection_refused() {
    let err = post(&agent(), &refused_url()).unwrap_err();
    assert_eq!(
        io_kind(&err),
        Some(io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
}

#[test]
fn no_response_is_eof_after_the_wait_or_a_recv_response_timeout() {
    let server = Server::start(vec![Reply::no_response(60)]);
    let start = Instant::now();
    let err = post(&agent(), &server.url()).unwrap_err();
    assert_eq!(io_kind(&err), Some(io::ErrorKind::UnexpectedEof), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(60));

    let impatient = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_recv_response(Some(Duration::from_millis(20)))
        .build()
        .new_agent();
    let err = post(&impatient, &server.url()).unwrap_err();
    assert!(
        matches!(err, ureq::Error::Timeout(ureq::Timeout::RecvResponse)),
        "{err:?}"
    );
}

#[test]
fn slow_headers_delays_the_inner_reply() {
    let server = Server::start(vec![Reply::slow_headers(
        50,
        Reply::json(503, json!({"e": 1})),
    )]);
    let start = Instant::now();
    let mut resp = post(&agent(), &server.url()).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), r#"{"e":1}"#);
}

#[test]
fn sse_events_arrive_chunked_one_by_one_with_their_delays() {
    let events = vec![
        SseOut::comment(),
        SseOut::data(json!({"a": 1})).after(40),
        SseOut::named("ping", json!({"type": "ping"})),
        SseOut::raw("data: {not json\n\n"),
        SseOut::raw("").after(10),
        SseOut::done(),
    ];
    let server = Server::start(vec![Reply::sse(events)]);
    let resp = post(&agent(), &server.url()).unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    assert_eq!(resp.headers().get("transfer-encoding").unwrap(), "chunked");
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let after_first = Instant::now();
    assert_eq!(first, ": keep-alive\n");
    let mut tail = String::new();
    reader.read_line(&mut tail).unwrap(); // blank line of the comment, already there
    reader.read_line(&mut tail).unwrap();
    assert!(
        after_first.elapsed() >= Duration::from_millis(30),
        "the delayed event came late"
    );
    reader.read_to_string(&mut tail).unwrap(); // clean end: terminating chunk
    assert_eq!(
        tail,
        "\ndata: {\"a\":1}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\ndata: {not json\n\ndata: [DONE]\n\n"
    );
}

#[test]
fn cut_after_is_unexpected_eof_mid_body() {
    let server = Server::start(vec![Reply::cut_after(
        2,
        Reply::sse(openai_stream(&["a", "b", "c"], Some("stop"), true, None)),
    )]);
    let (lines, err) = read_lines(post(&agent(), &server.url()).unwrap());
    let err = err.expect("a cut chunked stream is an error");
    assert_eq!(io_kind(&err), Some(io::ErrorKind::UnexpectedEof), "{err:?}");
    let got = data(&lines);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["choices"][0]["delta"]["content"], "b");
}

#[test]
fn stall_after_is_a_per_read_timeout() {
    let server = Server::start(vec![Reply::stall_after(
        1,
        2_000,
        Reply::sse(anthropic_stream(&["x"], true)),
    )]);
    let watchful = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_per_read(Some(Duration::from_millis(50)))
        .build()
        .new_agent();
    let start = Instant::now();
    let (lines, err) = read_lines(post(&watchful, &server.url()).unwrap());
    let err = err.expect("a stall is an error");
    assert!(
        matches!(err, ureq::Error::Timeout(ureq::Timeout::PerRead)),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(lines[0], "event: message_start");
    drop(server); // bounded: returns at once although the connection is stalled for 2 s
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn dropping_the_server_ends_a_stalled_stream_with_eof() {
    let server = Server::start(vec![Reply::stall_after(
        1,
        10_000,
        Reply::sse(gemini_stream(&["x", "y"], true)),
    )]);
    let resp = post(&agent(), &server.url()).unwrap();
    let start = Instant::now();
    let reader = std::thread::spawn(move || read_lines(resp));
    std::thread::sleep(Duration::from_millis(30));
    drop(server);
    let (lines, err) = reader.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(lines.len(), 2);
    assert_eq!(io_kind(&err.unwrap()), Some(io::ErrorKind::UnexpectedEof));
}

#[test]
fn close_delimited_cut_is_a_clean_eof() {
    let server = Server::start(vec![
        Reply::cut_after(
            1,
            Reply::sse(openai_stream(&["a", "b"], Some("stop"), true, None)),
        )
        .close_delimited(),
    ]);
    let resp = post(&agent(), &server.url()).unwrap();
    assert!(resp.headers().get("transfer-encoding").is_none());
    let (lines, err) = read_lines(resp);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(data(&lines).len(), 1);
}

#[test]
fn truncated_body_is_unexpected_eof() {
    let server = Server::start(vec![Reply::truncated(
        5,
        Reply::json(200, json!({"choices": []})),
    )]);
    let mut resp = post(&agent(), &server.url()).unwrap();
    let err = resp.body_mut().read_to_string().unwrap_err();
    assert_eq!(io_kind(&err), Some(io::ErrorKind::UnexpectedEof), "{err:?}");
}

#[test]
fn chunked_and_non_json_request_bodies_are_recorded() {
    let server = Server::start(vec![Reply::json(200, json!({}))]);
    let agent = agent();
    let mut src: &[u8] = br#"{"chunked": true}"#;
    let mut resp = agent
        .post(server.url())
        .header("content-type", "application/json")
        .send(ureq::SendBody::from_reader(&mut src))
        .unwrap();
    resp.body_mut().read_to_string().unwrap();
    let mut resp = agent.post(server.url()).send("plain text").unwrap();
    resp.body_mut().read_to_string().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(reqs[0].body, json!({"chunked": true}));
    assert_eq!(reqs[1].body, json!("plain text"));
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn oversized_and_malformed_requests_are_refused_with_a_status() {
    let server = Server::start(vec![Reply::json(200, json!({}))]);
    for (request, status) in [
        ("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", "413"),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "400",
        ),
        ("nonsense\r\n\r\n", "400"),
    ] {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn provider_streams_carry_their_finish_signals() {
    let server = Server::start(vec![
        Reply::sse(openai_stream(
            &["Hel", "lo"],
            Some("stop"),
            true,
            Some((3, 2)),
        )),
        Reply::sse(anthropic_stream(&["Hel", "lo"], true)),
        Reply::sse(gemini_stream(&["Hel", "lo"], true)),
        Reply::sse(vec![
            openai_stream_error("server_error", None, "boom"),
            anthropic_stream_error("overloaded_error", "Overloaded"),
        ]),
    ]);
    let agent = agent();
    let get = || read_lines(post(&agent, &server.url()).unwrap()).0;

    let openai = get();
    let d = data(&openai);
    assert_eq!(d.len(), 5);
    assert_eq!(
        d[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "Hel"})
    );
    assert_eq!(d[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(d[3]["choices"], json!([]));
    assert_eq!(d[3]["usage"]["total_tokens"], 5);
    assert_eq!(d[4], json!("[DONE]"));
    assert!(openai.iter().all(|l| !l.starts_with("event:")));

    let anthropic = get();
    let names: Vec<&str> = anthropic
        .iter()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let d = data(&anthropic);
    assert!(names.iter().zip(&d).all(|(n, d)| d["type"] == *n));
    assert_eq!(d[4]["delta"], json!({"type": "text_delta", "text": "lo"}));
    assert_eq!(d[6]["delta"]["stop_reason"], "end_turn");

    let d = data(&get());
    assert_eq!(d.len(), 2);
    assert!(d[0]["candidates"][0].get("finishReason").is_none());
    assert_eq!(d[1]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(d[1]["candidates"][0]["content"]["parts"][0]["text"], "lo");
    assert_eq!(d[1]["usageMetadata"]["totalTokenCount"], 12);

    let errors = get();
    let d = data(&errors);
    assert_eq!(d[0]["error"]["type"], "server_error");
    assert!(errors.contains(&"event: error".to_string()));
    assert_eq!(d[1]["error"]["type"], "overloaded_error");
    assert_eq!(
        server.connection_count(),
        1,
        "finished streams keep the connection"
    );
}

#[test]
fn large_bodies_are_read_whole_with_either_framing() {
    let server = Server::start(vec![Reply::json(200, json!({}))]);
    let agent = agent();
    let big = json!({"text": "x".repeat(3 * 1024 * 1024)});
    let mut resp = agent.post(server.url()).send_json(&big).unwrap();
    resp.body_mut().read_to_string().unwrap();
    let bytes = big.to_string().into_bytes();
    let mut src: &[u8] = &bytes;
    let mut resp = agent
        .post(server.url())
        .send(ureq::SendBody::from_reader(&mut src))
        .unwrap();
    resp.body_mut().read_to_string().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.body == big));
    assert_eq!(reqs[1].header("transfer-encoding"), Some("chunked"));
}

#[test]
fn expect_100_continue_is_answered() {
    let server = Server::start(vec![Reply::json(201, json!({"ok": true}))]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"{}").unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 201 Created\r\n");
    assert_eq!(server.requests()[0].body, json!({}));
}
