//! The HTTP endpoints next to the pipeline, on their own thread (tiny_http):
//! `GET /metrics` (Prometheus text), `/healthz` (200 while the process is up) and `/readyz`
//! (200 when a stream is connected, a model is loaded and outputs flowed recently; else 503
//! with the reasons, one per line).
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use super::metrics::{Health, Metrics, MAX_HEARTBEAT_AGE};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("metrics.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// The running server; stops (and joins its thread) on [`HttpServer::stop`] or drop.
pub struct HttpServer {
    server: Arc<Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The bound address (the real port when `listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn spawn_http(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    max_output_age: Duration,
) -> Result<HttpServer, HttpError> {
    let server = Server::http(listen).map_err(|source| HttpError::Bind {
        addr: listen,
        source,
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .expect("a server bound to a SocketAddr has an IP address");
    let server = Arc::new(server);
    let thread = {
        let server = server.clone();
        std::thread::Builder::new()
            .name("affectd-http".into())
            .spawn(move || {
                // `incoming_requests` ends when `unblock` is called.
                for request in server.incoming_requests() {
                    respond(request, &metrics, &health, max_output_age);
                }
            })
            .map_err(HttpError::Thread)?
    };
    tracing::info!("metrics, /healthz and /readyz on http://{addr}");
    Ok(HttpServer {
        server,
        addr,
        thread: Some(thread),
    })
}

fn respond(request: Request, metrics: &Metrics, health: &Health, max_output_age: Duration) {
    let text = |body: String, status: u16, content_type: &str| {
        Response::from_string(body)
            .with_status_code(status)
            .with_header(
                Header::from_bytes("Content-Type", content_type).expect("a valid static header"),
            )
    };
    let plain = "text/plain; charset=utf-8";
    let path = request.url().split('?').next().unwrap_or("");
    let response = match (request.method(), path) {
        (Method::Get | Method::Head, "/metrics") => text(
            metrics.render(),
            200,
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (Method::Get | Method::Head, "/healthz") => {
            let stalled = health.stalled(MAX_HEARTBEAT_AGE);
            if stalled.is_empty() {
                text("ok\n".into(), 200, plain)
            } else {
                text(format!("not alive: {}\n", stalled.join(", ")), 503, plain)
            }
        }
        (Method::Get | Method::Head, "/readyz") => {
            let r = health.ready(max_output_age);
            if r.ready {
                text("ready\n".into(), 200, plain)
            } else {
                let mut body = r.reasons.join("\n");
                body.push('\n');
                text(body, 503, plain)
            }
        }
        (Method::Get | Method::Head, _) => text(
            "not found; try /metrics, /healthz or /readyz\n".into(),
            404,
            plain,
        ),
        _ => text("method not allowed\n".into(), 405, plain),
    };
    if let Err(e) = request.respond(response) {
        tracing::debug!("HTTP client went away: {e}");
    }
}
