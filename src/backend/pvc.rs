//! `type=pvc`: an existing Docker named volume, or a directory inside it.
//!
//! The claim is looked up when the volume is first mounted. A volume of
//! this plugin is mounted through the plugin itself (the driver holds a
//! mount of the claim for as long as the pvc volume is mounted); a volume
//! of Docker's `local` driver is reached at its mount point; anything else
//! has no directory the plugin could bind, and is refused.

use crate::engine::{EngineError, EngineVolume};
use std::path::PathBuf;

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
    use std::collections::BTreeMap;

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
        }
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
