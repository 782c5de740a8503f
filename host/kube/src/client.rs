//! A blocking face on kube-rs for the coordinator's threads: one client with a runtime
//! of its own, and the namespace it works in.

use std::time::Duration;

use kube::{Client, Config};

/// Why the Kubernetes API could not be used.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes {server}: {message}")]
pub struct KubeError {
    /// The API server (and namespace).
    pub server: String,
    /// What went wrong.
    pub message: String,
}

/// A client of the API server and the runtime its calls run on.
pub struct Kube {
    runtime: tokio::runtime::Runtime,
    /// The client.
    pub client: Client,
    /// The namespace it works in.
    pub namespace: String,
    /// The API server and namespace, for messages.
    pub server: String,
}

impl Kube {
    /// A client of the API server at `server` (plain HTTP, as `kubectl proxy` serves
    /// it), or, without one, of the configuration the environment gives (in a pod:
    /// its service account and namespace); each call gives up after `timeout`.
    pub fn connect(server: Option<&str>, timeout: Duration) -> Result<Kube, KubeError> {
        let fail = |message: String| KubeError {
            server: server.unwrap_or("(in-cluster)").to_owned(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eddy-kube")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start its runtime: {e}")))?;
        let mut config = match server {
            Some(url) => Config::new(url.parse().map_err(|e| fail(format!("{url}: {e}")))?),
            None => runtime
                .block_on(Config::infer())
                .map_err(|e| fail(e.to_string()))?,
        };
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        config.default_retry = false;
        let namespace = config.default_namespace.clone();
        let server = format!("{} namespace {namespace}", config.cluster_url);
        let client = {
            let _entered = runtime.enter();
            Client::try_from(config).map_err(|e| fail(e.to_string()))?
        };
        Ok(Kube {
            runtime,
            client,
            namespace,
            server,
        })
    }

    /// Runs `call` to its end.
    pub fn block_on<F: std::future::Future>(&self, call: F) -> F::Output {
        self.runtime.block_on(call)
    }
}

/// The HTTP status of an API error (404, 409, …).
pub fn status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
