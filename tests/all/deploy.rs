//! The Kubernetes manifests under `deploy/kubernetes`: valid against the API's schema
//! (offline, with `kubernetes-validate`), and their containers' arguments accepted by
//! the `eddy` binary they run.

use std::path::{Path, PathBuf};
use std::process::Command;

use eddy_testkit::repo_root;

use crate::support::{eddy, text};

/// Every manifest, sorted.
fn manifests() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![repo_root().join("deploy/kubernetes")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schema() {
    let manifests = manifests();
    assert!(manifests.len() >= 7, "{manifests:?}");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&manifests)
        .output()
        .expect("cannot run kubernetes-validate (pip install kubernetes-validate)");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
}

/// The `args:` lists of a manifest's containers, with the pod fields they name
/// (`$(POD_IP)`) filled in.
fn container_args(manifest: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(manifest).expect("a manifest");
    let mut lists = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some((at, args)) = &mut current {
            match line.trim_start().strip_prefix("- ") {
                Some(arg) if indent >= *at => {
                    let arg = arg
                        .replace("$(POD_NAME)", "w")
                        .replace("$(POD_IP)", "10.0.0.9");
                    args.push(arg);
                    continue;
                }
                _ => lists.extend(current.take().map(|(_, a)| a)),
            }
        }
        if line.trim() == "args:" {
            current = Some((indent, Vec::new()));
        }
    }
    lists.extend(current.map(|(_, a)| a));
    lists
}

#[test]
fn the_manifests_run_eddy_with_arguments_it_accepts() {
    let mut checked = 0;
    for manifest in manifests() {
        for args in container_args(&manifest) {
            // Parsing stops at --help once every argument before it was accepted.
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.push("--help");
            let out = eddy(&args, &repo_root());
            let (_, stderr) = text(&out);
            assert!(
                out.status.success(),
                "{}: eddy {args:?}: {stderr}",
                manifest.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} containers checked");
}
