//! The REST API over HTTP against a real coordinator in this process (no worker: jobs
//! wait for slots, which is all these rules need); jobs that run are tested with real
//! processes in the workspace's end-to-end tests.

use std::collections::BTreeSet;
use std::path::PathBuf;

use eddy_cluster::{Coordinator, Options};
use eddy_core::tenant::Tenants;
use eddy_rest::Rest;
use serde_json::Value;
use ureq::unversioned::multipart::{Form, Part};

/// A job of built-in steps only: it needs no component.
const JOB: &str = "name: words\nsources:\n  - type: generator\n    count: 10\nsteps:\n  - name: big\n    where: amount > 10\nsinks:\n  - type: stdout\n";

struct Server {
    base: String,
    agent: ureq::Agent,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A coordinator and its REST server, with an administrator, tenant `acme` (at most
/// one job that has not ended) and tenant `beta`.
fn server(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("eddy-rest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let hash = |t: &str| eddy_core::sha256(t.as_bytes());
    let tenants = format!(
        "admin-tokens: [{}]\ntenants:\n  acme:\n    max-jobs: 1\n    tokens: [{}]\n  beta:\n    tokens: [{}]\n",
        hash("admin-token"),
        hash("acme-token"),
        hash("beta-token")
    );
    std::fs::write(dir.join("tenants.yaml"), tenants).expect("the tenants file");
    let tenants = Tenants::load(&dir.join("tenants.yaml")).expect("tenants");
    let any = "127.0.0.1:0".parse().expect("an address");
    let coordinator =
        Coordinator::start(any, &dir.join("coordinator"), Options::for_tenants(tenants))
            .expect("a coordinator");
    let rest = Rest::start(coordinator, any).expect("the REST server");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Server {
        base: format!("http://{}", rest.local_addr()),
        agent,
        dir,
    }
}

impl Server {
    /// `method` on `path` with `token`: the status and the body (JSON when it is).
    fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            _ => {
                let mut request = self.agent.post(&url);
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.send_empty()
            }
        };
        read(response)
    }

    /// Submits `yaml` as `job.yaml` with `token`.
    fn submit(&self, yaml: &str, token: &str) -> (u16, Value) {
        let form = Form::new().part("job", Part::bytes(yaml.as_bytes()).file_name("job.yaml"));
        let response = self
            .agent
            .post(format!("{}/api/v1/jobs", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .send(form);
        read(response)
    }
}

fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

#[test]
fn the_openapi_document_parses_and_lists_every_route_the_server_has() {
    let server = server("openapi");
    let (status, doc) = server.call("GET", "/openapi.json", None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let served: BTreeSet<String> = [
        "GET /api/v1/overview",
        "GET /api/v1/jobs",
        "POST /api/v1/jobs",
        "GET /api/v1/jobs/{id}",
        "POST /api/v1/jobs/{id}/cancel",
        "GET /api/v1/jobs/{id}/savepoints",
        "POST /api/v1/jobs/{id}/savepoints",
        "GET /api/v1/jobs/{id}/savepoints/{trigger}",
        "GET /api/v1/jobs/{id}/checkpoints",
        "GET /api/v1/jobs/{id}/exceptions",
        "GET /api/v1/workers",
        "GET /metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, served);
    // Every documented route is served: an unknown route is a bare 404 (or 405), a
    // route that is there answers JSON (here: 404 for a job that does not exist).
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "999").replace("{trigger}", "t");
        let (status, body) = server.call(method, &path, Some("admin-token"));
        assert!(status != 405, "{route}: {status}");
        assert!(
            status != 404 || body["error"] == "no job 999",
            "{route}: {status} {body}"
        );
    }
    // Every schema the operations refer to is in the document.
    let text = doc.to_string();
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            text.contains(&format!("#/components/schemas/{name}")),
            "{name}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let (status, page) = server.call("GET", "/api", None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/openapi.json"));
    let (status, page) = server.call("GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/ui/app.js"));
}

#[test]
fn tokens_keep_tenants_apart_and_quotas_refuse_clearly() {
    let server = server("tenants");
    // No token, or one the tenants file does not know: 401.
    let (status, body) = server.call("GET", "/api/v1/jobs", None);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("needs a token"));
    assert_eq!(
        server.call("GET", "/api/v1/jobs", Some("acme-token ")).0,
        200
    );
    assert_eq!(server.call("GET", "/api/v1/jobs", Some("guess")).0, 401);
    // The file keeps hashes: a hash is no token.
    let hash = eddy_core::sha256(b"acme-token");
    assert_eq!(server.call("GET", "/api/v1/overview", Some(&hash)).0, 401);

    // A job that names no tenant runs for the token's.
    let (status, body) = server.submit(JOB, "acme-token");
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    let (_, job) = server.call("GET", &format!("/api/v1/jobs/{id}"), Some("acme-token"));
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["state"], "waiting");
    assert!(
        job["reason"].as_str().unwrap().contains("no worker"),
        "{job}"
    );
    let vertices: Vec<&str> = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vertices.len(), 3, "{job}");
    assert_eq!(job["graph"]["edges"][0]["exchange"], "forward");

    // Acme may have one job that has not ended.
    let (status, body) = server.submit(JOB, "acme-token");
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("max-jobs"),
        "{body}"
    );

    // Beta neither sees nor touches acme's job: its id answers as if it did not exist.
    for (method, path) in [
        ("GET", format!("/api/v1/jobs/{id}")),
        ("POST", format!("/api/v1/jobs/{id}/cancel")),
        ("POST", format!("/api/v1/jobs/{id}/savepoints")),
        ("GET", format!("/api/v1/jobs/{id}/checkpoints")),
        ("GET", format!("/api/v1/jobs/{id}/exceptions")),
        ("GET", format!("/api/v1/jobs/{id}/savepoints")),
    ] {
        let (status, body) = server.call(method, &path, Some("beta-token"));
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"], format!("no job {id}"));
    }
    assert_eq!(
        server.call("GET", "/api/v1/jobs", Some("beta-token")).1,
        Value::Array(vec![])
    );
    let (_, overview) = server.call("GET", "/api/v1/overview", Some("beta-token"));
    assert_eq!(overview["jobs"], serde_json::json!({}));
    // Nor may it submit a job that says it runs for acme.
    let (status, body) = server.submit(&format!("tenant: acme\n{JOB}"), "beta-token");
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"acme\""),
        "{body}"
    );

    // The administrator sees every job.
    let (_, jobs) = server.call("GET", "/api/v1/jobs", Some("admin-token"));
    assert_eq!(jobs.as_array().unwrap().len(), 1);

    // A broken job file is answered with the file, line and column at fault.
    let broken = JOB.replace(
        "  - name: big\n    where: amount > 10\n",
        "  - name: count\n    rolling: count\n",
    );
    let (status, body) = server.submit(&broken, "beta-token");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("job.yaml:6:5: step \"count\""),
        "{body}"
    );

    // A job without checkpoints takes no savepoint; a waiting job cancels at once.
    let path = format!("/api/v1/jobs/{id}");
    let (status, body) = server.call("POST", &format!("{path}/savepoints"), Some("acme-token"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no `checkpoints` section")
    );
    let (status, body) = server.call("POST", &format!("{path}/cancel"), Some("acme-token"));
    assert_eq!((status, &body["state"]), (202, &Value::from("cancelled")));
    let (status, body) = server.call("POST", &format!("{path}/cancel"), Some("acme-token"));
    assert_eq!(status, 409, "{body}");
    let (status, _) = server.call(
        "GET",
        &format!("{path}/savepoints/nope"),
        Some("acme-token"),
    );
    assert_eq!(status, 404);

    // The job that ended frees acme's quota.
    assert_eq!(server.submit(JOB, "acme-token").0, 201);
    let (_, metrics) = server.call("GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("eddy_cluster_jobs{state=\"cancelled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eddy_cluster_jobs{state=\"waiting\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("eddy_cluster_workers 0"), "{metrics}");
}
