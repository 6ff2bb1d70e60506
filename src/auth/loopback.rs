//! The loopback redirect listener of the authorization-code flow (RFC 8252 §7.3, SPEC §6.3):
//! `http://127.0.0.1:<random port>/callback`, waiting for the browser's one redirect.
//!
//! Owns: binding, reading one request head (bounded, with timeouts), checking `state`, and the
//! page the browser shows. Must not: print the code, or wait past its deadline.
//!
//! Requests to other paths (a browser's `/favicon.ico`) get a 404 and the listener keeps
//! waiting; the first `/callback` request ends the wait either way (code, error, or a wrong
//! `state`, which fails the login: it is not the redirect this login asked for).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;
/// Read and write timeout of one browser connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The redirect path.
pub const CALLBACK_PATH: &str = "/callback";

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    port: u16,
}

impl Listener {
    /// Binds `127.0.0.1` on a port the system picks.
    pub fn bind() -> std::io::Result<Listener> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        Ok(Listener { listener, port })
    }

    /// The `redirect_uri` to register with the authorize request.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Waits until `deadline` for the redirect; returns the authorization code. `cancelled`
    /// is polled (Ctrl-C in the session).
    pub fn wait(
        &self,
        state: &str,
        deadline: Instant,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<String, String> {
        loop {
            if cancelled() {
                return Err("the login was cancelled".into());
            }
            if Instant::now() >= deadline {
                return Err(
                    "no redirect reached the loopback listener before the timeout (was the URL opened?)".into(),
                );
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(result) = serve(stream, state) {
                        return result;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(format!("the loopback listener failed: {e}")),
            }
        }
    }
}

/// Reads the request head: the request target of a `GET`, or `None`.
fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_string)
}

fn respond(stream: &mut TcpStream, status: &str, title: &str, body: &str) {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>llxprt: {title}</title></head><body style=\"font-family: sans-serif; margin: 3em\"><h1>{title}</h1><p>{body}</p></body></html>"
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

/// Only safe characters of a server-sent value are echoed into the page.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        .take(100)
        .collect()
}

/// Serves one connection: `None` when it was not the callback (keep waiting).
fn serve(mut stream: TcpStream, state: &str) -> Option<Result<String, String>> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Some(target) = read_target(&mut stream) else {
        respond(&mut stream, "400 Bad Request", "Bad request", "");
        return None;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != CALLBACK_PATH {
        respond(&mut stream, "404 Not Found", "Not found", "");
        return None;
    }
    let mut code = None;
    let mut got_state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    if got_state.as_deref() != Some(state) {
        respond(
            &mut stream,
            "400 Bad Request",
            "Sign-in refused",
            "This redirect does not belong to the login llxprt started (its state does not match). Start the login again.",
        );
        return Some(Err(
            "the redirect's state does not match this login (refused; start the login again)"
                .into(),
        ));
    }
    if let Some(e) = error {
        let e = plain(&e);
        let d = description.as_deref().map(plain).unwrap_or_default();
        respond(
            &mut stream,
            "200 OK",
            "Sign-in failed",
            &format!("The authorization server said: {e} {d}. You can close this tab."),
        );
        return Some(Err(format!(
            "the authorization server refused: {e}{}",
            if d.is_empty() {
                String::new()
            } else {
                format!(" ({d})")
            }
        )));
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        respond(
            &mut stream,
            "400 Bad Request",
            "Sign-in failed",
            "The redirect carried no authorization code.",
        );
        return Some(Err("the redirect carried no authorization code".into()));
    };
    respond(
        &mut stream,
        "200 OK",
        "Signed in",
        "llxprt received the sign-in. You can close this tab and return to the terminal.",
    );
    Some(Ok(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, path: &str) -> String {
        let port = uri
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn stray_requests_are_404_then_the_callback_gives_the_code() {
        let l = Listener::bind().unwrap();
        let uri = l.redirect_uri();
        let t = std::thread::spawn(move || {
            let a = get(&uri, "/favicon.ico");
            let b = get(&uri, "/callback?code=abc&state=s1");
            (a, b)
        });
        let code = l
            .wait("s1", Instant::now() + Duration::from_secs(10), &|| false)
            .unwrap();
        assert_eq!(code, "abc");
        let (a, b) = t.join().unwrap();
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
        assert!(b.contains("Signed in"), "{b}");
    }

    #[test]
    fn a_wrong_state_fails_and_the_deadline_holds() {
        let l = Listener::bind().unwrap();
        let uri = l.redirect_uri();
        let t = std::thread::spawn(move || get(&uri, "/callback?code=abc&state=other"));
        let e = l
            .wait("s1", Instant::now() + Duration::from_secs(10), &|| false)
            .unwrap_err();
        assert!(e.contains("state does not match"), "{e}");
        assert!(t.join().unwrap().contains("400 Bad Request"));
        let started = Instant::now();
        let e = l
            .wait("s1", Instant::now() + Duration::from_millis(100), &|| false)
            .unwrap_err();
        assert!(e.contains("timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
