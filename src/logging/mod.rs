//! Where and how a process of this binary logs: the level filter (with the
//! AWS SDK's targets capped), text or JSON lines, on stderr or in a log
//! file rotated by size (`file`, by the rule in `rotation`); and the
//! arguments that hand the same file settings to a mount process.

pub mod file;
pub mod rotation;

use rotation::Bounds;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Default bound of one log file: 10 MiB.
pub const DEFAULT_MAX_SIZE: &str = "10MiB";
/// Default number of files a log keeps, the current one included.
pub const DEFAULT_MAX_FILES: &str = "3";
/// Smallest bound of one log file: below it a rotation would come every
/// few lines.
pub const MIN_MAX_SIZE: u64 = 4 << 10;

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, the
    /// message and fields).
    Json,
}

impl LogFormat {
    /// The spelling of `--log-format`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// How log files are written: what the daemon applies to its own file and
/// hands to each mount process for its volume's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOutput {
    pub bounds: Bounds,
    pub format: LogFormat,
}

impl LogOutput {
    /// The `mount` arguments that make a mount process write its log to
    /// `file` with these settings (the flags of `cli::LogArgs`; a unit
    /// test there parses them back).
    pub fn mount_args(&self, file: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--log-file".into(), file.into()];
        args.extend(
            [
                "--log-max-size".to_string(),
                self.bounds.max_size.to_string(),
                "--log-max-files".to_string(),
                self.bounds.max_files.to_string(),
                "--log-format".to_string(),
                self.format.as_str().to_string(),
            ]
            .map(OsString::from),
        );
        args
    }
}

/// Everything that decides a process's logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter (`info`, `debug`, `opensandbox_volume=debug`, …).
    pub level: String,
    /// The log file; stderr when `None`.
    pub file: Option<PathBuf>,
    pub output: LogOutput,
}

/// The AWS SDK's debug and trace output prints request headers and the
/// resolved credentials (the key id in both); whatever level is asked for,
/// these targets stay at info.
const SDK_CAP: &[&str] = &[
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "aws_smithy_http_client=info",
    "aws_smithy_types=info",
    "aws_sigv4=info",
    "aws_sdk_s3=info",
    "aws_credential_types=info",
    "aws_runtime=info",
    "aws_config=info",
    "aws_types=info",
];

/// Installs the process's logger as `settings` say.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let level = &settings.level;
    let mut filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        anyhow::anyhow!(
            "--log-level {level:?} is not a log filter ({e}); use error, warn, info, debug or trace"
        )
    })?;
    if filter.max_level_hint() > Some(tracing_subscriber::filter::LevelFilter::INFO) {
        for cap in SDK_CAP {
            filter = filter.add_directive(cap.parse()?);
        }
    }
    let format = settings.output.format;
    match &settings.file {
        Some(path) => {
            let file = file::RotatingFile::open(path, settings.output.bounds).map_err(|e| {
                anyhow::anyhow!(
                    "--log-file {path:?} cannot be opened ({e}); give a file in a writable directory"
                )
            })?;
            install(filter, format, std::sync::Mutex::new(file), false);
        }
        // Colour codes only on a terminal.
        None => install(
            filter,
            format,
            std::io::stderr,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    }
    Ok(())
}

fn install<W>(filter: tracing_subscriber::EnvFilter, format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
