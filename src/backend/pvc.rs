//! `type=pvc`: a Docker named volume, or a directory inside it.
//!
//! The claim is looked up when the volume is first mounted. A volume of
//! this plugin is mounted through the plugin itself (the driver holds a
//! mount of the claim for as long as the pvc volume is mounted); a volume
//! of Docker's `local` driver is reached at its mount point; anything else
//! has no directory the plugin could bind, and is refused. A claim that
//! does not exist is created (`createIfNotExists`) as a local volume
//! carrying [`CREATED_LABEL`], the only mark by which the plugin later
//! removes a claim (`deleteOnSandboxTermination`): a claim without it was
//! not created by the plugin and is never removed.

use crate::engine::{EngineError, EngineVolume};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The label (key, value) of the claims the plugin creates. The key is the
/// one the OpenSandbox server puts on the claims it creates itself (with
/// the value `server`); the value names this plugin, so neither removes
/// what the other created.
pub const CREATED_LABEL: (&str, &str) = ("opensandbox.io/volume-managed-by", "opensandbox-volume");

/// The labels of a claim the plugin creates.
pub fn created_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(CREATED_LABEL.0.to_string(), CREATED_LABEL.1.to_string())])
}

/// Whether Docker's description of a claim says the plugin created it.
pub fn created_by_plugin(volume: &EngineVolume) -> bool {
    volume.driver == "local"
        && volume
            .labels
            .as_ref()
            .and_then(|l| l.get(CREATED_LABEL.0))
            .is_some_and(|v| v == CREATED_LABEL.1)
}

/// Where a claim's data is, as far as this process can reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    /// A host path (a local volume's `_data`), resolved under the host root.
    Host(PathBuf),
    /// A mount of this plugin (a volume it serves), a path of this process.
    Plugin(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("claim {claim:?}: {source}")]
    Engine {
        claim: String,
        #[source]
        source: EngineError,
    },
    #[error(
        "a pvc volume whose claim is not a volume of this plugin needs the Docker Engine API, and this plugin runs without it ({0:?} is not a socket: its docker-socket mount was left out); claim a volume of this plugin, use a host or object volume, or give the plugin the socket (docker plugin set PLUGIN docker-socket.source=/var/run/docker.sock)"
    )]
    NoEngine(PathBuf),
    #[error("a pvc volume cannot claim itself (claimName={0:?}); name another volume")]
    ItSelf(String),
    #[error(
        "claim {0:?} is itself a pvc volume of this plugin; claim the volume it refers to instead"
    )]
    Chained(String),
    #[error(
        "claim {claim:?} uses volume driver {driver:?}, whose mount point is not a real directory the plugin can reach; claim a volume of the local driver or of this plugin"
    )]
    OtherDriver { claim: String, driver: String },
    #[error(
        "claim {claim:?} is a local volume with mount options ({options}), whose mount point holds its data only while Docker mounts it; claim a plain local volume or a volume of this plugin"
    )]
    LocalWithOptions { claim: String, options: String },
    #[error("claim {0:?} has no mount point; Docker reported none for it")]
    NoMountpoint(String),
    #[error(
        "claim {claim:?} does not exist and could not be created ({source}); create it first (docker volume create {claim}) or check the Docker daemon"
    )]
    Create {
        claim: String,
        #[source]
        source: EngineError,
    },
}

/// Where the data of a claim Docker described lives, or why it cannot be
/// claimed.
pub fn local_claim(claim: &str, volume: &EngineVolume) -> Result<ClaimSource, ClaimError> {
    if volume.driver != "local" {
        return Err(ClaimError::OtherDriver {
            claim: claim.into(),
            driver: volume.driver.clone(),
        });
    }
    if let Some(options) = volume.options.as_ref().filter(|o| !o.is_empty()) {
        let list: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(ClaimError::LocalWithOptions {
            claim: claim.into(),
            options: list.join(", "),
        });
    }
    if volume.mountpoint.is_empty() || !volume.mountpoint.starts_with('/') {
        return Err(ClaimError::NoMountpoint(claim.into()));
    }
    Ok(ClaimSource::Host(PathBuf::from(&volume.mountpoint)))
}

/// The mount ID under which a pvc volume holds a mount of its claim.
pub fn claim_mount_id(pvc_volume: &str) -> String {
    format!("pvc-claim:{pvc_volume}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(driver: &str, mountpoint: &str, options: Option<&[(&str, &str)]>) -> EngineVolume {
        EngineVolume {
            name: "data".into(),
            driver: driver.into(),
            mountpoint: mountpoint.into(),
            options: options.map(|o| {
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            }),
            labels: None,
        }
    }

    #[test]
    fn only_a_local_volume_with_the_plugins_label_counts_as_created_by_it() {
        let mut v = volume("local", "/var/lib/docker/volumes/c/_data", None);
        assert!(!created_by_plugin(&v), "no labels");
        v.labels = Some(created_labels());
        assert!(created_by_plugin(&v));
        v.labels = Some(BTreeMap::from([(
            CREATED_LABEL.0.to_string(),
            "server".to_string(),
        )]));
        assert!(!created_by_plugin(&v), "the OpenSandbox server's own");
        v.labels = Some(created_labels());
        v.driver = "rclone".into();
        assert!(!created_by_plugin(&v), "another driver");
    }

    /// The option table's words name the label the plugin really sets.
    #[test]
    fn the_create_if_not_exists_row_names_the_label() {
        let row =
            crate::spec::table::find(crate::spec::VolumeType::Pvc, "createIfNotExists").unwrap();
        assert!(
            row.help
                .contains(&format!("`{}={}`", CREATED_LABEL.0, CREATED_LABEL.1)),
            "{}",
            row.help
        );
    }

    #[test]
    fn a_plain_local_volume_is_claimed_at_its_mount_point() {
        let v = volume("local", "/var/lib/docker/volumes/data/_data", None);
        assert_eq!(
            local_claim("data", &v).unwrap(),
            ClaimSource::Host("/var/lib/docker/volumes/data/_data".into())
        );
        let v = volume("local", "/var/lib/docker/volumes/data/_data", Some(&[]));
        assert!(local_claim("data", &v).is_ok());
    }

    #[test]
    fn other_drivers_and_mounted_local_volumes_are_refused() {
        let e = local_claim("data", &volume("rclone", "/mnt/x", None)).unwrap_err();
        assert!(e.to_string().contains("volume driver \"rclone\""), "{e}");
        let e = local_claim(
            "data",
            &volume(
                "local",
                "/var/lib/docker/volumes/data/_data",
                Some(&[("type", "nfs")]),
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("type=nfs"), "{e}");
        let e = local_claim("data", &volume("local", "", None)).unwrap_err();
        assert!(matches!(e, ClaimError::NoMountpoint(_)), "{e}");
    }
}
