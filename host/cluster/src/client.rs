//! What `eddy submit`, `eddy jobs` and `eddy cancel` do: upload a job's components by
//! content, submit the job, list the jobs, cancel one.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use eddy_core::Job;

use crate::ClusterError;
use crate::wire::{self, JobView, Msg};

fn call(stream: &mut TcpStream, msg: &Msg, payload: &[u8]) -> Result<Msg, ClusterError> {
    match wire::call(stream, msg, payload).map_err(|e| ClusterError::Lost(e.to_string()))? {
        Msg::Error { message } => Err(ClusterError::Refused(message)),
        answer => Ok(answer),
    }
}

/// Submits the job in `file` (its components found under `plugin_dir`) to the
/// coordinator at `addr`; returns the job's id.
pub fn submit(addr: SocketAddr, file: &Path, plugin_dir: &Path) -> Result<u64, ClusterError> {
    let job =
        Job::load(file, Some(plugin_dir)).map_err(|e| ClusterError::Refused(e.to_string()))?;
    let yaml = std::fs::read_to_string(file).map_err(|e| ClusterError::Dir {
        path: file.into(),
        error: e,
    })?;
    let mut stream = TcpStream::connect(addr).map_err(ClusterError::Coordinator)?;
    let mut components = BTreeMap::new();
    let paths = job
        .plugins()
        .into_iter()
        .map(|p| p.path.to_owned())
        .chain(job.connectors().into_iter().map(|c| c.plugin.to_owned()));
    let plugin_dir = std::path::absolute(plugin_dir).map_err(|e| ClusterError::Dir {
        path: plugin_dir.into(),
        error: e,
    })?;
    for path in paths {
        let path = std::path::absolute(&path).map_err(|e| ClusterError::Dir {
            path: path.clone(),
            error: e,
        })?;
        let relative = path.strip_prefix(&plugin_dir).map_err(|_| {
            ClusterError::Refused(format!(
                "component {} is outside the plugin directory {}",
                path.display(),
                plugin_dir.display()
            ))
        })?;
        let bytes = std::fs::read(&path).map_err(|e| ClusterError::Dir {
            path: path.clone(),
            error: e,
        })?;
        let Msg::Uploaded { sha256 } = call(&mut stream, &Msg::Upload, &bytes)? else {
            return Err(ClusterError::Refused(
                "the upload was not acknowledged".into(),
            ));
        };
        components.insert(relative.to_string_lossy().into_owned(), sha256);
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job.yaml".into());
    let submit = Msg::Submit {
        file: name,
        yaml,
        components,
    };
    match call(&mut stream, &submit, &[])? {
        Msg::Submitted { job } => Ok(job),
        other => Err(ClusterError::Refused(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// The jobs the coordinator at `addr` knows.
pub fn jobs(addr: SocketAddr) -> Result<Vec<JobView>, ClusterError> {
    let mut stream = TcpStream::connect(addr).map_err(ClusterError::Coordinator)?;
    match call(&mut stream, &Msg::Jobs, &[])? {
        Msg::JobList { jobs } => Ok(jobs),
        other => Err(ClusterError::Refused(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Cancels job `id` on the coordinator at `addr`.
pub fn cancel(addr: SocketAddr, id: u64) -> Result<(), ClusterError> {
    let mut stream = TcpStream::connect(addr).map_err(ClusterError::Coordinator)?;
    match call(&mut stream, &Msg::CancelJob { job: id }, &[])? {
        Msg::Cancelling { .. } => Ok(()),
        other => Err(ClusterError::Refused(format!(
            "unexpected answer {other:?}"
        ))),
    }
}
