//! The admin endpoint: a small HTTP server beside the pipeline.
//!
//! | route                        | method | what                                            |
//! |------------------------------|--------|-------------------------------------------------|
//! | `/status`                    | GET    | stages, instances, counters, last reload (JSON) |
//! | `/metrics`                   | GET    | Prometheus text: counters, latency, memory, lag |
//! | `/reload`                    | POST   | reload the pipeline file; waits for the outcome |
//! | `/tap/STAGE[?limit=N]`       | GET    | server-sent events: a sample of STAGE's output  |
//! | `/dashboard/`                | GET    | the list of dashboards                          |
//! | `/dashboard/NAME`            | GET    | a dashboard sink's live page                    |
//! | `/dashboard/NAME/events`     | GET    | its points, as server-sent events               |
//!
//! It listens on loopback unless told otherwise; binding any other address
//! requires `admin_token`, and then every request must carry
//! `Authorization: Bearer TOKEN` (browsers, which cannot set the header on
//! a link, may pass `?token=TOKEN` instead).

//!
//! This file binds and serves it; `guard` checks who may ask (Host,
//! Origin, bearer token); `routes` answers.

mod guard;
mod routes;

use std::net::SocketAddr;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::ReloadRequest;
use crate::telemetry::Telemetry;

/// Why the admin endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the admin endpoint on {0} without `admin_token`: it can reload the pipeline and shows its data; bind it to 127.0.0.1, or set admin_token (e.g. admin_token = \"${{WEIR_ADMIN_TOKEN}}\")"
    )]
    NeedsToken(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The running pipeline's status, counters, taps and dashboards.
    pub telemetry: Telemetry,
    /// Where reload requests go.
    pub reloads: mpsc::UnboundedSender<ReloadRequest>,
    /// Required bearer token, if any.
    pub token: Option<String>,
    /// Cancelled when the endpoint stops: ends open event streams.
    pub shutdown: CancellationToken,
}

/// A bound admin endpoint, not yet serving.
pub struct Admin {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Admin {
    /// Checks the address and binds it. A non-loopback address needs a
    /// token.
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<Admin, AdminError> {
        if !addr.ip().is_loopback() && state.token.is_none() {
            return Err(AdminError::NeedsToken(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        state.telemetry.dashboards().set_served();
        Ok(Admin {
            listener,
            router: router(state),
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` (also in [`AdminState`]) is cancelled;
    /// open event streams end then too.
    pub async fn serve(self, shutdown: CancellationToken) {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    }
}

/// The admin endpoint's routes and checks, without binding a port (tests
/// call it in-process).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(routes::index))
        .route("/status", get(routes::status))
        .route("/metrics", get(routes::metrics))
        .route("/reload", post(routes::reload))
        .route("/tap/{stage}", get(routes::tap))
        .route("/dashboard", get(routes::dashboards))
        .route("/dashboard/", get(routes::dashboards))
        .route("/dashboard/{name}", get(routes::dashboard_page))
        .route("/dashboard/{name}/events", get(routes::dashboard_events))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin,
        ))
        .with_state(state)
}
