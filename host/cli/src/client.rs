//! The cluster's client commands (`eddy submit`, `list`, `status`, `cancel`,
//! `savepoint`, `checkpoints`): calls of the coordinator's REST API, printed as tables
//! for people or as JSON for scripts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eddy_cluster::api::{CheckpointView, JobDetail, JobView, SavepointView};
use eddy_cluster::{Resume, Submission};
use eddy_core::Job;
use eddy_core::job::memory::ByteSize;
use serde::de::DeserializeOwned;
use ureq::unversioned::multipart::{Form, Part};

/// Where the cluster is and who asks.
#[derive(clap::Args, Clone, Debug)]
pub struct Remote {
    /// The coordinator's REST address.
    #[arg(long, env = "EDDY_CLUSTER", default_value = "http://127.0.0.1:8081")]
    pub cluster: String,
    /// The API token (a tenant's, or an administrator's); an open cluster needs none.
    #[arg(long, env = "EDDY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `path` made absolute; the empty path (the directory of a bare file name) is the
/// current directory.
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::path::absolute(path)
}

/// Reads job file `file` and the components it names (under `plugin_dir`, or the
/// job's), to start from `resume`.
pub fn submission(file: &Path, plugin_dir: Option<&Path>, resume: Resume) -> Result<Submission> {
    let yaml = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read job file {}", file.display()))?;
    let job = Job::parse(&yaml, file, plugin_dir)?;
    let root = absolute(&job.plugin_dir)?;
    let paths = job
        .plugins()
        .into_iter()
        .map(|p| p.path.to_owned())
        .chain(job.connectors().into_iter().map(|c| c.plugin.to_owned()));
    let mut components = Vec::new();
    for path in paths {
        let path = absolute(&path)?;
        let relative = path.strip_prefix(&root).map_err(|_| {
            anyhow::anyhow!(
                "component {} is outside the plugin directory {}",
                path.display(),
                root.display()
            )
        })?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        components.push((relative.to_string_lossy().into_owned(), bytes));
    }
    let name = file
        .file_name()
        .map_or_else(|| "job.yaml".into(), |n| n.to_string_lossy().into_owned());
    Ok(Submission {
        name,
        yaml,
        components,
        resume,
        base: None,
    })
}

/// A client of one cluster's REST API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the cluster `remote` names.
    pub fn new(remote: &Remote) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            base: remote.cluster.trim_end_matches('/').to_owned(),
            token: remote.token.clone(),
            agent,
        }
    }

    /// Reads an answer: the value, or the API's error message.
    fn answer<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response = response
            .map_err(|e| anyhow::anyhow!("cannot reach the cluster at {}: {e}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("reading the cluster's answer")?;
        if !status.is_success() {
            let error: Option<String> = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            bail!("{}", error.unwrap_or_else(|| format!("{status}: {text}")));
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    /// `request` carrying the token, if there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let request = self.authorized(self.agent.get(format!("{}{path}", self.base)));
        self.answer(request.call())
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T> {
        let request = self.authorized(self.agent.post(format!("{}{path}", self.base)));
        self.answer(request.send_json(body))
    }

    /// Submits `submission`; its id.
    pub fn submit(&self, submission: &Submission) -> Result<u64> {
        let job = Part::bytes(submission.yaml.as_bytes()).file_name(&submission.name);
        let mut form = Form::new().part("job", job);
        for (path, bytes) in &submission.components {
            form = form.part("component", Part::bytes(bytes).file_name(path));
        }
        let restore = match &submission.resume {
            Resume::Beginning => None,
            Resume::Latest => Some("latest".to_owned()),
            Resume::From(dir) => Some(dir.display().to_string()),
        };
        if let Some(restore) = &restore {
            form = form.text("restore", restore);
        }
        let request = self.authorized(self.agent.post(format!("{}/api/v1/jobs", self.base)));
        let submitted: serde_json::Value = self.answer(request.send(form))?;
        submitted["id"].as_u64().context("the answer has no job id")
    }

    /// The jobs the token sees.
    pub fn jobs(&self) -> Result<Vec<JobView>> {
        self.get("/api/v1/jobs")
    }

    /// Job `id` with its graph.
    pub fn job(&self, id: u64) -> Result<JobDetail> {
        self.get(&format!("/api/v1/jobs/{id}"))
    }

    /// Cancels job `id`.
    pub fn cancel(&self, id: u64) -> Result<JobView> {
        self.post(&format!("/api/v1/jobs/{id}/cancel"), serde_json::json!({}))
    }

    /// Takes a savepoint of job `id` (stopping it after, if `stop`) and waits for it,
    /// at most `wait`; its directory.
    pub fn savepoint(&self, id: u64, stop: bool, wait: Duration) -> Result<SavepointView> {
        // A retry of the request (a lost answer) gets the same savepoint.
        let request_id = format!("{}-{}", std::process::id(), nanos());
        let body = serde_json::json!({ "stop": stop, "request-id": request_id });
        let path = format!("/api/v1/jobs/{id}/savepoints");
        let asked: SavepointView = self
            .post(&path, body.clone())
            .or_else(|_| self.post(&path, body))?;
        let deadline = Instant::now() + wait;
        loop {
            let now: SavepointView = self.get(&format!("{path}/{}", asked.trigger))?;
            match now.state.as_str() {
                "completed" => return Ok(now),
                "failed" => bail!(
                    "savepoint failed: {}",
                    now.error.unwrap_or_else(|| "no reason given".into())
                ),
                _ if Instant::now() > deadline => bail!(
                    "savepoint {} of job {id} not completed within {wait:?}; poll {path}/{}",
                    asked.trigger,
                    asked.trigger
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Job `id`'s latest checkpoints and savepoints.
    pub fn checkpoints(&self, id: u64) -> Result<Vec<CheckpointView>> {
        self.get(&format!("/api/v1/jobs/{id}/checkpoints"))
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Prints `value` as JSON when asked, else as `table` makes it.
pub fn print<T: serde::Serialize>(json: bool, value: &T, table: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|e| e.to_string())
        );
    } else {
        print!("{}", table(value));
    }
}

/// The job list as a table.
pub fn jobs_table(jobs: &Vec<JobView>) -> String {
    let mut out = format!(
        "{:>4}  {:<20} {:<12} {:<11} {:>7}  {}\n",
        "ID", "NAME", "TENANT", "STATE", "ATTEMPT", "WORKERS / REASON"
    );
    for job in jobs {
        out += &format!(
            "{:>4}  {:<20} {:<12} {:<11} {:>7}  {}\n",
            job.id,
            job.name,
            job.tenant,
            job.state,
            job.attempt,
            job.reason.clone().unwrap_or_else(|| job.workers.join(","))
        );
    }
    out
}

/// A job's status: its state, then each vertex's rates.
pub fn status_table(job: &JobDetail) -> String {
    let j = &job.job;
    let mut out = format!(
        "job {} {:?} (tenant {}): {}, attempt {}, {} restart(s){}\n",
        j.id,
        j.name,
        j.tenant,
        j.state,
        j.attempt,
        j.restarts,
        j.reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    out += &format!(
        "  {:<20} {:>3}  {:>12} {:>12}  {:>5}  {:>5}  {}\n",
        "VERTEX", "P", "IN/S", "OUT/S", "BUSY", "BP", "WATERMARK"
    );
    for v in &job.graph.vertices {
        out += &format!(
            "  {:<20} {:>3}  {:>12.1} {:>12.1}  {:>4.0}%  {:>4.0}%  {}\n",
            v.name,
            v.parallelism,
            v.records_in_per_s,
            v.records_out_per_s,
            v.busy * 100.0,
            v.backpressured * 100.0,
            v.watermark_ms.map_or("-".into(), |w| w.to_string())
        );
    }
    if let Some(savepoint) = &job.stopped_with {
        out += &format!("  stopped with savepoint {savepoint}\n");
    }
    out
}

/// The checkpoint history as a table, newest last.
pub fn checkpoints_table(checkpoints: &Vec<CheckpointView>) -> String {
    let mut out = format!(
        "{:>6}  {:<10} {:<10} {:>10} {:>9}  {}\n",
        "ID", "KIND", "STATE", "SIZE", "DURATION", "TRIGGERED (ms since epoch)"
    );
    for c in checkpoints {
        out += &format!(
            "{:>6}  {:<10} {:<10} {:>10} {:>7}ms  {}\n",
            c.id,
            c.kind,
            c.state,
            ByteSize(c.size_bytes as usize).to_string(),
            c.duration_ms,
            c.trigger_ms
        );
    }
    out
}
