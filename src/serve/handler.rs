//! The routes of `serve` (SPEC §8.3): `POST /v1/chat/completions`, `GET /v1/models`,
//! `GET /v1/models/{id}`, `GET /health`, each behind the checks of SPEC §7.
//!
//! Owns: one connection's request loop (keep-alive), routing, and answering each route on the
//! connection's own thread: the cheap routes and every refusal at once; a chat request is
//! read, waits for a slot of its profile (SPEC §7.1: 503 with `Retry-After` after the queue
//! time; given up when its client hangs up, which is watched until the request ends), then is
//! planned, run through the engine and answered (streamed or whole, or an error with the
//! status of SPEC §8.3), and logged in one line. Must not: decide retries or failover (the
//! engine does), or parse HTTP framing (see `conn`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::{Value, json};

use super::conn::{self, Conn, IDLE_TIMEOUT, ReadError};
use super::guard::{self, Refusal};
use super::plan::{self, PlanError};
use super::request;
use super::run::{self, Finished};
use super::sink::{Collect, Serving, StreamSink};
use super::slots::{QUEUE_TIMEOUT, Refused};
use super::{Ctx, health, log, wire};
use crate::clock::now_ms;
use crate::driver::Ending;

/// What a request leaves to do.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Run this chat request (`close` after it).
    Chat(Vec<u8>, bool),
}

/// Serves one connection until it closes.
pub fn connection(mut conn: Conn, ctx: &Arc<Ctx>) {
    loop {
        // A kept-alive connection's next request is awaited up to IDLE_TIMEOUT (a new one's
        // first within HEAD_TIMEOUT, see `conn`), let go at once when the server stops.
        let give_up = || ctx.stopping();
        let head = match conn.read_head(IDLE_TIMEOUT, &give_up) {
            Ok(h) => h,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, why)) => {
                let body = wire::error_body(why, "invalid_request_error", "bad_request", None);
                let _ = conn.write_all(&json_response(status, &body, &[], true));
                return;
            }
        };
        match handle(&mut conn, &head, ctx) {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Chat(body, close) => {
                if chat(&mut conn, &body, close, ctx) {
                    return;
                }
            }
        }
    }
}

fn json_response(status: u16, body: &Value, headers: &[(&str, String)], close: bool) -> Vec<u8> {
    conn::full_response(
        status,
        "application/json",
        headers,
        body.to_string().as_bytes(),
        close,
    )
}

/// Answers a refusal, then reads and drops what the client may still be sending of its body
/// (so a client that writes its whole body before reading gets the answer, not a reset).
/// Always closes.
fn refuse(conn: &mut Conn, head: &conn::Head, r: &Refusal, extra: &[(&str, String)]) -> Next {
    let body = wire::error_body(&r.message, r.kind, r.code, None);
    let mut headers = extra.to_vec();
    if r.status == 401 {
        headers.push(("www-authenticate", "Bearer".to_string()));
    }
    let _ = conn.write_all(&json_response(r.status, &body, &headers, true));
    if !head.expect_continue {
        conn.drain(head.content_length.unwrap_or(0));
    }
    Next::Close
}

fn next(close: bool) -> Next {
    if close { Next::Close } else { Next::KeepAlive }
}

/// Handles one request up to the point where a chat request needs a worker.
fn handle(conn: &mut Conn, head: &conn::Head, ctx: &Ctx) -> Next {
    let close = !head.keep_alive || ctx.stopping();
    if let Err(r) = guard::check_origin(head, ctx.loopback, ctx.api_key.as_deref()) {
        return refuse(conn, head, &r, &[]);
    }
    let path = head.path.trim_end_matches('/');
    let allow = match path {
        "/v1/chat/completions" => "POST",
        "/v1/models" | "/health" => "GET",
        p if p.starts_with("/v1/models/") => "GET",
        _ => {
            let r = Refusal {
                status: 404,
                kind: "invalid_request_error",
                code: "not_found",
                message: format!(
                    "no route {} (llxprt serve answers POST /v1/chat/completions, GET /v1/models, GET /health)",
                    head.path.chars().take(200).collect::<String>()
                ),
            };
            return refuse(conn, head, &r, &[]);
        }
    };
    if head.method != allow {
        let r = Refusal {
            status: 405,
            kind: "invalid_request_error",
            code: "method_not_allowed",
            message: format!(
                "{} is not allowed on {}; use {allow}",
                head.method, head.path
            ),
        };
        return refuse(conn, head, &r, &[("allow", allow.to_string())]);
    }
    if allow == "GET" {
        if head.content_length.unwrap_or(0) > 0 || head.chunked {
            let r = Refusal {
                status: 400,
                kind: "invalid_request_error",
                code: "unexpected_body",
                message: "a GET request has no body".into(),
            };
            return refuse(conn, head, &r, &[]);
        }
        let (status, body, headers) = match path {
            "/v1/models" => (200, models(ctx), Vec::new()),
            "/health" => health::check(ctx),
            p => model(ctx, &p["/v1/models/".len()..]),
        };
        let _ = conn.write_all(&json_response(status, &body, &headers, close));
        return next(close);
    }
    let len = match guard::check_json_post(head) {
        Ok(l) => l,
        Err(r) => return refuse(conn, head, &r, &[]),
    };
    if head.expect_continue && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return Next::Close;
    }
    match conn.read_body(len) {
        Ok(b) => Next::Chat(b, close),
        Err(ReadError::Closed) => Next::Close,
        Err(ReadError::Bad(status, why)) => {
            let body = wire::error_body(why, "invalid_request_error", "bad_request", None);
            let _ = conn.write_all(&json_response(status, &body, &[], true));
            Next::Close
        }
    }
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "llxprt"})
}

/// Every profile that loads, as a model id (SPEC §8.3).
fn models(ctx: &Ctx) -> Value {
    let data: Vec<Value> = ctx
        .store
        .list()
        .into_iter()
        .filter(|l| l.profile.is_ok())
        .map(|l| model_object(&l.name))
        .collect();
    json!({"object": "list", "data": data})
}

fn model(ctx: &Ctx, id: &str) -> (u16, Value, Vec<(&'static str, String)>) {
    match ctx.store.load(id) {
        Ok(_) => (200, model_object(id), Vec::new()),
        Err(_) => (
            404,
            wire::error_body(
                &format!("no profile named {id:?}"),
                "invalid_request_error",
                "model_not_found",
                Some("model"),
            ),
            Vec::new(),
        ),
    }
}

/// A chat request, from its body to its answer and log line; returns whether the connection
/// closes.
fn chat(conn: &mut Conn, body: &[u8], close: bool, ctx: &Ctx) -> bool {
    // A request that waited in the queue through Ctrl-C still runs; the connection closes.
    let close = close || ctx.stopping();
    let started = Instant::now();
    let req = match request::parse(body) {
        Ok(r) => r,
        Err(e) => {
            let b = wire::error_body(
                &e.message,
                "invalid_request_error",
                "invalid_request",
                Some(&e.param),
            );
            let _ = conn.write_all(&json_response(400, &b, &[], close));
            ctx.log_line(&format!("status=400 error={:?}", e.message));
            return close;
        }
    };
    let name = plan::profile_for(&ctx.store, req.model.as_deref(), &ctx.default_profile);
    // From here the client is watched: a hang-up ends the wait for a slot, or the run.
    let cancel = Arc::new(AtomicBool::new(false));
    let _watching = ctx.hangup.watch(conn.stream(), &cancel);
    let _slot = match ctx.slots.acquire(&name, QUEUE_TIMEOUT, &cancel) {
        Ok(slot) => slot,
        Err(why) => return no_slot(conn, ctx, &name, why, started, close),
    };
    let chosen = match plan::prepare(&ctx.store, &name, &req) {
        Ok(c) => c,
        Err(e) => {
            let (status, b) = match &e {
                PlanError::Unsupported { field, message } => (
                    400,
                    wire::error_body(
                        message,
                        "invalid_request_error",
                        "unsupported_parameter",
                        Some(field),
                    ),
                ),
                // SPEC §7.1: a profile's error may quote its `base-url`.
                PlanError::Config(m) => (
                    500,
                    wire::error_body(
                        &crate::redact::scrub(m),
                        "server_error",
                        "configuration_error",
                        None,
                    ),
                ),
            };
            let _ = conn.write_all(&json_response(status, &b, &[], close));
            ctx.log_line(&format!(
                "status={status} error={:?}",
                b["error"]["message"]
            ));
            return close;
        }
    };
    let id = ctx.engine.next_id();
    let rid = format!("chatcmpl-{id:x}");
    let created = now_ms() / 1000;
    let serving = Rc::new(RefCell::new(Serving::default()));
    let job = run::Job {
        root: ctx.store.root(),
        prepared: &chosen.prepared,
        turns: &req.turns,
        raw_messages: chosen.passthrough.then_some(req.raw_messages.as_slice()),
        id,
        cancel: cancel.clone(),
        serving: serving.clone(),
    };
    let mut close = close;
    let (status, fin, notices) = if req.stream {
        let mut sink = StreamSink::new(
            conn,
            rid.clone(),
            created,
            serving.clone(),
            close,
            chosen.passthrough,
            cancel,
        );
        let fin = run::run(&ctx.engine, &job, &mut sink, ctx.recording.as_ref());
        let mut status = 200;
        match &fin.ending {
            Ending::Delivered { .. } => sink.finish_ok(&fin.answer, req.include_usage),
            Ending::Failed { error, .. } if sink.started() => {
                sink.finish_interrupted(error);
                close = true;
            }
            Ending::Failed { .. } => status = 0,
            Ending::Cancelled { .. } => close = true,
        }
        close |= sink.broken();
        let notices = std::mem::take(&mut sink.collect.notices);
        drop(sink);
        if status == 0 {
            status = write_failure(conn, &fin, close);
        }
        (status, fin, notices)
    } else {
        let mut sink = Collect::default();
        let fin = run::run(&ctx.engine, &job, &mut sink, ctx.recording.as_ref());
        let status = match &fin.ending {
            Ending::Delivered {
                backend, bucket, ..
            } => {
                let model = serving.borrow().model.clone();
                let raw = sink
                    .raw_body
                    .as_deref()
                    .filter(|_| chosen.passthrough)
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok());
                let a = &fin.answer;
                // Only the reasoning the shell showed (SPEC §3.1 `reasoning.includeInResponse`).
                let reasoning = sink.reasoning.as_deref();
                let b = match raw {
                    Some(up) => {
                        wire::passthrough_completion(&rid, created, &model, &up, reasoning, a.usage)
                    }
                    None => wire::completion(
                        &rid,
                        created,
                        &model,
                        &a.text,
                        reasoning,
                        a.finish_reason.as_deref(),
                        a.usage,
                    ),
                };
                let headers = [
                    ("x-llxprt-backend", backend.clone()),
                    ("x-llxprt-bucket", bucket.clone()),
                    ("x-request-id", rid.clone()),
                ];
                let _ = conn.write_all(&json_response(200, &b, &headers, close));
                200
            }
            Ending::Cancelled { .. } => {
                close = true;
                0
            }
            Ending::Failed { .. } => write_failure(conn, &fin, close),
        };
        (status, fin, sink.notices)
    };
    log::request(
        ctx, &chosen, &rid, req.stream, status, &fin, &notices, started,
    );
    close
}

/// Answers a request that got no slot (SPEC §7.1): a 503 with `Retry-After` after the queue
/// time, nothing when its client is gone; logs it. Returns whether the connection closes.
fn no_slot(
    conn: &mut Conn,
    ctx: &Ctx,
    profile: &str,
    why: Refused,
    started: Instant,
    close: bool,
) -> bool {
    let waited = started.elapsed().as_millis();
    match why {
        Refused::Gone => {
            ctx.log_line(&format!(
                "profile={profile} status=0 waited_ms={waited} cancelled=client_gone"
            ));
            true
        }
        Refused::Full => {
            let message = format!(
                "llxprt serve is busy: no request slot of profile \"{profile}\" became free within {} s ({} per profile)",
                QUEUE_TIMEOUT.as_secs(),
                ctx.slots.per_profile()
            );
            let body = wire::error_body(&message, "service_unavailable", "overloaded", None);
            let headers = [("retry-after", "1".to_string())];
            let _ = conn.write_all(&json_response(503, &body, &headers, close));
            ctx.log_line(&format!(
                "profile={profile} status=503 waited_ms={waited} error={message:?}"
            ));
            close
        }
    }
}

/// Answers a failed request with its SPEC §8.3 status; returns the status.
fn write_failure(conn: &mut Conn, fin: &Finished, close: bool) -> u16 {
    let Ending::Failed { kind, error, .. } = &fin.ending else {
        return 0;
    };
    let r = wire::failure(*kind, &fin.attempts, fin.retry_at, now_ms());
    let body = wire::error_body(error, r.kind, &r.code, None);
    let mut headers = Vec::new();
    if let Some(s) = r.retry_after_s {
        headers.push(("retry-after", s.to_string()));
    }
    let _ = conn.write_all(&json_response(r.status, &body, &headers, close));
    r.status
}
