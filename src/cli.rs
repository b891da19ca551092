//! The command line: every flag has an `OSV_*` environment variable, so the
//! same settings work from a shell, a systemd unit and `docker plugin set`.

use crate::driver::{Driver, DriverConfig};
use crate::protocol;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "opensandbox-volume",
    version,
    about = "Docker volume plugin that gives AI-agent sandboxes persistent storage",
    long_about = "Docker volume plugin that gives AI-agent sandboxes persistent storage.\n\n\
        It serves Docker's volume plugin protocol on a unix socket and turns OpenSandbox volume \
        descriptions (type=host, …) into ordinary Docker named volumes:\n\n  \
        docker volume create -d opensandbox -o type=host -o path=/srv/data NAME"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the volume plugin protocol (the daemon Docker talks to).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Unix socket to listen on; Docker derives the driver name from its file
    /// name (opensandbox.sock → driver `opensandbox`). A stale socket is replaced.
    #[arg(
        long,
        env = "OSV_SOCKET",
        default_value = "/run/docker/plugins/opensandbox.sock"
    )]
    pub socket: PathBuf,

    /// Directory of the durable volume registry (one JSON file per volume).
    #[arg(
        long,
        env = "OSV_STATE_DIR",
        default_value = "/var/lib/opensandbox-volume"
    )]
    pub state_dir: PathBuf,

    /// Directory under which the plugin makes the mounts it returns to Docker
    /// (default: STATE_DIR/mounts).
    #[arg(long, env = "OSV_MOUNT_ROOT")]
    pub mount_root: Option<PathBuf>,

    /// Comma-separated host path prefixes that `type=host` volumes may use,
    /// checked after resolving symlinks. Empty: host volumes are refused.
    #[arg(
        long,
        env = "OSV_ALLOWED_HOST_PATHS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_host_paths: Vec<String>,

    /// Log filter: error, warn, info, debug or trace (or a tracing filter
    /// such as `opensandbox_volume=debug`). Logs go to stderr.
    #[arg(long, env = "OSV_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ServeArgs {
    /// Checks the settings and turns them into the driver's configuration.
    pub fn driver_config(&self) -> anyhow::Result<DriverConfig> {
        let mut allowed = Vec::new();
        for raw in self.allowed_host_paths.iter().map(|s| s.trim()) {
            if raw.is_empty() {
                continue;
            }
            if !crate::spec::is_normalised_absolute(raw) {
                anyhow::bail!(
                    "--allowed-host-paths entry {raw:?} must be an absolute, normalised path such as /srv/sandboxes"
                );
            }
            allowed.push(PathBuf::from(raw));
        }
        Ok(DriverConfig {
            state_dir: self.state_dir.clone(),
            mount_root: self
                .mount_root
                .clone()
                .unwrap_or_else(|| self.state_dir.join("mounts")),
            allowed_host_paths: allowed,
        })
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        anyhow::anyhow!("--log-level {filter:?} is not a log filter ({e}); use error, warn, info, debug or trace")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs usually end up in files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

/// Loads the registry, then listens: the first call Docker makes after a
/// restart already sees every volume.
pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level)?;
    let config = args.driver_config()?;
    tracing::info!(socket = %args.socket.display(), state_dir = %config.state_dir.display(),
        mount_root = %config.mount_root.display(), allowed_host_paths = ?config.allowed_host_paths,
        "starting");
    let driver = Arc::new(Driver::open(config)?);
    let listener = protocol::server::bind_socket(&args.socket).await?;
    tracing::info!(socket = %args.socket.display(), "listening");
    protocol::server::serve(
        listener,
        &args.socket,
        protocol::router(driver),
        shutdown_signal(),
    )
    .await?;
    // Mounts are left in place on purpose: containers may still use them,
    // and the next start adopts them from the registry.
    tracing::info!("stopped; mounts stay in place for running containers");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
