//! Native mode on Kubernetes: worker pods the coordinator creates through the API
//! server as jobs need slots, and deletes when they are lost or left idle. Each pod
//! runs `eddy worker` registering as its pod name, labelled with the cluster id (so a
//! coordinator that took over finds them), with the resources of its slots, owned by
//! the coordinators' Deployment when one is named (deleting it deletes the workers).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eddy_cluster::provision::Provisioner;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::client::{Kube, KubeError, status};

/// What every worker pod is.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// The cluster id: pods are labelled with it and named after it.
    pub cluster: String,
    /// The image that runs `eddy`.
    pub image: String,
    /// The coordinators' address the workers register with (`host:port`, a Service).
    pub coordinator: String,
    /// Slots per worker.
    pub slots: u32,
    /// Cores per slot (a Kubernetes quantity: `1`, `500m`).
    pub cpu_per_slot: String,
    /// Memory per slot in MiB.
    pub memory_mib_per_slot: u64,
    /// The coordinators' Deployment, which owns the pods.
    pub owner: Option<String>,
}

/// The label every worker pod of a cluster carries.
const CLUSTER_LABEL: &str = "eddy.dev/cluster";

/// Creates and deletes a cluster's worker pods.
pub struct WorkerPods {
    kube: Kube,
    api: Api<Pod>,
    template: PodTemplate,
    owner: Option<OwnerReference>,
    started: AtomicU64,
}

impl WorkerPods {
    /// Worker pods as `template` says, through the API server at `server` (see
    /// [`Kube::connect`]).
    pub fn connect(server: Option<&str>, template: PodTemplate) -> Result<WorkerPods, KubeError> {
        let kube = Kube::connect(server, Duration::from_secs(10))?;
        let owner = match &template.owner {
            Some(name) => {
                let deployments: Api<Deployment> =
                    Api::namespaced(kube.client.clone(), &kube.namespace);
                let found = kube
                    .block_on(deployments.get(name))
                    .map_err(|e| KubeError {
                        server: kube.server.clone(),
                        message: format!("the owner Deployment {name}: {e}"),
                    })?;
                Some(OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: name.clone(),
                    uid: found.metadata.uid.unwrap_or_default(),
                    ..OwnerReference::default()
                })
            }
            None => None,
        };
        Ok(WorkerPods {
            api: Api::namespaced(kube.client.clone(), &kube.namespace),
            kube,
            template,
            owner,
            started: AtomicU64::new(0),
        })
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "eddy".into()),
            ("app.kubernetes.io/component".into(), "worker".into()),
            (CLUSTER_LABEL.into(), self.template.cluster.clone()),
        ])
    }

    /// Pod `name`: one `eddy worker` container.
    fn pod(&self, name: &str) -> Pod {
        let t = &self.template;
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        };
        let env = |name: &str, path: &str| EnvVar {
            name: name.into(),
            value_from: Some(field(path)),
            ..EnvVar::default()
        };
        let memory = format!("{}Mi", t.memory_mib_per_slot * u64::from(t.slots));
        let cpu = match t.cpu_per_slot.strip_suffix('m') {
            Some(milli) => milli
                .parse::<u64>()
                .map(|m| format!("{}m", m * u64::from(t.slots)))
                .unwrap_or_else(|_| t.cpu_per_slot.clone()),
            None => t
                .cpu_per_slot
                .parse::<f64>()
                .map(|c| format!("{}m", (c * 1000.0) as u64 * u64::from(t.slots)))
                .unwrap_or_else(|_| t.cpu_per_slot.clone()),
        };
        let resources = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity(cpu)),
                ("memory".into(), Quantity(memory.clone())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity(memory))])),
            ..ResourceRequirements::default()
        };
        let args = [
            "worker".to_owned(),
            format!("--coordinator={}", t.coordinator),
            format!("--slots={}", t.slots),
            "--id=$(POD_NAME)".into(),
            "--dir=/var/lib/eddy/worker".into(),
            "--data=$(POD_IP):6124".into(),
        ];
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(self.labels()),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                // The coordinator replaces a worker that ended: never the kubelet.
                restart_policy: Some("Never".into()),
                containers: vec![Container {
                    name: "worker".into(),
                    image: Some(t.image.clone()),
                    args: Some(args.to_vec()),
                    env: Some(vec![
                        env("POD_NAME", "metadata.name"),
                        env("POD_IP", "status.podIP"),
                    ]),
                    ports: Some(vec![ContainerPort {
                        name: Some("data".into()),
                        container_port: 6124,
                        ..ContainerPort::default()
                    }]),
                    resources: Some(resources),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }
}

impl Provisioner for WorkerPods {
    fn slots(&self) -> u32 {
        self.template.slots
    }

    fn existing(&self) -> Result<Vec<String>, String> {
        let selector = format!("{CLUSTER_LABEL}={}", self.template.cluster);
        let pods = self
            .kube
            .block_on(self.api.list(&ListParams::default().labels(&selector)))
            .map_err(|e| format!("listing pods {selector}: {e}"))?;
        Ok(pods
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect())
    }

    fn start(&self) -> Result<String, String> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let name = format!("eddy-{}-worker-{stamp}-{n}", self.template.cluster);
        let pod = self.pod(&name);
        self.kube
            .block_on(self.api.create(&PostParams::default(), &pod))
            .map_err(|e| format!("creating pod {name}: {e}"))?;
        Ok(name)
    }

    fn stop(&self, id: &str) -> Result<(), String> {
        match self
            .kube
            .block_on(self.api.delete(id, &DeleteParams::default()))
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(format!("deleting pod {id}: {e}")),
        }
    }
}
