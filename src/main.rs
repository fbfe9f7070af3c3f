//! The `portcullis` command line: run, check, schema, version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{self, LoadedConfig};
use portcullis::{DEMO_CONFIG, Gateway};

#[derive(Parser)]
#[command(name = "portcullis", about = "A secure, high-performance API gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a config (the embedded demo when --config is absent).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config, print every problem, exit non-zero if any.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the config file (for editors).
    Schema,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Run { config } => run(config),
        Command::Check { config } => check(&config),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&config::json_schema()).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("portcullis {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn load(path: Option<&Path>) -> Result<LoadedConfig, config::ConfigErrors> {
    match path {
        Some(p) => config::load_file(p),
        None => config::parse_str(DEMO_CONFIG, "<embedded demo>", Path::new(".")),
    }
}

fn check(path: &Path) -> ExitCode {
    let result = load(Some(path)).and_then(|loaded| portcullis::plan::compile(&loaded).map(|_| ()));
    match result {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
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

fn run(path: Option<PathBuf>) -> ExitCode {
    init_logging();
    let loaded = match load(path.as_deref()) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
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
    runtime.block_on(async {
        let handle = match Gateway::start(&loaded).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if path.is_none()
            && let Some((_, addr)) = handle.addrs().first()
        {
            tracing::info!("demo config: try `curl -i http://{addr}/echo/hello` or `curl -i http://{addr}/hello`");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stdout).init();
}
