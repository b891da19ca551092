//! Checked volumes → Docker's forms: the `--mount` value (a CSV record,
//! shell-quoted for the cli format), the Engine API's `HostConfig.Mounts`
//! element, and the three output formats built from them.

use super::rules::{Checked, volume_options};
use super::{Format, Options};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// A Docker volume mount of the plugin's driver, as `docker run --mount`
/// and the Engine API's `HostConfig.Mounts` express it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerMount {
    /// The volume name; `None` for an anonymous volume.
    pub source: Option<String>,
    /// The entry's `mountPath`.
    pub target: String,
    /// The container mount's read-only flag: the entry's `readOnly` for a
    /// named volume; always false for an anonymous one, which Docker
    /// refuses to mount read-only ("must not set ReadOnly mode when using
    /// anonymous volumes"). Either way a read-only entry also gets the
    /// `readOnly=true` option, which makes the plugin's own mount
    /// read-only: writes fail with EROFS however the container mounts it.
    pub read_only: bool,
    pub driver: String,
    /// Volume options, in a fixed order: `type`, the backend's, `subPath`,
    /// `readOnly`.
    pub options: Vec<(String, String)>,
}

impl DockerMount {
    /// The value of `--mount`: Docker reads it as one CSV record, so each
    /// field that needs it is CSV-quoted (see [`csv_field`]).
    pub fn mount_value(&self) -> String {
        let mut fields = vec!["type=volume".to_string()];
        if let Some(source) = &self.source {
            fields.push(format!("src={source}"));
        }
        fields.push(format!("dst={}", self.target));
        if self.read_only {
            fields.push("readonly".to_string());
        }
        fields.push(format!("volume-driver={}", self.driver));
        for (key, value) in &self.options {
            fields.push(format!("volume-opt={key}={value}"));
        }
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One element of the Engine API's `HostConfig.Mounts`.
    pub fn to_api(&self) -> Value {
        let options: Map<String, Value> = self
            .options
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "Type": "volume",
            "Source": self.source.clone().unwrap_or_default(),
            "Target": self.target,
            "ReadOnly": self.read_only,
            "VolumeOptions": {
                "DriverConfig": {"Name": self.driver, "Options": options}
            }
        })
    }
}

/// Quotes one field of a CSV record the way Go's encoding/csv (which the
/// docker CLI uses for `--mount`) reads it back: in double quotes, with
/// each `"` doubled, when it holds a comma, a quote or a line break, or
/// starts or ends with white space (newer CLIs trim the whole value).
pub fn csv_field(field: &str) -> Cow<'_, str> {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

/// One shell word: single quotes, each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The arguments for `docker run`: `--mount VALUE` per volume.
pub fn cli_args(mounts: &[DockerMount]) -> Vec<String> {
    mounts
        .iter()
        .flat_map(|m| ["--mount".to_string(), m.mount_value()])
        .collect()
}

/// The cli format: `--mount '…' --mount '…'` and a newline (nothing for
/// no volumes), ready to paste after `docker run`.
pub fn render_cli(mounts: &[DockerMount]) -> String {
    if mounts.is_empty() {
        return String::new();
    }
    let words: Vec<String> = mounts
        .iter()
        .map(|m| format!("--mount {}", shell_quote(&m.mount_value())))
        .collect();
    format!("{}\n", words.join(" "))
}

/// The api format: the `HostConfig.Mounts` array, pretty-printed.
pub fn render_api(mounts: &[DockerMount]) -> String {
    let list: Vec<Value> = mounts.iter().map(DockerMount::to_api).collect();
    let mut text = serde_json::to_string_pretty(&Value::Array(list)).expect("JSON values print");
    text.push('\n');
    text
}

/// The argv format: [`cli_args`] as a JSON array.
pub fn render_argv(mounts: &[DockerMount]) -> String {
    let mut text = serde_json::to_string(&cli_args(mounts)).expect("strings print");
    text.push('\n');
    text
}

pub fn render(mounts: &[DockerMount], format: Format) -> String {
    match format {
        Format::Cli => render_cli(mounts),
        Format::Api => render_api(mounts),
        Format::Argv => render_argv(mounts),
    }
}

pub(super) fn to_mount(v: Checked, options: &Options) -> DockerMount {
    let source = options
        .name_prefix
        .as_deref()
        .map(|prefix| volume_name(prefix, &v.name));
    DockerMount {
        read_only: v.read_only && source.is_some(),
        source,
        target: v.mount_path.clone(),
        driver: options.driver.clone(),
        options: volume_options(&v),
    }
}

/// `prefix + name` in Docker's volume name characters
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): others become `-`, and a prefix may not
/// start with anything but a letter or digit. `name` is a DNS label already.
pub fn volume_name(prefix: &str, name: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let prefix = prefix.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("volume-opt=bucket=b"), "volume-opt=bucket=b");
        assert_eq!(
            csv_field("volume-opt=options=allow_other,umask=0022"),
            "\"volume-opt=options=allow_other,umask=0022\""
        );
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field(" a"), "\" a\"");
    }

    #[test]
    fn shell_quote_escapes_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn volume_names_are_sanitised() {
        assert_eq!(volume_name("sb 1/", "work"), "sb-1-work");
        assert_eq!(volume_name("_x.", "work"), "x.work");
        assert_eq!(volume_name("", "work"), "work");
    }
}
