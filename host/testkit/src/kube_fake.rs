//! A FAKE Kubernetes API server, in-tree, because no real one runs on these machines:
//! the HTTP subset Eddy uses, with the semantics the real one has for it. Objects of
//! any namespaced core resource (ConfigMaps, Pods) are kept as JSON; get, list,
//! create (409 `AlreadyExists` if present), replace (409 `Conflict` when the body's
//! `metadata.resourceVersion` is not the stored one: optimistic concurrency) and
//! delete, every write bumping one cluster-wide resource version. Errors are `Status`
//! objects, as the real server sends them. Lists filter by label equality
//! (`labelSelector=k=v`). No authentication, no watch, no kubelet: no pod ever runs
//! unless the test itself starts what a pod names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

/// Objects by resource, namespace and name.
#[derive(Default)]
struct Objects {
    by_key: BTreeMap<(String, String, String), Value>,
    version: u64,
}

type Shared = Arc<Mutex<Objects>>;
type Answer = (StatusCode, Json<Value>);

/// The fake API server, serving on loopback until dropped.
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    objects: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Answer {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, Json(body))
}

fn lock(objects: &Shared) -> std::sync::MutexGuard<'_, Objects> {
    objects.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read(State(objects): State<Shared>, Path(key): Path<(String, String, String)>) -> Answer {
    match lock(&objects).by_key.get(&key) {
        Some(object) => (StatusCode::OK, Json(object.clone())),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} {:?} not found", key.1, key.2),
        ),
    }
}

/// Whether `object`'s labels match `selector` (`k=v,k2=v2`; equality only).
fn selected(object: &Value, selector: Option<&String>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            object["metadata"]["labels"][key].as_str() == Some(value)
        })
    })
}

async fn read_grouped(
    objects: State<Shared>,
    Path((_, _, ns, resource, name)): Path<(String, String, String, String, String)>,
) -> Answer {
    read(objects, Path((ns, resource, name))).await
}

async fn list(
    State(objects): State<Shared>,
    Path((ns, resource)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let objects = lock(&objects);
    let selector = query.get("labelSelector");
    let items: Vec<Value> = objects
        .by_key
        .iter()
        .filter(|((n, r, _), v)| *n == ns && *r == resource && selected(v, selector))
        .map(|(_, v)| v.clone())
        .collect();
    let version = objects.version.to_string();
    let body = json!({ "kind": "List", "apiVersion": "v1", "metadata": { "resourceVersion": version }, "items": items });
    (StatusCode::OK, Json(body))
}

/// Stamps `object` as stored now: its namespace, name and a new resource version.
fn stamp(objects: &mut Objects, ns: &str, name: &str, mut object: Value) -> Value {
    objects.version += 1;
    let meta = &mut object["metadata"];
    meta["namespace"] = json!(ns);
    meta["name"] = json!(name);
    meta["resourceVersion"] = json!(objects.version.to_string());
    if meta["uid"].is_null() {
        meta["uid"] = json!(format!("fake-{}", objects.version));
    }
    object
}

async fn create(
    State(objects): State<Shared>,
    Path((ns, resource)): Path<(String, String)>,
    Json(object): Json<Value>,
) -> Answer {
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name is required".into(),
        );
    };
    let mut objects = lock(&objects);
    let key = (ns.clone(), resource, name.clone());
    if objects.by_key.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} {name:?} already exists", key.1),
        );
    }
    let stored = stamp(&mut objects, &ns, &name, object);
    objects.by_key.insert(key, stored.clone());
    (StatusCode::CREATED, Json(stored))
}

async fn replace(
    State(objects): State<Shared>,
    Path(key): Path<(String, String, String)>,
    Json(object): Json<Value>,
) -> Answer {
    let mut objects = lock(&objects);
    let Some(current) = objects.by_key.get(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} {:?} not found", key.1, key.2),
        );
    };
    let asked = &object["metadata"]["resourceVersion"];
    if !asked.is_null() && *asked != current["metadata"]["resourceVersion"] {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                key.1, key.2
            ),
        );
    }
    let stored = stamp(&mut objects, &key.0, &key.2, object);
    objects.by_key.insert(key, stored.clone());
    (StatusCode::OK, Json(stored))
}

async fn delete(
    State(objects): State<Shared>,
    Path(key): Path<(String, String, String)>,
) -> Answer {
    let mut objects = lock(&objects);
    match objects.by_key.remove(&key) {
        Some(object) => {
            objects.version += 1;
            (StatusCode::OK, Json(object))
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} {:?} not found", key.1, key.2),
        ),
    }
}

impl FakeApiServer {
    /// Starts the fake on a free loopback port.
    pub fn start() -> FakeApiServer {
        let objects: Shared = Arc::default();
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/{resource}", get(list).post(create))
            .route(
                "/api/v1/namespaces/{ns}/{resource}/{name}",
                get(read).put(replace).delete(delete),
            )
            // Objects of named API groups (apps/v1 Deployments), by resource alone.
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{resource}/{name}",
                get(read_grouped),
            )
            .with_state(objects.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr: SocketAddr = listener.local_addr().expect("its address");
        listener.set_nonblocking(true).expect("non-blocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FakeApiServer {
            url: format!("http://{addr}"),
            objects,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stores `object` as `resource` `name` in namespace `ns` (what a test sets up).
    pub fn put(&self, ns: &str, resource: &str, name: &str, object: Value) {
        let mut objects = lock(&self.objects);
        let stored = stamp(&mut objects, ns, name, object);
        let key = (ns.to_owned(), resource.to_owned(), name.to_owned());
        objects.by_key.insert(key, stored);
    }

    /// Every object of `resource` in namespace `ns`, by name.
    pub fn objects(&self, ns: &str, resource: &str) -> BTreeMap<String, Value> {
        lock(&self.objects)
            .by_key
            .iter()
            .filter(|((n, r, _), _)| n == ns && r == resource)
            .map(|((_, _, name), v)| (name.clone(), v.clone()))
            .collect()
    }

    /// Object `name` of `resource` (`configmaps`, `pods`) in namespace `ns`.
    pub fn object(&self, ns: &str, resource: &str, name: &str) -> Option<Value> {
        let key = (ns.to_owned(), resource.to_owned(), name.to_owned());
        lock(&self.objects).by_key.get(&key).cloned()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
