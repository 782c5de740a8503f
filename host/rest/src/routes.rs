//! The API's routes: each handler is documented where it is written, and the OpenAPI
//! document is generated from them, so the document lists exactly what is served.

use std::fmt::Write;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Json, Router};
use eddy_cluster::api::{
    CheckpointView, ExceptionView, JobDetail, JobView, Overview, SavepointView, WorkerView,
};
use eddy_cluster::{Coordinator, Resume, Submission};
use eddy_core::tenant::Access;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{ApiError, Caller, ErrorBody, ui};

/// Largest submission (a job file and its components) accepted.
const MAX_SUBMISSION: usize = 512 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy",
        description = "Operate an Eddy session cluster: submit jobs with their WebAssembly \
                       components, watch them run, take savepoints, cancel them. Every request \
                       carries a bearer token that acts for one tenant (its jobs only) or for \
                       the whole cluster; a cluster without a tenants file needs none."
    ),
    modifiers(&BearerToken),
    tags(
        (name = "cluster", description = "The cluster and its workers"),
        (name = "jobs", description = "Jobs, their savepoints, checkpoints and failures"),
    )
)]
struct ApiDoc;

/// Declares the bearer token every operation needs.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token of the tenants file (which keeps its SHA-256): a tenant's, or an \
                 administrator's",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("token", SecurityScheme::Http(scheme));
    }
}

/// The API's routes with their document.
fn api() -> OpenApiRouter<Coordinator> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(overview))
        .routes(routes!(list_jobs, submit))
        .routes(routes!(job))
        .routes(routes!(cancel))
        .routes(routes!(list_savepoints, trigger_savepoint))
        .routes(routes!(savepoint))
        .routes(routes!(checkpoints))
        .routes(routes!(exceptions))
        .routes(routes!(workers))
        .routes(routes!(metrics))
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// Everything the server serves: the API, its document and the dashboard.
pub(crate) fn router(coordinator: Coordinator) -> Router {
    let (api, doc) = api().split_for_parts();
    let doc = serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    api.route(
        "/openapi.json",
        axum::routing::get(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], doc.clone())
        }),
    )
    .merge(ui::router())
    .layer(DefaultBodyLimit::max(MAX_SUBMISSION))
    .with_state(coordinator)
}

/// The cluster at a glance: workers, slots, the caller's jobs by state.
#[utoipa::path(get, path = "/api/v1/overview", tag = "cluster",
    responses((status = 200, body = Overview), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn overview(State(c): State<Coordinator>, Caller(access): Caller) -> Json<Overview> {
    Json(c.overview(&access))
}

/// The caller's jobs, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobView>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn list_jobs(State(c): State<Coordinator>, Caller(access): Caller) -> Json<Vec<JobView>> {
    Json(c.jobs(&access))
}

/// A submission: the job file, and each WebAssembly component it names under the
/// file name the job gives it (its path under the plugin directory).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "documents the multipart form; axum reads the parts"
)]
struct SubmitForm {
    /// The job file (YAML).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    job: String,
    /// The components, one part each.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    component: Vec<String>,
    /// A savepoint (or checkpoint) directory to start from, as the workers see it, or
    /// `latest` for the job's latest checkpoint.
    restore: Option<String>,
}

/// The id of a submitted job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The job's id.
    pub id: u64,
}

/// Submits a job with its components; it is checked (a broken job file is answered
/// with the line and column at fault), admitted under the tenant's quotas, and
/// scheduled. A job file that names no tenant runs for the token's tenant; a
/// `restore` part names a savepoint to start from.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs",
    request_body(content = SubmitForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = Submitted),
        (status = 400, description = "A broken job file or component, or a malformed form", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Another tenant's job file, or beyond a quota", body = ErrorBody),
    ),
    security(("token" = [])))]
async fn submit(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::bad_request(e.body_text());
    let mut job = None;
    let mut restore = None;
    let mut components = Vec::new();
    while let Some(part) = form.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or_default().to_owned();
        let file = part.file_name().map(str::to_owned);
        let bytes = part.bytes().await.map_err(bad)?;
        match (name.as_str(), file) {
            ("job", file) => {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::bad_request("the job file is not UTF-8 text"))?;
                job = Some((file.unwrap_or_else(|| "job.yaml".into()), text));
            }
            ("component", Some(file)) => components.push((file, bytes.to_vec())),
            ("restore", _) => {
                let dir = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::bad_request("`restore` is not UTF-8 text"))?;
                restore = Some(match dir.as_str() {
                    "latest" => Resume::Latest,
                    _ => Resume::From(dir.into()),
                });
            }
            ("component", None) => {
                return Err(ApiError::bad_request(
                    "a `component` part needs a file name: the path the job names it by",
                ));
            }
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part {other:?}: send `job` and `component` parts"
                )));
            }
        }
    }
    let Some((file, yaml)) = job else {
        return Err(ApiError::bad_request("the form has no `job` part"));
    };
    let submission = Submission {
        name: file,
        yaml,
        components,
        resume: restore.unwrap_or(Resume::Beginning),
        base: None,
    };
    let submit = move || c.submit(&access, submission);
    let id = tokio::task::spawn_blocking(submit)
        .await
        .map_err(|e| ApiError::from(eddy_cluster::api::ControlError::Internal(e.to_string())))??;
    Ok((StatusCode::CREATED, Json(Submitted { id })))
}

/// A job with its graph: each vertex's parallelism, records in and out per second,
/// busy and backpressured shares and watermark, and the exchanges between them.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses((status = 200, body = JobDetail), (status = 401, body = ErrorBody),
        (status = 404, description = "No such job of the caller's", body = ErrorBody)),
    security(("token" = [])))]
async fn job(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(c.job(&access, id)?))
}

/// Cancels a job: its running parts end at once, publishing nothing past their last
/// checkpoint.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses((status = 202, body = JobView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job has ended", body = ErrorBody)),
    security(("token" = [])))]
async fn cancel(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(c.cancel(&access, id)?)))
}

/// What a savepoint request asks for.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", default)]
pub struct SavepointRequest {
    /// Stop the job once the savepoint completed (drain).
    pub stop: bool,
    /// Any string of the client's: a retry with the same one gets the same savepoint.
    pub request_id: Option<String>,
}

/// Triggers a savepoint (and stops the job after it, with `stop`); answers at once
/// with the trigger id to poll.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/savepoints", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    request_body = SavepointRequest,
    responses((status = 202, body = SavepointView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job is not running, or has no checkpoints", body = ErrorBody)),
    security(("token" = [])))]
async fn trigger_savepoint(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
    request: Option<Json<SavepointRequest>>,
) -> Result<(StatusCode, Json<SavepointView>), ApiError> {
    let Json(request) = request.unwrap_or_default();
    let asked = c.trigger_savepoint(&access, id, request.stop, request.request_id)?;
    Ok((StatusCode::ACCEPTED, Json(asked)))
}

/// The savepoints asked of a job, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/savepoints", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses((status = 200, body = Vec<SavepointView>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn list_savepoints(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
) -> Result<Json<Vec<SavepointView>>, ApiError> {
    Ok(Json(c.savepoints(&access, id)?))
}

/// One savepoint by its trigger id: pending, completed (with its directory) or failed
/// (with why).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/savepoints/{trigger}", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id"),
        ("trigger" = String, Path, description = "The trigger id the request answered")),
    responses((status = 200, body = SavepointView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn savepoint(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path((id, trigger)): Path<(u64, String)>,
) -> Result<Json<SavepointView>, ApiError> {
    Ok(Json(c.savepoint(&access, id, &trigger)?))
}

/// A job's latest checkpoints and savepoints, oldest first: id, state, size, duration
/// and trigger time.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/checkpoints", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses((status = 200, body = Vec<CheckpointView>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn checkpoints(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    Ok(Json(c.checkpoints(&access, id)?))
}

/// A job's failures, oldest first: when, which attempt, on which worker, and why.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/exceptions", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses((status = 200, body = Vec<ExceptionView>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn exceptions(
    State(c): State<Coordinator>,
    Caller(access): Caller,
    Path(id): Path<u64>,
) -> Result<Json<Vec<ExceptionView>>, ApiError> {
    Ok(Json(c.exceptions(&access, id)?))
}

/// The workers: slots, memory pools, and the caller's jobs on each.
#[utoipa::path(get, path = "/api/v1/workers", tag = "cluster",
    responses((status = 200, body = Vec<WorkerView>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn workers(State(c): State<Coordinator>, Caller(access): Caller) -> Json<Vec<WorkerView>> {
    Json(c.workers(&access))
}

/// The coordinator's metrics in the Prometheus text format: workers, slots, jobs by
/// state (each worker serves its jobs' metrics on its own `/metrics`).
#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(c): State<Coordinator>) -> impl IntoResponse {
    let overview = c.overview(&Access::Admin);
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, values: &[(String, u32)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in values {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    gauge(
        "eddy_cluster_workers",
        "Workers registered with the coordinator.",
        &[(String::new(), overview.workers)],
    );
    let used = overview.slots_total - overview.slots_free;
    gauge(
        "eddy_cluster_slots",
        "Slots the workers offer, by whether a job holds them.",
        &[
            ("{state=\"free\"}".into(), overview.slots_free),
            ("{state=\"used\"}".into(), used),
        ],
    );
    let jobs: Vec<(String, u32)> = overview
        .jobs
        .iter()
        .map(|(state, n)| (format!("{{state=\"{state}\"}}"), *n))
        .collect();
    gauge("eddy_cluster_jobs", "Jobs by state.", &jobs);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
