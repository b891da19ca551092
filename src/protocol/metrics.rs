//! The Prometheus endpoint (`serve --metrics-addr`): `GET /metrics` on a
//! TCP address, answered at each scrape from the state directory (the
//! registry and every mount process's status file, `report`) and the
//! daemon's count of mount process restarts, in the text format
//! (`prometheus`). Nothing is kept between scrapes.

use crate::driver::Driver;
use crate::report;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binds the endpoint's address (before the daemon says it is up, so a
/// taken port fails the start).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "--metrics-addr {addr}: cannot listen there ({e}); choose a free address and port"
        )
    })
}

struct Scrape {
    driver: Arc<Driver>,
    state_dir: PathBuf,
}

/// Serves `/metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, driver: Arc<Driver>, state_dir: PathBuf) {
    let scrape = Arc::new(Scrape { driver, state_dir });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(scrape);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

async fn metrics(State(scrape): State<Arc<Scrape>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let report = report::collect(&scrape.state_dir)?;
        let restarts = scrape.driver.mount_process_restarts();
        Ok::<_, std::io::Error>(crate::prometheus::render(&report, &restarts))
    })
    .await;
    match text {
        Ok(Ok(text)) => (
            [(header::CONTENT_TYPE, crate::prometheus::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
