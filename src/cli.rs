//! The command line: every flag has an `OSV_*` environment variable, so the
//! same settings work from a shell, a systemd unit and `docker plugin set`.

use crate::driver::{Driver, DriverConfig};
use crate::protocol;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    /// Mount a bucket (or a prefix of it) with objectfs, in the foreground
    /// until unmounted or signalled; then every write is uploaded.
    Mount(MountArgs),
    /// The managed plugin's entrypoint (PID 1 of its container): runs
    /// `serve` with the same environment and restarts it when it dies, so
    /// the mounts live on; on SIGTERM every process gets 9 s to finish.
    Supervise,
    /// Show every volume of this host: its mount, what waits for the
    /// bucket, the store's errors and the keys' expiry; a health check.
    ///
    /// Reads the state directory (the registry and each mount process's
    /// status file) without the daemon, changing nothing. Exit status 0
    /// when every volume is healthy; 1 when a mount failed, a store fails
    /// a mount's uploads or data has waited longer than --max-pending-age;
    /// 2 when the state directory cannot be read.
    Status(StatusArgs),
    /// Print what to pass to Docker for OpenSandbox API volumes.
    ///
    /// Reads Lifecycle API volume entries and prints `docker run --mount`
    /// arguments or Engine API `HostConfig.Mounts` JSON; exit status 2 and
    /// every problem on stderr when an entry breaks the API's rules; a
    /// `warning:` line on stderr for each field or ossfs option that is
    /// accepted but has no effect on Docker.
    Translate(crate::translate::TranslateArgs),
}

/// The flags `--config-stdin` replaces: every setting of a mount but the
/// mount point and the logging flags (`LogArgs`).
const SETTING_FLAGS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "prefix",
    "access_key_id",
    "access_key_secret",
    "session_token",
    "path_style",
    "read_only",
    "uid",
    "gid",
    "umask",
    "upload",
    "cache_dir",
    "allow_other",
    "metadata_ttl",
    "cache_size",
    "upload_delay",
    "attrs_from_listing",
    "flush_timeout",
];

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Directory to mount on.
    pub mountpoint: PathBuf,

    /// Read every setting but the logging flags from standard input instead
    /// of the flags below: one JSON mount configuration (objectfs's
    /// `MountConfig`: store with keys, filesystem options, mount settings)
    /// whose mount point must be MOUNTPOINT. This is how the plugin starts a
    /// volume's mount process, so keys are in neither its arguments nor its
    /// environment.
    #[arg(long, env = "OSV_CONFIG_STDIN", conflicts_with_all = SETTING_FLAGS)]
    pub config_stdin: bool,

    /// Bucket name.
    #[arg(long, env = "OSV_BUCKET", required_unless_present = "config_stdin")]
    pub bucket: Option<String>,

    /// Endpoint: `http://127.0.0.1:9000`, `oss-cn-hangzhou.aliyuncs.com`
    /// (Alibaba OSS, mapped to its S3-compatible host), or any S3 URL;
    /// https when no scheme is given; AWS when absent.
    #[arg(long, env = "OSV_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Region (default: from an OSS endpoint, else us-east-1).
    #[arg(long, env = "OSV_REGION")]
    pub region: Option<String>,

    /// Key prefix to mount instead of the whole bucket; nothing outside it
    /// is ever listed, read, written or deleted.
    #[arg(long, env = "OSV_PREFIX", default_value = "")]
    pub prefix: String,

    /// Access key id (prefer the variable: arguments are visible in ps).
    #[arg(long, env = "OSV_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,

    /// Access key secret (prefer the variable: arguments are visible in ps).
    #[arg(long, env = "OSV_ACCESS_KEY_SECRET", hide_env_values = true)]
    pub access_key_secret: Option<String>,

    /// Session token for temporary credentials.
    #[arg(long, env = "OSV_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,

    /// Force path-style (true) or virtual-hosted (false) addressing;
    /// default: path style for IP and localhost endpoints only.
    #[arg(long, env = "OSV_PATH_STYLE")]
    pub path_style: Option<bool>,

    /// Refuse every change with EROFS.
    #[arg(long, env = "OSV_READ_ONLY")]
    pub read_only: bool,

    /// Owner of objects that carry no uid metadata (default: caller's uid).
    #[arg(long, env = "OSV_UID")]
    pub uid: Option<u32>,

    /// Group of objects that carry no gid metadata (default: caller's gid).
    #[arg(long, env = "OSV_GID")]
    pub gid: Option<u32>,

    /// Octal umask for objects without mode metadata (files 0666, dirs 0777).
    #[arg(long, env = "OSV_UMASK", default_value = "022", value_parser = parse_octal)]
    pub umask: u32,

    /// `async`: close returns at once and uploads run in the background;
    /// `sync`: close waits until the data is in the bucket. Unmount always
    /// waits for every upload.
    #[arg(long, env = "OSV_UPLOAD", default_value = "async")]
    pub upload: objectfs::UploadMode,

    /// Staging files, cached copies of objects and the crash journals (file
    /// data, namespace changes); reuse the same directory to recover the
    /// writes of a mount that died and to keep its cache (default: derived
    /// from the bucket and prefix under /var/cache/opensandbox-volume).
    #[arg(long, env = "OSV_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Let other users (e.g. a container's non-root user) use the mount.
    #[arg(long, env = "OSV_ALLOW_OTHER")]
    pub allow_other: bool,

    /// Seconds attributes, negative lookups and directory listings are cached
    /// (fractions allowed).
    #[arg(long, env = "OSV_METADATA_TTL", default_value = "1")]
    pub metadata_ttl: f64,

    /// Bound of the file data kept in the cache directory, e.g. 512MiB,
    /// 2GiB, 100MB or bytes (at least 64MiB). Copies already in the bucket
    /// are evicted least recently used first; data not yet uploaded never
    /// is: a write that would pass the bound waits for uploads (up to
    /// 30 s), then fails with ENOSPC.
    #[arg(long, env = "OSV_CACHE_SIZE", default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: u64,

    /// With --upload async: how long a closed file waits before its upload
    /// starts, and a namespace change (mkdir, symlink, chmod, unlink, rmdir,
    /// directory rename) before it is sent (e.g. 500ms, 0 for at once). A
    /// file replaced, renamed or deleted meanwhile is uploaded once at its
    /// final name, or not at all, and changes that cancel out are never
    /// sent; unmount and fsync do not wait for the delay.
    #[arg(long, env = "OSV_UPLOAD_DELAY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub upload_delay: std::time::Duration,

    /// Faster listings, less exact attributes: files seen through a
    /// directory listing get size and mtime from the listing and the mount's
    /// default owner and mode (--uid, --gid, --umask), without the HEAD per
    /// file that reads their stored mode, owner and mtime. Objects up to
    /// 1 KiB are still HEADed (they may be symlinks).
    #[arg(long, env = "OSV_ATTRS_FROM_LISTING")]
    pub attrs_from_listing: bool,

    /// Seconds unmount waits for uploads before giving up; what is left
    /// stays journalled and is uploaded at the next mount.
    #[arg(long, env = "OSV_FLUSH_TIMEOUT", default_value = "600")]
    pub flush_timeout: u64,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Where and how a process logs: the same flags for `serve` and `mount`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter: error, warn, info, debug or trace (or a tracing filter
    /// such as `opensandbox_volume=debug`). With `serve`, the daemon's own:
    /// the mount processes it starts log at info.
    #[arg(long, env = "OSV_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Write the log to this file instead of stderr (empty: stderr),
    /// rotated by size: when the next line would take it past
    /// --log-max-size, FILE becomes FILE.1, FILE.1 becomes FILE.2 and so on,
    /// and the oldest beyond --log-max-files is deleted. `serve` leaves each
    /// object volume's mount process its own log, STATE_DIR/logs/VOLUME.log,
    /// rotated the same way.
    #[arg(long, env = "OSV_LOG_FILE", value_name = "FILE", default_value = "", hide_default_value = true, value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
    pub log_file: Option<PathBuf>,

    /// Size a log file is rotated at, e.g. 10MiB, 512KiB or bytes (at
    /// least 4KiB); for --log-file and, with `serve`, every volume's log.
    #[arg(long, env = "OSV_LOG_MAX_SIZE", default_value = crate::logging::DEFAULT_MAX_SIZE, value_name = "SIZE", value_parser = parse_log_size)]
    pub log_max_size: u64,

    /// Files a log keeps, the current one included (1 to 1000); the
    /// oldest goes at each rotation.
    #[arg(long, env = "OSV_LOG_MAX_FILES", default_value = crate::logging::DEFAULT_MAX_FILES, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub log_max_files: u32,

    /// `text` (one line per event) or `json` (one JSON object per line,
    /// for log collectors); for stderr, --log-file and, with `serve`,
    /// every volume's log.
    #[arg(
        long,
        env = "OSV_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT",
        value_enum
    )]
    pub log_format: crate::logging::LogFormat,
}

impl LogArgs {
    /// The settings these flags give; an empty file name means stderr.
    pub fn settings(&self) -> crate::logging::LogSettings {
        crate::logging::LogSettings {
            level: self.log_level.clone(),
            file: self.log_file.clone().filter(|f| !f.as_os_str().is_empty()),
            output: crate::logging::LogOutput {
                bounds: crate::logging::rotation::Bounds {
                    max_size: self.log_max_size,
                    max_files: self.log_max_files,
                },
                format: self.log_format,
            },
        }
    }
}

/// A log size flag's value.
fn parse_log_size(s: &str) -> Result<u64, String> {
    crate::spec::parse_size(s)
        .filter(|n| *n >= crate::logging::MIN_MAX_SIZE)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a log size; give at least 4KiB: a number of bytes, or a whole number with KiB, MiB or GiB (powers of 1024) or KB, MB or GB (powers of 1000), e.g. 10MiB"
            )
        })
}

/// A cache size flag's value; the refusal is the `cacheSize` option's.
fn parse_size(s: &str) -> Result<u64, String> {
    crate::spec::parse_cache_size(s).ok_or_else(|| {
        format!(
            "{s:?} is not a cache size; give {}, e.g. 2GiB",
            crate::spec::cache_size_words!()
        )
    })
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 022"))
}

impl MountArgs {
    /// The mount these flags describe (the prefix normalised here, once).
    pub fn mount_config(&self) -> anyhow::Result<objectfs::MountConfig> {
        use objectfs::config::{MountConfig, MountSettings};
        use objectfs::store::s3::S3Config;
        use objectfs::{FsOptions, layout};
        let bucket = self
            .bucket
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--bucket is required"))?;
        let prefix =
            layout::normalise_prefix(&self.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
        if !(self.metadata_ttl.is_finite() && self.metadata_ttl >= 0.0) {
            anyhow::bail!("--metadata-ttl must be a number of seconds ≥ 0");
        }
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| {
            let id = format!(
                "{}/{}/{}",
                self.endpoint.as_deref().unwrap_or("aws"),
                bucket,
                prefix
            );
            PathBuf::from("/var/cache/opensandbox-volume").join(crate::names::file_stem(&id))
        });
        Ok(MountConfig {
            fs: FsOptions {
                prefix,
                defaults: layout::Defaults::or_this_process(self.uid, self.gid, self.umask),
                read_only: self.read_only,
                upload: self.upload,
                cache_dir,
                metadata_ttl: std::time::Duration::from_secs_f64(self.metadata_ttl),
                flush_timeout: std::time::Duration::from_secs(self.flush_timeout),
                upload_delay: self.upload_delay,
                attrs_from_listing: self.attrs_from_listing,
                cache_size: self.cache_size,
                dirty_wait: objectfs::config::DIRTY_WAIT,
                label: format!("bucket {bucket}"),
            },
            mount: MountSettings::new(self.mountpoint.clone(), &bucket, self.allow_other),
            store: S3Config {
                bucket,
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                access_key_id: self.access_key_id.clone(),
                access_key_secret: self.access_key_secret.clone(),
                session_token: self.session_token.clone(),
                path_style: self.path_style,
                // Decided from the endpoint (OSS for `*.aliyuncs.com`).
                kind: None,
                credential_source: None,
            },
        })
    }
}

/// The configuration the plugin wrote to standard input, for `mountpoint`.
fn config_from_stdin(mountpoint: &std::path::Path) -> anyhow::Result<objectfs::MountConfig> {
    let config = objectfs::MountConfig::read_from(std::io::stdin().lock())?;
    if config.mount.mountpoint != mountpoint {
        anyhow::bail!(
            "the mount configuration on standard input is for {}, not {}",
            config.mount.mountpoint.display(),
            mountpoint.display()
        );
    }
    Ok(config)
}

/// Mounts a bucket and runs until unmounted or signalled.
pub async fn run_mount(args: MountArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log.settings())?;
    let config = if args.config_stdin {
        config_from_stdin(&args.mountpoint)?
    } else {
        args.mount_config()?
    };
    // Start-up touches most of the binary's code once; an idle mount needs
    // little of it (see residency).
    tokio::spawn(crate::residency::release_periodically());
    let pending = objectfs::mount::run(config).await?;
    if pending > 0 {
        anyhow::bail!(
            "{pending} file(s) were not uploaded before the flush timeout; they stay in the cache directory and are uploaded by the next mount of it"
        );
    }
    Ok(())
}

/// Where the legacy daemon keeps its state (`serve --state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/opensandbox-volume";
/// Where the managed plugin keeps its state on the host: the source of its
/// `state` mount in config.json (a test checks they agree).
pub const PLUGIN_STATE_DIR: &str = "/var/lib/opensandbox-volume-plugin";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// The daemon's state directory: the managed plugin's is
    /// /var/lib/opensandbox-volume-plugin on the host (its `state.source`).
    /// Default: /var/lib/opensandbox-volume if it holds a registry, else
    /// the managed plugin's.
    #[arg(long, env = "OSV_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Seconds data may wait for the bucket before it counts as a problem.
    #[arg(long, value_name = "SECONDS", default_value = "600")]
    pub max_pending_age: u64,
}

impl StatusArgs {
    /// The state directory to read: the one given, else the first default
    /// that holds a registry.
    pub fn state_dir(&self) -> Result<PathBuf, String> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        [DEFAULT_STATE_DIR, PLUGIN_STATE_DIR]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("volumes").is_dir())
            .ok_or_else(|| {
                format!(
                    "no volume registry in {DEFAULT_STATE_DIR} (the legacy daemon's) nor in {PLUGIN_STATE_DIR} (the managed plugin's); give the daemon's --state-dir"
                )
            })
    }
}

/// `status`: prints the report of the state directory and returns the
/// exit status (see [`Command::Status`]).
pub fn run_status(args: StatusArgs) -> i32 {
    use crate::status;
    let report = args
        .state_dir()
        .and_then(|dir| crate::report::collect(&dir).map_err(|e| e.to_string()));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opensandbox-volume status: {e}");
            return status::EXIT_UNREADABLE;
        }
    };
    let max = std::time::Duration::from_secs(args.max_pending_age);
    let problems = status::problems(&report, max);
    if args.json {
        println!("{:#}", status::json(&report, &problems, max));
    } else {
        print!("{}", status::table(&report, &problems));
    }
    status::exit_status(&problems)
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
    #[arg(long, env = "OSV_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
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

    /// Where this process sees the host's `/`. Host paths (volume options,
    /// --allowed-host-paths) are resolved below it, symlinks included, as
    /// if it were `/`; the managed plugin sets /host, its `hostfs` mount.
    #[arg(long, env = "OSV_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,

    /// The host directory that --host-root shows: `/` (the whole host), or
    /// the directory the managed plugin's `hostfs` mount was narrowed to
    /// (`docker plugin set PLUGIN hostfs.source=DIR OSV_HOST_ROOT_PATH=DIR`).
    /// Host paths outside it are refused; below a narrowed one, symlinks
    /// must be relative and stay inside.
    #[arg(long, env = "OSV_HOST_ROOT_PATH", default_value = "/")]
    pub host_root_path: PathBuf,

    /// The Docker Engine API socket, where `pvc` volumes look up their
    /// claim (a named volume) at Mount, create it when missing
    /// (`createIfNotExists`) and remove one they created
    /// (`deleteOnSandboxTermination`).
    #[arg(
        long,
        env = "OSV_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: PathBuf,

    /// Upload mode of s3/ossfs volumes that set no `upload` option: async
    /// (close returns at once) or sync (close waits for the bucket).
    #[arg(long, env = "OSV_DEFAULT_UPLOAD", default_value = "async")]
    pub default_upload: objectfs::UploadMode,

    /// Cache bound of s3/ossfs volumes that set no `cacheSize` option: the
    /// file data each mount keeps in its cache directory, e.g. 512MiB,
    /// 2GiB, 100MB or bytes (at least 64MiB).
    #[arg(long, env = "OSV_DEFAULT_CACHE_SIZE", default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub default_cache_size: u64,

    /// Directory of credential profiles for object-storage volumes: a
    /// volume with `credentials=NAME` uses the keys in NAME.json there
    /// (mode 0600), so secrets need not pass through Docker.
    #[arg(
        long,
        env = "OSV_CREDENTIALS_DIR",
        default_value = "/etc/opensandbox-volume/credentials"
    )]
    pub credentials_dir: PathBuf,

    #[command(flatten)]
    pub log: LogArgs,
    /// Serve Prometheus metrics of every volume at http://ADDR/metrics,
    /// e.g. 127.0.0.1:9464 (docs/METRICS.md lists the series). Empty: off.
    #[arg(long, env = "OSV_METRICS_ADDR", value_name = "ADDR", default_value = "", hide_default_value = true, value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
}

/// `--metrics-addr`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<std::net::SocketAddr>);

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    if s.trim().is_empty() {
        return Ok(MetricsAddr(None));
    }
    s.trim().parse().map(|a| MetricsAddr(Some(a))).map_err(|_| {
        format!("{s:?} is not an address and port such as 127.0.0.1:9464 (empty: no metrics)")
    })
}

impl ServeArgs {
    /// --host-root-path, checked: absolute and normalised, and every
    /// allowed host path under it.
    fn checked_host_root_path(&self) -> anyhow::Result<PathBuf> {
        let raw = self.host_root_path.to_string_lossy();
        if raw != "/" && !crate::spec::is_normalised_absolute(&raw) {
            anyhow::bail!(
                "--host-root-path {raw:?} must be an absolute, normalised path such as /srv/sandboxes (the host directory that --host-root shows)"
            );
        }
        for allowed in self.allowed_host_paths.iter().map(|s| s.trim()) {
            if !allowed.is_empty() && !Path::new(allowed).starts_with(&self.host_root_path) {
                anyhow::bail!(
                    "--allowed-host-paths entry {allowed:?} is outside --host-root-path {raw:?}, the part of the host this plugin sees; allow directories under it, or widen hostfs and --host-root-path"
                );
            }
        }
        Ok(self.host_root_path.clone())
    }

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
            // Canonical, since resolved paths are compared against it.
            host_root: std::fs::canonicalize(&self.host_root).map_err(|e| {
                anyhow::anyhow!(
                    "--host-root {:?} cannot be used ({e}); give the directory where the host's / is mounted, or / itself",
                    self.host_root
                )
            })?,
            host_root_path: self.checked_host_root_path()?,
            default_upload: self.default_upload,
            default_cache_size: self.default_cache_size,
            docker_socket: self.docker_socket.clone(),
            credentials_dir: self.credentials_dir.clone(),
            // Object-storage volumes are served by this binary's `mount`.
            mount_exe: std::env::current_exe()?,
            mount_log: self.log.settings().output,
        })
    }
}

/// Loads the registry, then listens: the first call Docker makes after a
/// restart already sees every volume.
pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log.settings())?;
    let config = args.driver_config()?;
    tracing::info!(socket = %args.socket.display(), state_dir = %config.state_dir.display(),
        mount_root = %config.mount_root.display(), allowed_host_paths = ?config.allowed_host_paths,
        host_root = %config.host_root.display(), "starting");
    // Listen first: Docker gives a managed plugin ~9 s to answer before it
    // disables it, and checking the existing mounts may take a while.
    // Calls made meanwhile wait in the socket's backlog and are answered
    // once the registry is loaded, so none sees a volume missing.
    // Handlers first: a SIGTERM that arrives while the registry loads is
    // then a clean stop, not the default action (death, socket left behind).
    let stop = shutdown_signal()?;
    let metrics = match args.metrics_addr.0 {
        Some(addr) => Some(protocol::metrics::bind(addr).await?),
        None => None,
    };
    let listener = protocol::server::bind_socket(&args.socket).await?;
    tracing::info!(socket = %args.socket.display(), "listening");
    let state_dir = config.state_dir.clone();
    let driver = Arc::new(tokio::task::spawn_blocking(move || Driver::open(config)).await??);
    tracing::info!("volumes loaded");
    if let Some(metrics) = metrics {
        tracing::info!(addr = ?metrics.local_addr().ok(), "serving metrics at /metrics");
        tokio::spawn(protocol::metrics::serve(metrics, driver.clone(), state_dir));
    }
    protocol::server::serve(listener, &args.socket, protocol::router(driver), stop).await?;
    // Mounts are left in place on purpose: containers may still use them,
    // and the next start adopts them from the registry.
    tracing::info!("stopped; mounts stay in place for running containers");
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now; the future completes at the
/// first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use objectfs::config;
    use std::time::Duration;

    fn mount_args(args: &[&str]) -> Result<MountArgs, clap::Error> {
        let cli = Cli::try_parse_from(["opensandbox-volume", "mount"].iter().chain(args).copied())?;
        match cli.command {
            Command::Mount(m) => Ok(m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_build_the_mount_config_with_the_shared_defaults() {
        let args = mount_args(&["/m", "--bucket", "b", "--prefix", "/a/b/"]).unwrap();
        let c = args.mount_config().unwrap();
        assert_eq!(c.fs.prefix, "a/b/");
        assert_eq!(c.fs.defaults.umask, config::DEFAULT_UMASK);
        assert_eq!(c.fs.metadata_ttl, config::DEFAULT_METADATA_TTL);
        assert_eq!(c.fs.flush_timeout, config::DEFAULT_FLUSH_TIMEOUT);
        assert_eq!(c.fs.upload_delay, config::DEFAULT_UPLOAD_DELAY);
        assert_eq!(c.fs.upload, objectfs::UploadMode::Async);
        assert_eq!(c.fs.cache_size, config::DEFAULT_CACHE_SIZE);
        assert_eq!(c.mount.threads, config::FUSE_THREADS);
        assert_eq!(c.mount.fs_name, "osv:b");
        assert!(!c.mount.allow_other);

        let args = mount_args(&[
            "/m",
            "--bucket",
            "b",
            "--umask",
            "027",
            "--metadata-ttl",
            "2.5",
            "--upload-delay",
            "250ms",
            "--cache-size",
            "512MiB",
            "--allow-other",
            "--read-only",
        ])
        .unwrap();
        let c = args.mount_config().unwrap();
        assert_eq!(c.fs.defaults.umask, 0o027);
        assert_eq!(c.fs.metadata_ttl, Duration::from_millis(2500));
        assert_eq!(c.fs.upload_delay, Duration::from_millis(250));
        assert_eq!(c.fs.cache_size, 512 << 20);
        assert!(c.mount.allow_other && c.fs.read_only);

        let args = mount_args(&["/m", "--bucket", "b", "--prefix", "a/../b"]).unwrap();
        assert!(
            args.mount_config()
                .unwrap_err()
                .to_string()
                .starts_with("--prefix: ")
        );
        let args = mount_args(&["/m", "--bucket", "b", "--metadata-ttl=-1"]).unwrap();
        assert_eq!(
            args.mount_config().unwrap_err().to_string(),
            "--metadata-ttl must be a number of seconds ≥ 0"
        );
    }

    #[test]
    fn cache_size_flags_take_the_options_sizes_and_refuse_alike() {
        let c = mount_args(&["/m", "--bucket", "b", "--cache-size=100MB"])
            .unwrap()
            .mount_config()
            .unwrap();
        assert_eq!(c.fs.cache_size, 100_000_000);
        let serve = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["opensandbox-volume", "serve"].iter().chain(args).copied())?;
            match cli.command {
                Command::Serve(s) => Ok(s),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            serve(&[]).unwrap().default_cache_size,
            config::DEFAULT_CACHE_SIZE
        );
        let s = serve(&["--default-cache-size", "2GiB"]).unwrap();
        assert_eq!(s.driver_config().unwrap().default_cache_size, 2 << 30);
        let words = "is not a cache size; give a size of at least 64MiB: a number of bytes, or a \
                     whole number with KiB, MiB, GiB or TiB (powers of 1024) or KB, MB, GB or TB \
                     (powers of 1000), e.g. 2GiB";
        for (flag, e) in [
            (
                "--cache-size",
                mount_args(&["/m", "--bucket", "b", "--cache-size", "10MiB"]).unwrap_err(),
            ),
            (
                "--default-cache-size",
                serve(&["--default-cache-size", "10MiB"]).unwrap_err(),
            ),
        ] {
            let text = e.to_string();
            assert!(
                text.contains(&format!("'{flag} <SIZE>'")) && text.contains(words),
                "{text}"
            );
        }
        // The help tells how long a writer waits, as objectfs does.
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("mount")
            .unwrap()
            .render_long_help()
            .to_string();
        let wait = format!("(up to {} s)", config::DIRTY_WAIT.as_secs());
        assert!(
            help.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&wait),
            "{help}"
        );
    }

    /// Every `OSV_*` value config.json gives the managed plugin is one its
    /// `serve` accepts (a bad default would keep the plugin from starting).
    #[test]
    fn config_json_env_values_are_accepted_by_serve() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.json");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        let mut args = vec!["opensandbox-volume".to_string(), "serve".to_string()];
        for env in config["env"].as_array().unwrap() {
            let name = env["name"].as_str().unwrap();
            let value = env["value"].as_str().unwrap();
            let arg = serve
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name))
                .unwrap_or_else(|| panic!("{name} is no flag of serve"));
            args.push(format!("--{}={value}", arg.get_long().unwrap()));
        }
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.default_cache_size, config::DEFAULT_CACHE_SIZE);
        assert_eq!(s.default_upload, objectfs::UploadMode::Async);
    }

    /// `status` looks for the managed plugin's registry where config.json
    /// puts its state on the host.
    #[test]
    fn the_plugins_state_dir_is_config_jsons() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.json");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let state = config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "state")
            .unwrap();
        assert_eq!(state["source"], PLUGIN_STATE_DIR);
        let given = StatusArgs {
            json: false,
            state_dir: Some("/x".into()),
            max_pending_age: 1,
        };
        assert_eq!(given.state_dir().unwrap(), PathBuf::from("/x"));
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let serve = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["opensandbox-volume", "serve"].iter().chain(args).copied())?;
            match cli.command {
                Command::Serve(s) => Ok::<_, clap::Error>(s.metrics_addr),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(serve(&[]).unwrap(), MetricsAddr(None));
        assert_eq!(serve(&["--metrics-addr="]).unwrap(), MetricsAddr(None));
        assert_eq!(
            serve(&["--metrics-addr", "127.0.0.1:9464"]).unwrap(),
            MetricsAddr(Some(([127, 0, 0, 1], 9464).into()))
        );
        let e = serve(&["--metrics-addr", "localhost"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not an address and port such as 127.0.0.1:9464"),
            "{e}"
        );
    }

    #[test]
    fn config_stdin_replaces_every_setting_flag() {
        let args = mount_args(&["/m", "--config-stdin"]).unwrap();
        assert!(args.config_stdin && args.bucket.is_none());
        assert!(mount_args(&["/m", "--config-stdin", "--log-level", "debug"]).is_ok());
        assert!(mount_args(&["/m", "--config-stdin", "--bucket", "b"]).is_err());
        assert!(mount_args(&["/m", "--config-stdin", "--upload", "sync"]).is_err());
        assert!(
            mount_args(&["/m"]).is_err(),
            "--bucket is required without it"
        );
        // Every flag but the mount point, --config-stdin and the logging
        // flags is a setting the configuration carries.
        let cmd = Cli::command();
        let mount = cmd.find_subcommand("mount").unwrap();
        let logging: Vec<String> = LogArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(logging.len() >= 5, "{logging:?}");
        let mut flags: Vec<&str> = mount
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| !["mountpoint", "config_stdin", "help"].contains(id))
            .filter(|id| !logging.iter().any(|l| l == id))
            .collect();
        flags.sort_unstable();
        let mut listed = SETTING_FLAGS.to_vec();
        listed.sort_unstable();
        assert_eq!(flags, listed);
    }

    /// What the daemon hands a mount process is what that process's
    /// flags read back, so each setting is spelt once on both sides.
    #[test]
    fn log_settings_reach_a_mount_process_through_its_arguments() {
        use crate::logging::{LogFormat, LogOutput, rotation::Bounds};
        let output = LogOutput {
            bounds: Bounds {
                max_size: 5 << 20,
                max_files: 7,
            },
            format: LogFormat::Json,
        };
        let mut args: Vec<std::ffi::OsString> = vec!["/m".into(), "--config-stdin".into()];
        args.extend(output.mount_args(std::path::Path::new("/s/logs/v.log")));
        let strs: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let refs: Vec<&str> = strs.iter().map(String::as_str).collect();
        let m = mount_args(&refs).unwrap();
        let settings = m.log.settings();
        assert_eq!(settings.output, output);
        assert_eq!(
            settings.file.as_deref(),
            Some(std::path::Path::new("/s/logs/v.log"))
        );
        assert_eq!(settings.level, "info");
    }

    #[test]
    fn log_flags_have_defaults_and_refuse_bad_values() {
        use crate::logging::LogFormat;
        let m = mount_args(&["/m", "--bucket", "b"]).unwrap();
        let s = m.log.settings();
        assert_eq!(s.file, None, "stderr by default");
        assert_eq!(s.output.bounds.max_size, 10 << 20);
        assert_eq!(s.output.bounds.max_files, 3);
        assert_eq!(s.output.format, LogFormat::Text);
        // An empty file (as config.json gives it) is stderr too.
        let m = mount_args(&["/m", "--bucket", "b", "--log-file="]).unwrap();
        assert_eq!(m.log.settings().file, None);
        let m = mount_args(&[
            "/m",
            "--bucket",
            "b",
            "--log-max-size=4KiB",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(m.log.settings().output.bounds.max_size, 4096);
        assert_eq!(m.log.settings().output.format, LogFormat::Json);
        for bad in [
            "--log-max-size=4095",
            "--log-max-size=1.5MiB",
            "--log-max-files=0",
            "--log-max-files=1001",
            "--log-format=xml",
        ] {
            let e = mount_args(&["/m", "--bucket", "b", bad]).unwrap_err();
            use clap::error::ErrorKind::{InvalidValue, ValueValidation};
            assert!(
                matches!(e.kind(), ValueValidation | InvalidValue),
                "{bad}: {e}"
            );
        }
        let e = mount_args(&["/m", "--bucket", "b", "--log-max-size=1k"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("is not a log size; give at least 4KiB"),
            "{e}"
        );
    }
}
