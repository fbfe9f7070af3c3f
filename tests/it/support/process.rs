//! The real `portcullis` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running binary; killed when dropped.
pub struct Process {
    pub child: Child,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with the shell's `kill` builtin.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("sh").arg("-c").arg(format!("kill -{name} {}", self.id())).status().unwrap();
        assert!(ok.success());
    }
}

/// Starts the binary on `config` (extra `args` after it) and returns it with
/// its first listener's address, read from the `listening` log line.
pub fn spawn_gateway_with(config: &str, args: &[&str]) -> (Process, SocketAddr) {
    let (proc, addr, _) = spawn_gateway_admin(config, args);
    (proc, addr)
}

/// As [`spawn_gateway_with`], and the admin API's address when the config
/// has one (its `admin listening` line comes before the listeners').
pub fn spawn_gateway_admin(config: &str, args: &[&str]) -> (Process, SocketAddr, Option<SocketAddr>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config"])
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("portcullis starts");
    let stdout = child.stdout.take().unwrap();
    let proc = Process { child, config: path, _dir: dir };
    let mut lines = BufReader::new(stdout).lines();
    let mut admin = None;
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if let Some(addr) = line.split("addr=").nth(1) {
            let addr = addr.split_whitespace().next().unwrap().parse().expect("address in the listening line");
            if line.contains("admin listening") {
                admin = Some(addr);
                continue;
            }
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (proc, addr, admin);
        }
    }
    panic!("portcullis exited without listening");
}

pub fn spawn_gateway(config: &str) -> (Process, SocketAddr) {
    spawn_gateway_with(config, &[])
}
