//! The HTTP endpoint of an `eddy run` process: one server for all its jobs, listening on
//! every address the jobs' `metrics.prometheus` name, with the metrics of each such job
//! on `/metrics`. Each attempt of a job publishes its own metrics, replacing the last.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use eddy_core::Job;
use eddy_core::http::{Router, Server};
use eddy_core::metrics::{Exposition, JobMetrics, PATH};

/// The process's HTTP server and what its `/metrics` route exposes.
pub struct Endpoint {
    exposition: Arc<Exposition>,
    server: Option<Server>,
}

impl Endpoint {
    /// Serves on the addresses `jobs` ask for; no server when none asks.
    pub fn start(jobs: &[Job]) -> Result<Endpoint> {
        let mut addrs: Vec<SocketAddr> = jobs.iter().filter_map(|j| j.prometheus).collect();
        addrs.sort();
        addrs.dedup();
        let exposition = Arc::new(Exposition::default());
        let server = if addrs.is_empty() {
            None
        } else {
            Some(Server::bind(&addrs, exposition.mount(Router::default()))?)
        };
        Ok(Endpoint { exposition, server })
    }

    /// Serves `metrics` as `job`'s from now on, if the job asks for Prometheus metrics.
    pub fn publish(&self, job: &Job, metrics: &Arc<JobMetrics>) {
        let (Some(server), Some(addr)) = (&self.server, job.prometheus) else {
            return;
        };
        self.exposition.publish(&job.name, metrics.clone());
        let bound = server.local_addr(addr).unwrap_or(addr);
        tracing::info!(job = %job.name, "Prometheus metrics on http://{bound}{PATH}");
    }
}
