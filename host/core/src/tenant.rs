//! Tenants: who a job runs for, the quotas that bound it, and the data root that keeps
//! one tenant's jobs away from another's inputs, outputs and (later) state.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::job::memory::ByteSize;
use crate::job::{Job, SinkSpec, SourceSpec};

/// One tenant's quotas.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Quotas {
    /// Every file the tenant's jobs read or write must be inside this directory.
    pub root: Option<PathBuf>,
    /// Most plugin instances (subtasks of plugin steps) of one job.
    pub max_instances: Option<u32>,
    /// Largest process memory budget of one job.
    pub max_memory: Option<ByteSize>,
    /// Longest CPU deadline per plugin call.
    pub max_cpu_deadline_ms: Option<u64>,
    /// Most fuel per plugin call; when set, every plugin step must meter fuel.
    pub max_fuel: Option<u64>,
    /// Largest output one plugin call may return.
    pub max_output: Option<ByteSize>,
    /// Largest WASM stack a job may ask for.
    pub max_stack: Option<ByteSize>,
    /// Most table elements one plugin instance may hold.
    pub max_table_elements: Option<u64>,
    /// Most slots the tenant's jobs hold at once in a cluster (a job that would go
    /// beyond waits).
    pub max_slots: Option<u32>,
    /// Whether plugins may be granted network addresses and jobs may use Kafka
    /// connectors (default: no).
    #[serde(default)]
    pub network: bool,
    /// Most jobs the tenant has in a cluster that have not ended (a submission beyond
    /// is refused).
    pub max_jobs: Option<u32>,
    /// The SHA-256 (hex) of each API token that acts for the tenant: the file never
    /// holds a token itself.
    #[serde(default)]
    pub tokens: Vec<String>,
}

/// The tenants file: `tenants: { NAME: QUOTAS, … }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Tenants {
    /// Quotas by tenant name.
    pub tenants: BTreeMap<String, Quotas>,
    /// The SHA-256 (hex) of each API token that sees and acts on the whole cluster.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Whether jobs of tenants not listed run (only without a tenants file).
    #[serde(skip)]
    pub open: bool,
}

/// Who a control-plane request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The whole cluster.
    Admin,
    /// One tenant's jobs only.
    Tenant(String),
}

impl Access {
    /// Whether this access sees and touches what tenant `tenant` owns.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Access::Admin => true,
            Access::Tenant(mine) => mine == tenant,
        }
    }
}

/// A job is not allowed to run as written for its tenant.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The tenants file cannot be read or parsed.
    #[error("tenants file {file}: {message}")]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The job's tenant is not listed.
    #[error("job {job:?}: unknown tenant {tenant:?}")]
    Unknown {
        /// The job.
        job: String,
        /// Its tenant.
        tenant: String,
    },
    /// The job asks for more than the tenant may have.
    #[error("job {job:?}: tenant {tenant:?} does not allow {what}")]
    Quota {
        /// The job.
        job: String,
        /// Its tenant.
        tenant: String,
        /// The quota at stake, with the asked and allowed amounts.
        what: String,
    },
}

impl Tenants {
    /// Local runs without a tenants file: every tenant, no quota beyond the job's own,
    /// and no API token needed.
    pub fn local() -> Tenants {
        Tenants {
            tenants: BTreeMap::new(),
            admin_tokens: Vec::new(),
            open: true,
        }
    }

    /// Who a control-plane request with bearer `token` acts for: `None` when the
    /// token is missing or unknown. Without a tenants file the cluster is open: every
    /// request acts as the administrator.
    pub fn authenticate(&self, token: Option<&str>) -> Option<Access> {
        if self.open {
            return Some(Access::Admin);
        }
        let hash = crate::sha256(token?.as_bytes());
        if self.admin_tokens.contains(&hash) {
            return Some(Access::Admin);
        }
        self.tenants
            .iter()
            .find(|(_, q)| q.tokens.contains(&hash))
            .map(|(name, _)| Access::Tenant(name.clone()))
    }

    /// Reads a tenants file.
    pub fn load(file: &Path) -> Result<Tenants, TenantError> {
        let err = |message: String| TenantError::File {
            file: file.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
        let mut tenants: Tenants = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
        let hashes = tenants.admin_tokens.iter().map(|h| ("admin-tokens", h));
        let hashes = hashes.chain(
            tenants
                .tenants
                .iter()
                .flat_map(|(name, q)| q.tokens.iter().map(move |h| (name.as_str(), h))),
        );
        for (owner, hash) in hashes {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(format!(
                    "{owner}: {hash:?} is not a SHA-256 in hex: the file keeps the hash of a \
                     token (`eddy token` makes one), never the token"
                )));
            }
        }
        let base = file.parent().unwrap_or(Path::new("."));
        for quotas in tenants.tenants.values_mut() {
            if let Some(root) = &mut quotas.root {
                *root = normalize(&base.join(&*root));
            }
        }
        Ok(tenants)
    }

    /// Checks `job` against its tenant's quotas and data root.
    pub fn admit(&self, job: &Job) -> Result<(), TenantError> {
        let Some(quotas) = self.tenants.get(&job.tenant) else {
            if self.open {
                return Ok(());
            }
            return Err(TenantError::Unknown {
                job: job.name.clone(),
                tenant: job.tenant.clone(),
            });
        };
        let deny = |what: String| TenantError::Quota {
            job: job.name.clone(),
            tenant: job.tenant.clone(),
            what,
        };
        let plugins = job.plugins();
        let instances: u32 = plugins.iter().map(|p| p.step.parallelism).sum::<u32>()
            + job.connectors().iter().map(|c| c.instances).sum::<u32>();
        if let Some(max) = quotas.max_instances
            && instances > max
        {
            return Err(deny(format!(
                "{instances} plugin instances (max-instances {max})"
            )));
        }
        if let Some(max) = quotas.max_stack
            && job.max_stack > max
        {
            return Err(deny(format!(
                "a WASM stack of {} (max-stack {max})",
                job.max_stack
            )));
        }
        if let Some(max) = quotas.max_memory
            && job.memory.process > max
        {
            return Err(deny(format!(
                "a memory budget of {} (max-memory {max})",
                job.memory.process
            )));
        }
        for step in plugins.iter().map(|p| p.step) {
            let sandbox = &step.sandbox;
            if let Some(max) = quotas.max_cpu_deadline_ms
                && sandbox.cpu_deadline.as_millis() > u128::from(max)
            {
                return Err(deny(format!(
                    "step {:?} a CPU deadline of {} ms (max-cpu-deadline-ms {max})",
                    step.name,
                    sandbox.cpu_deadline.as_millis()
                )));
            }
            if let Some(max) = quotas.max_fuel
                && sandbox.fuel.is_none_or(|f| f > max)
            {
                return Err(deny(format!(
                    "step {:?} {} fuel per call (max-fuel {max}: set sandbox.fuel)",
                    step.name,
                    sandbox.fuel.map_or("unmetered".into(), |f| f.to_string())
                )));
            }
            if let Some(max) = quotas.max_output
                && sandbox.max_output > max
            {
                return Err(deny(format!(
                    "step {:?} a max-output of {} (max-output {max})",
                    step.name, sandbox.max_output
                )));
            }
            if let Some(max) = quotas.max_table_elements
                && sandbox.max_table_elements > max
            {
                return Err(deny(format!(
                    "step {:?} {} table elements (max-table-elements {max})",
                    step.name, sandbox.max_table_elements
                )));
            }
            if !quotas.network && !sandbox.network.is_empty() {
                return Err(deny(format!("step {:?} network access", step.name)));
            }
        }
        let kafka_sources = job
            .sources
            .iter()
            .filter(|(_, s)| matches!(s, SourceSpec::Kafka(_)));
        let kafka_sinks = job
            .sinks
            .iter()
            .chain(&job.side_sinks)
            .chain(&job.dead_letter)
            .filter(|(_, s)| matches!(s, SinkSpec::Kafka(_)));
        let mut kafka = kafka_sources
            .map(|(n, _)| n)
            .chain(kafka_sinks.map(|(n, _)| n));
        if !quotas.network
            && let Some(name) = kafka.next()
        {
            return Err(deny(format!("Kafka connector {name:?} network access")));
        }
        if let Some(root) = &quotas.root {
            let root = resolve(root);
            for path in data_paths(job) {
                let path = resolve(&path);
                if !path.starts_with(&root) {
                    return Err(deny(format!(
                        "access to {} outside its root {}",
                        path.display(),
                        root.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Every file or directory a job reads or writes data in.
fn data_paths(job: &Job) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (_, source) in &job.sources {
        if let SourceSpec::File { path, .. } = source {
            paths.push(path.clone());
        }
    }
    for (_, sink) in job
        .sinks
        .iter()
        .chain(&job.side_sinks)
        .chain(&job.dead_letter)
    {
        match sink {
            SinkSpec::File { path, .. } => paths.push(path.clone()),
            SinkSpec::Digest { path, rows, .. } => {
                paths.extend([Some(path), rows.as_ref()].into_iter().flatten().cloned())
            }
            _ => {}
        }
    }
    for step in &job.steps {
        paths.extend(step.sandbox.dirs.iter().map(|d| d.host.clone()));
    }
    for c in job.connectors() {
        paths.extend(c.sandbox.dirs.iter().map(|d| d.host.clone()));
    }
    paths.extend(job.checkpoints.as_ref().and_then(|c| c.dir.clone()));
    if job.state.backend != crate::job::state::BackendKind::Memory {
        paths.extend(job.state.dir.clone());
    }
    paths
}

/// `path` with symbolic links resolved as far as it exists, and the rest normalized,
/// so that neither `root/../other` nor a link inside the root escapes it.
fn resolve(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path,
        }
    }
    let mut resolved = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_owned());
    resolved.extend(rest.iter().rev());
    resolved
}

/// `path` made absolute with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> Job {
        Job::parse(text, Path::new("/srv/acme/jobs/job.yaml"), None).unwrap()
    }

    fn tenants() -> Tenants {
        let mut t = Tenants::default();
        t.tenants.insert(
            "acme".into(),
            Quotas {
                root: Some("/srv/acme".into()),
                max_memory: Some(ByteSize(512 << 20)),
                ..Quotas::default()
            },
        );
        t
    }

    #[test]
    fn tokens_are_known_by_their_hash_and_act_for_their_tenant() {
        let dir = std::env::temp_dir().join(format!("eddy-tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tenants.yaml");
        let (admin, acme) = (crate::sha256(b"root-secret"), crate::sha256(b"acme-secret"));
        std::fs::write(
            &file,
            format!(
                "admin-tokens: [{admin}]\ntenants:\n  acme:\n    tokens: [{acme}]\n  beta: {{}}\n"
            ),
        )
        .unwrap();
        let tenants = Tenants::load(&file).unwrap();
        assert_eq!(
            tenants.authenticate(Some("root-secret")),
            Some(Access::Admin)
        );
        let access = tenants.authenticate(Some("acme-secret")).unwrap();
        assert_eq!(access, Access::Tenant("acme".into()));
        assert!(access.sees("acme") && !access.sees("beta"));
        assert_eq!(
            tenants.authenticate(Some(&acme)),
            None,
            "the hash is no token"
        );
        assert_eq!(tenants.authenticate(None), None);
        assert_eq!(Tenants::local().authenticate(None), Some(Access::Admin));

        // A token written in clear is refused, naming where.
        std::fs::write(&file, "tenants:\n  acme:\n    tokens: [acme-secret]\n").unwrap();
        let err = Tenants::load(&file).unwrap_err().to_string();
        assert!(
            err.contains("acme: \"acme-secret\" is not a SHA-256"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let inside = job(
            "name: a\ntenant: acme\nmemory: { process: 256mb }\nsources:\n  - type: file\n    path: ../in.jsonl\nsinks:\n  - type: file\n    path: out.jsonl\n",
        );
        tenants().admit(&inside).unwrap();
        let escape = job(
            "name: a\ntenant: acme\nmemory: { process: 256mb }\nsources:\n  - type: file\n    path: ../../beta/out.jsonl\nsinks:\n  - type: stdout\n",
        );
        let err = tenants().admit(&escape).unwrap_err().to_string();
        assert!(
            err.contains("/srv/beta/out.jsonl outside its root /srv/acme"),
            "{err}"
        );
    }

    #[test]
    fn kafka_needs_network() {
        let kafka = job(
            "name: a\ntenant: acme\nmemory: { process: 256mb }\nsources:\n  - type: kafka\n    bootstrap: b:9092\n    topics: [t]\nsinks:\n  - type: stdout\n",
        );
        let err = tenants().admit(&kafka).unwrap_err().to_string();
        assert!(
            err.contains("Kafka connector \"source-0\" network access"),
            "{err}"
        );
    }

    #[test]
    fn quotas_and_unknown_tenants_are_refused() {
        let big =
            job("name: a\ntenant: acme\nsources:\n  - type: stdin\nsinks:\n  - type: stdout\n");
        let err = tenants().admit(&big).unwrap_err().to_string();
        assert!(
            err.contains("memory budget of 1.0 GiB (max-memory 512.0 MiB)"),
            "{err}"
        );
        let stranger =
            job("name: a\ntenant: zed\nsources:\n  - type: stdin\nsinks:\n  - type: stdout\n");
        assert!(matches!(
            tenants().admit(&stranger),
            Err(TenantError::Unknown { .. })
        ));
        Tenants::local().admit(&stranger).unwrap();
    }
}
