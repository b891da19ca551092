//! `opensandbox-volume translate`: OpenSandbox Lifecycle API volume entries →
//! what to pass to Docker, so the sandbox server's integration is a driver
//! name and options.
//!
//! Input is the API's own JSON: one `Volume` object, a list of them, or an
//! object with a `volumes` list (a whole `CreateSandboxRequest` will do; its
//! other fields are ignored). Each entry is checked with the API's rules
//! and, where the API words a rule, with its wording (from the OpenSandbox
//! server's `api/schema.py` models and `services/validators.py`; the rules it
//! does not word carry our sentence, listed in docs/SANDBOX_SERVER.md), then
//! with the plugin's own option parser ([`crate::spec`]), so a volume that
//! passes here is not refused by the plugin's Create for its options. Every
//! problem is reported, each prefixed with the JSON path of what it is
//! about (`volumes[1].mountPath: …`).
//!
//! Output is either `docker run` arguments (one `--mount` per volume,
//! CSV-quoted inside and shell-quoted outside), the Engine API's
//! `HostConfig.Mounts` array, or the arguments as a JSON array for an exec
//! without a shell. What an entry asks for that has no effect on Docker
//! (the `pvc` provisioning hints, ossfs options objectfs has no setting
//! for) is accepted and reported as warnings, on standard error.
//!
//! Everything but [`run_translate`] is pure (no I/O), so the server can link
//! this crate and call [`translate_json`] or [`translate`] instead. This
//! file holds the command, its options and errors and the walk over the
//! entries; `rules` checks an entry (the API's rules and messages, its
//! per-backend fields taken from the option table), `render` turns checked
//! entries into Docker's forms.

mod render;
mod rules;

pub use render::{
    DockerMount, cli_args, csv_field, render, render_api, render_argv, render_cli, shell_quote,
    volume_name,
};

use render::to_mount;
use rules::{Path, Seen, check_entry, json_kind};
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// The driver name of a legacy install (`scripts/install.sh`).
pub const DEFAULT_DRIVER: &str = "opensandbox";
/// What `translate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `--mount '…'` arguments for `docker run`/`docker create`, shell-quoted, on one line.
    Cli,
    /// The Engine API's `HostConfig.Mounts` JSON array.
    Api,
    /// The same arguments as the cli format, as a JSON array of strings
    /// (for an exec without a shell).
    Argv,
}

#[derive(Debug, clap::Args)]
pub struct TranslateArgs {
    /// JSON file with one volume, a list of volumes or an object with
    /// `volumes` (a whole CreateSandboxRequest); `-` or nothing: standard input.
    pub input: Option<PathBuf>,

    /// Output: `cli` (`--mount` arguments), `api` (HostConfig.Mounts JSON)
    /// or `argv` (the cli arguments as a JSON array).
    #[arg(long, value_enum, default_value = "cli")]
    pub format: Format,

    /// The plugin's driver name: `opensandbox` for a legacy install, the
    /// plugin's name (e.g. `opensandbox/volume:latest`) for a managed one.
    #[arg(long, default_value = DEFAULT_DRIVER)]
    pub driver: String,

    /// Make named volumes PREFIX+NAME (for reuse across sandboxes) instead
    /// of anonymous ones, whose Docker record goes with the container.
    #[arg(long, value_name = "PREFIX")]
    pub name_prefix: Option<String>,

    /// Refuse `host` volumes outside these path prefixes (a lexical check,
    /// as the API server does; the plugin checks again with symlinks
    /// resolved).
    #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
    pub allowed_host_paths: Option<Vec<String>>,
}

/// How volumes become Docker mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The volume driver (the plugin's name as Docker knows it).
    pub driver: String,
    /// `None`: anonymous volumes. `Some(prefix)`: named volumes
    /// `prefix + entry name`, sanitised to Docker's volume name characters.
    pub name_prefix: Option<String>,
    /// `Some`: `host.path` must be one of these or under one of them.
    pub allowed_host_paths: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            driver: DEFAULT_DRIVER.to_string(),
            name_prefix: None,
            allowed_host_paths: None,
        }
    }
}

/// One thing wrong with the input, or one that has no effect (a warning):
/// where (a JSON path such as `volumes[1].ossfs.bucket`) and what, in one
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why input could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or JSON of the wrong shape: one sentence.
    Input(String),
    /// Volume entries that break the rules: every problem found.
    Invalid(Vec<Problem>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(sentence) => f.write_str(sentence),
            Error::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// Translated volumes: the mounts, and what the input asks for that has no
/// effect on Docker (accepted, nothing to pass on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub mounts: Vec<DockerMount>,
    pub warnings: Vec<Problem>,
}

/// Parses `text` as JSON and translates it.
pub fn translate_json(text: &str, options: &Options) -> Result<Translation, Error> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::Input(format!(
            "The input is not valid JSON ({e}); give one volume object, a list of them, \
             or an object with a `volumes` list."
        ))
    })?;
    translate(&value, options)
}

/// Translates parsed JSON: one volume object, a list of them, or an object
/// with `volumes`.
pub fn translate(value: &Value, options: &Options) -> Result<Translation, Error> {
    let (entries, single): (Vec<&Value>, bool) = match value {
        Value::Array(list) => (list.iter().collect(), false),
        Value::Object(map) if map.contains_key("volumes") => match &map["volumes"] {
            Value::Array(list) => (list.iter().collect(), false),
            Value::Null => (Vec::new(), false),
            _ => {
                return Err(Error::Invalid(vec![Problem {
                    path: "volumes".into(),
                    message: "Input should be a valid list".into(),
                }]));
            }
        },
        Value::Object(_) => (vec![value], true),
        other => {
            return Err(Error::Input(format!(
                "The input is {}, not a volume; give one volume object, a list of them, \
                 or an object with a `volumes` list.",
                json_kind(other)
            )));
        }
    };
    let mut problems = Vec::new();
    let mut volumes = Vec::new();
    let mut seen = Seen::default();
    for (index, entry) in entries.iter().enumerate() {
        let at = Path::entry(index, single);
        volumes.extend(check_entry(entry, &at, options, &mut problems));
        seen.check(entry, index, &at, &mut problems);
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let warnings = volumes
        .iter_mut()
        .flat_map(|v| std::mem::take(&mut v.warnings))
        .collect();
    Ok(Translation {
        mounts: volumes.into_iter().map(|v| to_mount(v, options)).collect(),
        warnings,
    })
}
/// The `translate` command: reads, translates, prints (warnings on
/// standard error, `warning: PATH: sentence`). Returns the exit status: 0
/// done, 1 the input could not be read, 2 the input is not valid.
pub fn run_translate(args: TranslateArgs) -> i32 {
    let mut text = String::new();
    let read = match &args.input {
        None => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) => std::fs::read_to_string(p).map(|t| text = t),
    };
    if let Err(e) = read {
        let what = match &args.input {
            Some(p) if p.as_os_str() != "-" => p.display().to_string(),
            _ => "standard input".to_string(),
        };
        eprintln!("opensandbox-volume translate: cannot read {what}: {e}");
        return 1;
    }
    let options = Options {
        driver: args.driver,
        name_prefix: args.name_prefix,
        allowed_host_paths: args.allowed_host_paths,
    };
    match translate_json(&text, &options) {
        Ok(translation) => {
            for warning in &translation.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", render(&translation.mounts, args.format));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}
