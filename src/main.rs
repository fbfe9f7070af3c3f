//! The `portcullis` command line: run, check, reload, status, schema,
//! hash-key, version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portcullis::config::{self, LoadedConfig};
use portcullis::{DEMO_CONFIG, Gateway, ReloadOutcome};

/// The commands that talk to a running gateway (binary-only code).
mod cli {
    pub mod remote;
}

/// The version line: the crate's version, the commit and the cargo profile
/// it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PORTCULLIS_COMMIT"),
    ", profile ",
    env!("PORTCULLIS_PROFILE"),
    ")"
);

/// mimalloc: fewer instructions per allocation than glibc's malloc, and
/// thread-local free lists (BENCHMARKS.md, issue 13).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    about = "A secure, high-performance API gateway",
    version = VERSION,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command: serve this config, as `run --config` does (the
    /// way `nginx -c` and `envoy -c` are used).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Without a command: as `run --watch`.
    #[arg(long)]
    watch: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a config (the embedded demo when --config is absent).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Reload when the config file changes (checked every 2 s), as well as on SIGHUP.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config, print every problem, exit non-zero if any; then
    /// print its warnings (unsafe or likely mistaken settings).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Warnings are errors too (exit 1 if there is any).
        #[arg(long)]
        strict: bool,
    },
    /// Ask the running gateway (through its admin API) to reload its config
    /// file; prints the new config's hash, or every problem and exits 1.
    /// The admin address and token come from the config's `admin` block
    /// (or --admin and the PORTCULLIS_ADMIN_TOKEN environment variable).
    Reload {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The admin API's address (default: the config's `admin.bind`).
        #[arg(long)]
        admin: Option<String>,
    },
    /// Print what the running gateway's admin API says in /status.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The admin API's address (default: the config's `admin.bind`).
        #[arg(long)]
        admin: Option<String>,
        /// The JSON as the admin API gives it.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the running gateway's admin API answers /healthz (with
    /// --ready: /readyz), else 1: for container health checks and probes.
    Health {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The admin API's address (default: the config's `admin.bind`).
        #[arg(long)]
        admin: Option<String>,
        /// Ask /readyz (ready to take traffic; 503 while draining).
        #[arg(long)]
        ready: bool,
    },
    /// Print the JSON Schema of the config file (for editors).
    Schema,
    /// Print the SHA-256 of an API key, as `consumers[].api_keys[].sha256` wants it.
    /// The key is read from standard input (so it stays out of shell history).
    HashKey,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: cli.config, watch: cli.watch }) {
        Command::Run { config, watch } => run(config, watch),
        Command::Check { config, strict } => check(&config, strict),
        Command::Reload { config, admin } => cli::remote::reload(config.as_deref(), admin.as_deref()),
        Command::Status { config, admin, json } => cli::remote::status(config.as_deref(), admin.as_deref(), json),
        Command::Health { config, admin, ready } => cli::remote::health(config.as_deref(), admin.as_deref(), ready),
        Command::Schema => {
            cli::remote::say(format_args!(
                "{}\n",
                serde_json::to_string_pretty(&config::json_schema()).unwrap_or_default()
            ));
            ExitCode::SUCCESS
        }
        Command::HashKey => {
            let mut input = String::new();
            if std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).is_err() || input.trim().is_empty() {
                eprintln!("error: give the API key on standard input, e.g. `echo -n \"$KEY\" | portcullis hash-key`");
                return ExitCode::FAILURE;
            }
            // One line's end is `echo`'s, not the key's.
            let key = input.strip_suffix('\n').map_or(input.as_str(), |k| k.strip_suffix('\r').unwrap_or(k));
            // A hash no request could match is refused: the gateway trims a
            // header's value, and a line break or control byte is no key.
            if key.trim() != key || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                eprintln!(
                    "error: the key has spaces at an end, a line break, a control character or non-ASCII text: no \
                     request could send it so. Give the key alone, e.g. `echo -n \"$KEY\" | portcullis hash-key`"
                );
                return ExitCode::FAILURE;
            }
            cli::remote::say(format_args!("{}\n", portcullis::hash_key(key)));
            ExitCode::SUCCESS
        }
        Command::Version => {
            cli::remote::say(format_args!("portcullis {VERSION}\n"));
            ExitCode::SUCCESS
        }
    }
}

fn load(path: Option<&Path>) -> Result<LoadedConfig, config::ConfigErrors> {
    match path {
        Some(p) => portcullis::load_explained(p),
        None => config::parse_str(DEMO_CONFIG, "<embedded demo>", Path::new(".")),
    }
}

fn check(path: &Path, strict: bool) -> ExitCode {
    let result = portcullis::check_file(path);
    match result {
        Ok(loaded) => {
            let warnings = portcullis::warnings(&loaded);
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if warnings.is_empty() {
                cli::remote::say(format_args!("{}: ok\n", path.display()));
                ExitCode::SUCCESS
            } else if strict {
                eprintln!("{}: {} warning(s), errors with --strict", path.display(), warnings.len());
                ExitCode::FAILURE
            } else {
                cli::remote::say(format_args!("{}: ok, {} warning(s)\n", path.display(), warnings.len()));
                ExitCode::SUCCESS
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn run(path: Option<PathBuf>, watch: bool) -> ExitCode {
    if watch && path.is_none() {
        // The embedded demo has no file to watch: say so rather than
        // serve it and watch nothing.
        eprintln!("error: --watch needs --config FILE (the embedded demo has no file to watch)");
        return ExitCode::FAILURE;
    }
    let loaded = load(path.as_deref());
    match &loaded {
        Ok(l) => init_logging(l.config.log_level.as_str(), l.config.log_format),
        // A config that does not load: its problems in the default format.
        Err(_) => init_logging("info", config::LogFormat::Text),
    }
    let loaded = match loaded {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    portcullis::open_files::raise(&loaded.config);
    // PORTCULLIS_WORKER_THREADS pins the worker count (benchmarks use 1).
    // One worker runs on a current-thread runtime: no work-stealing
    // machinery and no cross-thread wake-ups, like one NGINX worker.
    let workers: Option<usize> = std::env::var("PORTCULLIS_WORKER_THREADS").ok().and_then(|v| v.parse().ok());
    let mut runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = workers.filter(|n| *n > 1) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        // Before the listeners open: a SIGHUP that arrives early must not
        // hit the default action (terminate).
        let signals = Signals::install();
        let (handle, requests) = match Gateway::start_taking_reloads(&loaded).await {
            Ok(started) => started,
            // One event per problem, as a refused reload logs them (the
            // list in one event spread over lines without a timestamp).
            Err(portcullis::StartError::Config(errors)) => {
                for e in &errors.0 {
                    tracing::error!(problem = %e, "invalid config");
                }
                tracing::error!(problems = errors.0.len(), "invalid config: not started");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                tracing::error!("{}", e.located(&loaded));
                if path.is_none()
                    && matches!(e, portcullis::StartError::Bind { .. } | portcullis::StartError::Admin { .. })
                {
                    tracing::error!(
                        "the demo listens on 127.0.0.1:8080 (admin API 127.0.0.1:9901): to use other ports, copy \
                         examples/demo.yaml, change its `bind` lines and run `portcullis -c` with the copy"
                    );
                }
                return ExitCode::FAILURE;
            }
        };
        if path.is_none()
            && let Some((_, addr)) = handle.addrs().first()
        {
            tracing::info!("demo config: try `curl -i http://{addr}/echo/hello` or `curl -i http://{addr}/hello`");
        }
        // Serving: a stdout nobody reads must not stop a worker.
        portcullis::own_log::detach();
        let mut signals = signals;
        serve_until_stopped(&handle, &mut signals, requests, path.as_deref(), watch.then_some(loaded.hash)).await;
        // A second SIGTERM or Ctrl-C stops at once (the drain's delay and
        // timeout included), as a second Ctrl-C does in Caddy or Docker.
        handle.shutdown_unless(stop_signal(&mut signals)).await;
        tracing::info!("stopped");
        portcullis::own_log::flush(std::time::Duration::from_secs(2));
        ExitCode::SUCCESS
    });
    // A reload abandoned by the stop may still be compiling on a blocking
    // thread: the process does not wait for it.
    runtime.shutdown_background();
    code
}

struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
    usr1: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
            usr1: signal(SignalKind::user_defined1()).ok(),
        }
    }
}

/// Reloads on SIGHUP (and on file changes with `--watch`, given the hash
/// of the text the gateway started from), reopens the access log on
/// SIGUSR1 (logrotate), until SIGTERM or SIGINT.
async fn serve_until_stopped(
    handle: &portcullis::Handle,
    signals: &mut Signals,
    mut requests: tokio::sync::mpsc::Receiver<portcullis::ReloadRequest>,
    path: Option<&Path>,
    watch: Option<u64>,
) {
    let (Some(term), Some(hup), Some(usr1)) = (signals.term.as_mut(), signals.hup.as_mut(), signals.usr1.as_mut())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    // `--watch` follows the file's content (a copy that keeps the old
    // modification time, `cp -p` or `rsync -a`, is a change too), and
    // reloads once a change has stayed the same for one poll: a file still
    // being written is not taken half-way.
    // (The text it started from, not the file as it is now: a change made
    // while the gateway started is a change.)
    let mut live = watch;
    let mut changed: Option<Option<u64>> = None;
    let mut poll = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            // A reload asked for reads the file as it is: `--watch` takes
            // that text as live (else it would reload it once more).
            _ = hup.recv() => {
                (live, changed) = (path.and_then(fingerprint), None);
                if unless_stopped(reload(handle, path), term).await.is_none() {
                    return;
                }
            }
            // A request whose client has gone (it stopped waiting) is not
            // run: abandoned ones ran first and kept later callers waiting.
            Some(reply) = requests.recv() => {
                if reply.is_closed() {
                    continue;
                }
                (live, changed) = (path.and_then(fingerprint), None);
                match unless_stopped(reload(handle, path), term).await {
                    Some(outcome) => drop(reply.send(outcome)),
                    None => return,
                }
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                handle.reopen_logs();
            }
            _ = poll.tick(), if watch.is_some() && path.is_some() => {
                let now = path.and_then(fingerprint);
                if now == live {
                    changed = None;
                } else if changed == Some(now) {
                    (live, changed) = (now, None);
                    if unless_stopped(reload(handle, path), term).await.is_none() {
                        return;
                    }
                } else {
                    changed = Some(now);
                }
            }
        }
    }
}

/// The next SIGTERM or SIGINT.
async fn stop_signal(signals: &mut Signals) {
    match signals.term.as_mut() {
        Some(term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => drop(tokio::signal::ctrl_c().await),
    }
}

/// `work`, unless SIGTERM or SIGINT comes first (`None`): a reload that
/// takes long (a large document is read and compiled off the runtime's
/// threads) must not hold the gateway's stop.
async fn unless_stopped<T>(
    work: impl std::future::Future<Output = T>,
    term: &mut tokio::signal::unix::Signal,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// The file's content, as a hash (the one `LoadedConfig::hash` takes;
/// `None`: it cannot be read, or is no config file: a FIFO is not waited
/// on, a huge file not read whole).
fn fingerprint(path: &Path) -> Option<u64> {
    portcullis::config::read_text(path).ok().map(|text| xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// A reload from the config file (SIGHUP, `--watch`, `POST /reload`).
async fn reload(handle: &portcullis::Handle, path: Option<&Path>) -> ReloadOutcome {
    match path {
        Some(path) => handle.reload_file(path).await,
        None => {
            tracing::info!("the embedded demo config has nothing to reload");
            ReloadOutcome::Unavailable("the gateway serves the embedded demo config: there is no file to reload".into())
        }
    }
}

/// The levels a bare word of `RUST_LOG` may name.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace", "0", "1", "2", "3", "4", "5"];

/// Targets a bare word of `RUST_LOG` may name (all of that crate's lines).
const TARGETS: &[&str] =
    &["portcullis", "hyper", "hyper_util", "h2", "rustls", "tokio", "tower", "redis", "jsonschema"];

/// The gateway's own log: `RUST_LOG` if set, else the config's `log_level`;
/// text lines or, with `log_format: json`, one JSON object a line.
fn init_logging(level: &str, format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    // A `RUST_LOG` that does not parse is said once logging is up (it fell
    // back to `log_level` in silence: the debug lines asked for never came).
    let (filter, unread) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) if !text.trim().is_empty() => {
            // A bare word is a target to `EnvFilter`: `RUST_LOG=warning`
            // (or `wrn`, or `warn ` with a space) turned on target `warning`
            // alone, every log line off. A bare word is read as a level, or
            // a target of the gateway's crates; any other is said.
            let directives: Vec<&str> = text.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
            let text = directives.join(",");
            let misspelt = directives.iter().find(|d| {
                !d.contains(['=', '[', ':'])
                    && !LEVELS.iter().any(|l| d.eq_ignore_ascii_case(l))
                    && !TARGETS.iter().any(|t| d.split("::").next() == Some(*t))
            });
            match (misspelt, EnvFilter::try_new(&text)) {
                (Some(word), _) => {
                    let why = format!("`{word}` is no level (error, warn, info, debug, trace or off)");
                    (EnvFilter::new(level), Some(why))
                }
                (None, Ok(filter)) => (filter, None),
                (None, Err(e)) => (EnvFilter::new(level), Some(e.to_string())),
            }
        }
        Err(std::env::VarError::NotUnicode(_)) => (EnvFilter::new(level), Some("not UTF-8".to_string())),
        _ => (EnvFilter::new(level), None),
    };
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(portcullis::own_log::OwnLog);
    match format {
        config::LogFormat::Json => log.json().with_current_span(false).with_span_list(false).init(),
        // No colours, even on a terminal: the writer escapes every control
        // byte (`own_log`), a client's escape sequence as any other.
        config::LogFormat::Text => log.with_ansi(false).init(),
    }
    if let Some(e) = unread {
        tracing::warn!(error = %e, "RUST_LOG cannot be read: using the config's log_level ({level}) instead");
    }
}
