//! What an instance knows about its place in the job: params, names, subtask.

use serde::de::DeserializeOwned;

use crate::Error;

/// The configuration of one plugin instance.
#[derive(Clone, Debug)]
pub struct Context {
    params: serde_json::Map<String, serde_json::Value>,
    job: String,
    operator: String,
    subtask: u32,
    parallelism: u32,
}

impl Context {
    /// A context built by hand, for running an operator natively (tests, benchmarks).
    pub fn new(params: serde_json::Value, job: &str, operator: &str) -> Context {
        let params = match params {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        Context {
            params,
            job: job.to_owned(),
            operator: operator.to_owned(),
            subtask: 0,
            parallelism: 1,
        }
    }

    /// The same context for subtask `subtask` of `parallelism` (a host running the
    /// operator natively sets it).
    pub fn at(mut self, subtask: u32, parallelism: u32) -> Context {
        self.subtask = subtask;
        self.parallelism = parallelism;
        self
    }

    /// The context the host gives this instance (only inside a component).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_host() -> Result<Context, Error> {
        use crate::__private::base::eddy::plugin::config;
        let params: serde_json::Value = serde_json::from_str(&config::params())
            .map_err(|e| Error::msg(format_args!("host passed malformed params: {e}")))?;
        let mut ctx = Context::new(params, &config::job_name(), &config::operator_name());
        ctx.subtask = config::subtask_index();
        ctx.parallelism = config::parallelism();
        Ok(ctx)
    }

    /// The parameter `name`, deserialized, or `None` when the step does not set it.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        self.params
            .get(name)
            .map(|v| T::deserialize(v).map_err(|e| Error::msg(format_args!("param `{name}`: {e}"))))
            .transpose()
    }

    /// The parameter `name`, which the step must set.
    pub fn require<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        self.param(name)?
            .ok_or_else(|| Error::msg(format_args!("param `{name}` is required")))
    }

    /// All parameters deserialized into one struct (use serde attributes for defaults).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(serde_json::Value::Object(self.params.clone()))
            .map_err(|e| Error::msg(format_args!("params: {e}")))
    }

    /// Name of the running job.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Name of the step this instance runs.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// Index of this parallel subtask.
    pub fn subtask(&self) -> u32 {
        self.subtask
    }

    /// Number of parallel subtasks of the step.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }
}
