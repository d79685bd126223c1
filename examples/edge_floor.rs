//! The floor under slipway's webhook ingest on a machine: the same HTTP stack (tokio's
//! multi-thread runtime, `axum::serve`), the same signature check and the same push parser, and
//! nothing else: no store, no planner, no middleware, no log line. What a push costs here is what
//! it would cost slipway if storing the job and everything around it were free.
//!
//! `bench/webhooks/run.sh` runs it as the peer `floor` (`PEERS="floor octokit"`):
//!
//! ```sh
//! cargo build --release --example edge_floor
//! target/release/examples/edge_floor 127.0.0.1:3100 bench-secret
//! ```
//!
//! `POST /api/github/webhooks`: a bad signature 401, an unparsable push 400, else an empty 202;
//! `GET /` answers 200 (readiness).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use slipway::{gitops, http::MAX_BODY, signature};

async fn receive(State(secret): State<Arc<[u8]>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if signature::verify_github(&secret, &headers, &body).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    match gitops::parse_push(&body) {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(secret)) = (args.next(), args.next()) else {
        eprintln!("usage: edge_floor ADDR SECRET");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("ADDR {addr:?}: {e}")))?;
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/api/github/webhooks", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::<[u8]>::from(secret.into_bytes()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
