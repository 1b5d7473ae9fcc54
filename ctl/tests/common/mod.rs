//! A real `skiff-control` on a free loopback port, and `skiffctl` run against it.
//!
//! The server binary is the one built next to skiffctl (`cargo build -p skiff-control`,
//! which CI does for the whole workspace before testing); `SKIFF_CONTROL_BIN` overrides it.
//! The server is killed when the handle drops, panics included.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

pub fn skiffctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiffctl")
}

fn control_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_CONTROL_BIN") {
        return PathBuf::from(p);
    }
    Path::new(skiffctl_bin())
        .parent()
        .map(|d| d.join("skiff-control"))
        .unwrap_or_else(|| PathBuf::from("skiff-control"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// What a skiffctl run printed and how it ended.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(args: Vec<String>, out: Output) -> Run {
        Run {
            args,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "skiffctl {:?} exited {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {}", self.describe());
        &self.stdout
    }

    /// Asserts failure (exit 1) and returns stderr.
    pub fn fails(&self) -> &str {
        assert_eq!(self.code, 1, "expected exit code 1: {}", self.describe());
        &self.stderr
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server started with extra `serve` flags (e.g. `--controllers=none`, so that the
    /// test alone decides what objects exist and what their status says).
    pub fn start_with(extra: &[&str]) -> Server {
        let bin = control_bin();
        assert!(
            bin.exists(),
            "the API server binary {} is missing: build it with `cargo build -p skiff-control` before running skiffctl's end-to-end tests",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = Server { child, dir, port };
        server.wait_ready();
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.kubeconfig")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("skiff-control exited early ({status}):\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                let run = self.ctl(&["get", "ns"]);
                if run.code == 0 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("skiff-control did not become ready in 60s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skiffctl_bin());
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .env_remove("KUBE_EDITOR")
            .env_remove("EDITOR");
        cmd
    }

    pub fn ctl(&self, args: &[&str]) -> Run {
        self.ctl_env(args, &[])
    }

    pub fn ctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("running skiffctl");
        Run::from(args.iter().map(|s| s.to_string()).collect(), out)
    }

    /// Runs skiffctl with `input` on stdin.
    pub fn ctl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running skiffctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing stdin");
        let out = child.wait_with_output().expect("waiting for skiffctl");
        Run::from(args.iter().map(|s| s.to_string()).collect(), out)
    }

    /// Starts skiffctl without waiting (for `get -w`).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skiffctl")
    }

    /// Writes a file in the test's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing test file");
        path.display().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- skiff-control log ---\n{}", self.log());
        }
    }
}
