//! `type=nfs`: the server, the export and the NFS mount options a volume
//! may ask for (a fixed list, [`NFS_MOUNT_OPTIONS`]).

use super::error::SpecError;
use super::model::NfsSpec;
use super::opts::Opts;
use super::values::is_normalised_absolute;

/// NFS mount options `options` may hold: the client-side tuning an agent's
/// volume may need. Anything else (e.g. `mountproto`, `fsc`, `local_lock`)
/// is refused by name.
pub const NFS_MOUNT_OPTIONS: &[&str] = &[
    "vers",
    "nfsvers",
    "minorversion",
    "hard",
    "soft",
    "softreval",
    "timeo",
    "retrans",
    "rsize",
    "wsize",
    "ac",
    "noac",
    "actimeo",
    "acregmin",
    "acregmax",
    "acdirmin",
    "acdirmax",
    "lookupcache",
    "proto",
    "port",
    "nconnect",
    "sec",
    "lock",
    "nolock",
    "cto",
    "nocto",
    "ro",
    "rw",
    "noatime",
    "nodiratime",
    "relatime",
    "nosuid",
    "nodev",
    "noexec",
];

pub(super) fn parse_nfs(opts: &Opts) -> Result<NfsSpec, SpecError> {
    let server = opts.required("server")?;
    if !is_nfs_server(server) {
        return Err(SpecError::BadNfsServer(server.to_string()));
    }
    let path = opts.required("path")?;
    if !is_normalised_absolute(path) {
        return Err(SpecError::BadNfsPath(path.to_string()));
    }
    let mut options = Vec::new();
    for item in opts.get("options").unwrap_or("").split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if name.is_empty() || !plain(name) || !plain(value) || item.ends_with('=') {
            return Err(SpecError::BadNfsOption(item.to_string()));
        }
        if !NFS_MOUNT_OPTIONS.contains(&name) {
            return Err(SpecError::UnsupportedNfsOption(name.to_string()));
        }
        options.push(item.to_string());
    }
    Ok(NfsSpec {
        server: server.to_string(),
        path: path.to_string(),
        options,
    })
}

/// A host name (labels of letters, digits and `-`), an IPv4 address, or an
/// IPv6 address in brackets: nothing that could smuggle options or paths
/// into the mount source `server:/path`.
pub fn is_nfs_server(server: &str) -> bool {
    if let Some(inner) = server.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    server.len() <= 253
        && server.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use crate::spec::*;
    use serde_json::json;

    #[test]
    fn nfs_server_path_and_options_are_checked() {
        let spec = parse(
            json!({"type": "nfs", "server": "nfs.example.com", "path": "/exports/team",
            "options": "nfsvers=4.1, hard,timeo=600"}),
        )
        .unwrap();
        assert_eq!(
            spec.backend,
            BackendSpec::Nfs(NfsSpec {
                server: "nfs.example.com".into(),
                path: "/exports/team".into(),
                options: vec!["nfsvers=4.1".into(), "hard".into(), "timeo=600".into()],
            })
        );
        assert!(parse(json!({"type": "nfs", "server": "[fd00::1]", "path": "/x"})).is_ok());
        assert!(parse(json!({"type": "nfs", "server": "10.0.0.2", "path": "/"})).is_ok());
        for server in ["a b", "x:/y", "-o", "host,ro", "[zz]", "a..b", ""] {
            let err = parse(json!({"type": "nfs", "server": server, "path": "/x"})).unwrap_err();
            assert!(
                matches!(
                    err,
                    SpecError::BadNfsServer(_) | SpecError::MissingOption { .. }
                ),
                "{server}: {err}"
            );
        }
        for path in ["exports", "/a/../b", "/a//b", "/a/"] {
            let err = parse(json!({"type": "nfs", "server": "s", "path": path})).unwrap_err();
            assert!(matches!(err, SpecError::BadNfsPath(_)), "{path}: {err}");
        }
        let err = parse(json!({"type": "nfs", "server": "s", "path": "/x", "options": "hard,fsc"}))
            .unwrap_err();
        assert_eq!(err, SpecError::UnsupportedNfsOption("fsc".into()));
        for bad in ["vers=4 x", "sec=sys;rm", "timeo=", "=1"] {
            let err = parse(json!({"type": "nfs", "server": "s", "path": "/x", "options": bad}))
                .unwrap_err();
            assert!(matches!(err, SpecError::BadNfsOption(_)), "{bad}: {err}");
        }
    }
}
