//! The admin endpoint: a small HTTP server beside the pipeline.
//!
//! | route            | method | what                                              |
//! |------------------|--------|---------------------------------------------------|
//! | `/status`        | GET    | stages, instances, counters, last reload (JSON)   |
//! | `/reload`        | POST   | reload the pipeline file; waits for the outcome   |
//!
//! It listens on loopback unless told otherwise; binding any other address
//! requires `admin_token`, and then every request must carry
//! `Authorization: Bearer TOKEN`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Registry;
use crate::status::Board;
use crate::topology::ReloadRequest;

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
    /// The running pipeline's status.
    pub board: Board,
    /// Its counters.
    pub registry: Registry,
    /// Where reload requests go.
    pub reloads: mpsc::UnboundedSender<ReloadRequest>,
    /// Required bearer token, if any.
    pub token: Option<String>,
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
        let router = Router::new()
            .route("/", get(index))
            .route("/status", get(status))
            .route("/reload", post(reload))
            .layer(middleware::from_fn_with_state(state.clone(), authorize))
            .with_state(state);
        Ok(Admin { listener, router })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    }
}

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn index() -> &'static str {
    "weir admin endpoint: GET /status, POST /reload\n"
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(state.board.read(&state.registry)).into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    let (tx, rx) = oneshot::channel();
    let request = ReloadRequest {
        trigger: "admin".into(),
        reply: Some(tx),
    };
    if state.reloads.send(request).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline has stopped\n",
        )
            .into_response();
    }
    match rx.await {
        Ok(report) => {
            let code = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (code, axum::Json(report)).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline stopped before the reload finished\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }
}
