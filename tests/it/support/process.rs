//! The real `portcullis` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running binary; killed when dropped.
pub struct Process {
    pub child: Child,
    pub config: PathBuf,
    /// Its standard output's lines so far (the log).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Its standard output, held open and never read (`spawn_gateway_unread`).
    _unread: Option<std::io::Lines<BufReader<std::process::ChildStdout>>>,
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
    spawn(config, args, true)
}

/// As [`spawn_gateway_admin`], but nothing reads the gateway's standard
/// output once it listens: a pipe that fills up and stays full.
pub fn spawn_gateway_unread(config: &str) -> (Process, SocketAddr, Option<SocketAddr>) {
    spawn(config, &[], false)
}

/// As [`spawn_gateway`], started by `sh` after the shell commands `prelude`
/// (e.g. `ulimit -Sn 256`); the shell `exec`s the binary, so the process
/// keeps its id.
pub fn spawn_gateway_after(prelude: &str, config: &str) -> (Process, SocketAddr) {
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!("{prelude}; exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_portcullis"));
    let (proc, addr, _) = spawn_by(shell, config, &[], true);
    (proc, addr)
}

fn spawn(config: &str, args: &[&str], drain: bool) -> (Process, SocketAddr, Option<SocketAddr>) {
    spawn_by(Command::new(env!("CARGO_BIN_EXE_portcullis")), config, args, drain)
}

fn spawn_by(
    mut command: Command,
    config: &str,
    args: &[&str],
    drain: bool,
) -> (Process, SocketAddr, Option<SocketAddr>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = command
        .args(["run", "--config"])
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("portcullis starts");
    let stdout = child.stdout.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut proc = Process { child, config: path, log: log.clone(), _unread: None, _dir: dir };
    let mut lines = BufReader::new(stdout).lines();
    let mut admin = None;
    while let Some(line) = lines.next() {
        let line = line.expect("log line");
        log.lock().unwrap().push(line.clone());
        // Text lines (`… listening listener=gw addr=…`), or JSON ones.
        let json = serde_json::from_str::<serde_json::Value>(&line).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j["fields"][name].as_str().map(str::to_string));
        let found = match &json {
            Some(_) => field("addr"),
            None => line.split("addr=").nth(1).and_then(|a| a.split_whitespace().next()).map(str::to_string),
        };
        if let Some(addr) = found {
            let addr = addr.parse().expect("address in the listening line");
            if line.contains("admin listening") {
                admin = Some(addr);
                continue;
            }
            if !drain {
                proc._unread = Some(lines);
                return (proc, addr, admin);
            }
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
            return (proc, addr, admin);
        }
    }
    panic!("portcullis exited without listening");
}

pub fn spawn_gateway(config: &str) -> (Process, SocketAddr) {
    spawn_gateway_with(config, &[])
}
