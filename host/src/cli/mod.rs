//! The commands of the `weir` binary: `run` (the library's runner with
//! signal handling), the clients of a running pipeline's admin endpoint
//! (`status`, `reload`, `tap`, `top`) and the plugin tools (`plugin ...`).

pub mod plugin;
pub mod run;
pub mod status;
pub mod tap;
pub mod top;
pub mod top_screen;

use anyhow::{Context, Result};

/// Requests to one admin endpoint: one runtime and connection pool, reused
/// across requests (`weir top` asks every second).
pub struct AdminClient {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// `IP:PORT` of the endpoint.
    pub addr: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client for the endpoint at `addr`, sending `token` if given.
    pub fn new(addr: String, token: Option<String>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(AdminClient {
            rt,
            client,
            addr,
            token,
        })
    }

    /// Sends a request for `path`, with the token, failing with a clear
    /// message when the endpoint is unreachable or refuses the token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response> {
        let addr = &self.addr;
        let mut req = self.client.request(method, format!("http://{addr}{path}"));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the admin endpoint at {addr} (is `weir run` running with `admin = \"{addr}\"` or `--admin {addr}`?)"
            )
        })?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!(
                "the admin endpoint at {addr} refused the request: {}",
                body.trim()
            );
        }
        Ok(resp)
    }

    /// A whole request: status code and body. Reloads may take long; other
    /// requests time out after 30 s.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Result<(u16, String)> {
        let timeout = (method != reqwest::Method::POST).then(|| std::time::Duration::from_secs(30));
        self.rt.block_on(async {
            let resp = self.send(method, path, timeout).await?;
            let code = resp.status().as_u16();
            Ok((code, resp.text().await?))
        })
    }

    /// Runs `f` on this client's runtime.
    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}
