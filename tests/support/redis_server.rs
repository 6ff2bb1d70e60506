//! A real `redis-server` for the shared-state tests (SPEC §5.9.1), started on a free loopback
//! port with no persistence and stopped by its PID on drop.
//!
//! - [`RedisServer::start`] returns `None` with a printed reason when `redis-server` is not
//!   installed, and panics instead under `CI=true` (`.ci/run` installs it, so there it must
//!   run).
//! - [`RedisServer::stop`] / [`RedisServer::restart`] take the server away and bring it back on
//!   the same port (the degraded-mode tests).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    /// Its loopback port.
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address").port()
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(None)
    }

    /// Starts a server, with `requirepass` when `password` is given.
    pub fn start_with(password: Option<&str>) -> Option<RedisServer> {
        if !installed() {
            let why = "redis-server is not installed (Debian: apt-get install -y redis-server)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; under CI=true this test must run"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_string),
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        s.launch();
        Some(s)
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }

    /// `redis://[:password@]127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A connection for looking at the keys directly.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// The JSON value stored under `key` (with its prefix), if any.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        let text: Option<String> = redis::cmd("GET").arg(key).query(&mut self.conn()).unwrap();
        text.map(|t| serde_json::from_str(&t).unwrap())
    }

    /// Stops the server (its PID), as if the machine went away.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
