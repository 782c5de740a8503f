//! The dashboard's files, embedded in the binary: nothing to build or install to see
//! it, and always the version of the API it talks to.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use eddy_cluster::Coordinator;

/// One embedded file with its content type.
fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    ([(header::CONTENT_TYPE, content_type)], body)
}

/// The dashboard and the API's readable page.
pub(crate) fn router() -> Router<Coordinator> {
    let html = "text/html; charset=utf-8";
    let index = file(html, include_str!("../ui/index.html"));
    let api = file(html, include_str!("../ui/api.html"));
    let script = file(
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    );
    let style = file("text/css; charset=utf-8", include_str!("../ui/style.css"));
    Router::new()
        .route("/", get(move || async move { index }))
        .route("/api", get(move || async move { api }))
        .route("/ui/app.js", get(move || async move { script }))
        .route("/ui/style.css", get(move || async move { style }))
}
