//! The coordinator's REST API and web dashboard: axum on a tokio runtime of its own,
//! in front of a [`Coordinator`]. Every request acts for the tenant (or administrator)
//! its bearer token names; the API is described by an OpenAPI document generated from
//! the handlers (`/openapi.json`, readable at `/api`), and the dashboard's files are
//! embedded in the binary (`/`).

mod routes;
mod ui;

use std::net::SocketAddr;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use eddy_cluster::Coordinator;
use eddy_cluster::api::ControlError;
use eddy_core::tenant::Access;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use routes::openapi;

/// The REST server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The address is taken or invalid.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Its runtime or thread could not start.
    #[error("cannot start the REST server: {0}")]
    Start(std::io::Error),
}

/// A running REST server; it serves until the process ends.
pub struct Rest {
    addr: SocketAddr,
}

impl Rest {
    /// Serves `coordinator`'s API and dashboard on `listen` (port 0 picks one).
    pub fn start(coordinator: Coordinator, listen: SocketAddr) -> Result<Rest, RestError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-rest")
            .enable_io()
            .build()
            .map_err(RestError::Start)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .map_err(|e| RestError::Bind(listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RestError::Bind(listen, e))?;
        let app = routes::router(coordinator);
        std::thread::Builder::new()
            .name("eddy-rest".into())
            .spawn(move || {
                if let Err(e) = runtime.block_on(async { axum::serve(listener, app).await }) {
                    tracing::error!("the REST server stopped: {e}");
                }
            })
            .map_err(RestError::Start)?;
        tracing::info!("REST API and dashboard on http://{addr}");
        Ok(Rest { addr })
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Every error answer: what went wrong, and where.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// An error answer with its status.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::NoJob(_) | ControlError::NoSavepoint { .. } => StatusCode::NOT_FOUND,
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::Forbidden(_) => StatusCode::FORBIDDEN,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// Who a request acts for, from its `Authorization: Bearer TOKEN` header; a request
/// without a known token is answered 401 before any handler runs.
pub(crate) struct Caller(pub(crate) Access);

impl FromRequestParts<Coordinator> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        coordinator: &Coordinator,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        coordinator.authenticate(token).map(Caller).ok_or_else(|| {
            let why = if token.is_some() {
                "the token is not known"
            } else {
                "this cluster needs a token: send `Authorization: Bearer TOKEN`"
            };
            ApiError(StatusCode::UNAUTHORIZED, why.into())
        })
    }
}
