//! The unix socket Docker talks to.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use tokio::net::{UnixListener, UnixStream};

/// Binds `path`, replacing a stale socket left by a dead plugin.
///
/// A socket that still answers belongs to a live plugin: taking it over
/// would leave two daemons fighting over the same volumes, so that is an
/// error. The socket is made 0600: only root may drive the plugin.
pub async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                anyhow::bail!(
                    "another process is already serving {}; stop it or pass another --socket",
                    path.display()
                );
            }
            tracing::info!(socket = %path.display(), "replacing a stale socket");
            std::fs::remove_file(path)?;
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; remove it or pass another --socket",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the router until `shutdown` resolves, then removes the socket so
/// dockerd does not keep dialling a dead one.
pub async fn serve(
    listener: UnixListener,
    path: &Path,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    result
}
