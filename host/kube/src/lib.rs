//! Eddy on Kubernetes, kept out of the engine and the cluster crates so that they build
//! without a Kubernetes client: the coordinators' high-availability store in a
//! ConfigMap ([`KubeStore`]) and native mode's worker pods ([`WorkerPods`]).

mod client;
mod ha;
mod pods;

pub use client::{Kube, KubeError};
pub use ha::KubeStore;
pub use pods::{PodTemplate, WorkerPods};
