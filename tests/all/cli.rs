//! The command line beyond running cases: `validate`, summaries, and what a failed run
//! leaves behind.

use std::path::Path;

use eddy_testkit::repo_root;

use crate::support::{Scratch, eddy, plugin_dir, text};

#[test]
fn validate_accepts_the_examples() {
    for job in ["plugins/jobs/orders.yaml", "plugins/word-split/job.yaml"] {
        let job = repo_root().join(job);
        let out = eddy(
            &[
                "validate",
                "--plugin-dir",
                plugin_dir(),
                job.to_str().expect("utf-8"),
            ],
            &repo_root(),
        );
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("is valid"), "{stderr}");
    }
}

#[test]
fn validate_checks_the_world_without_running() {
    let scratch = Scratch::with_case(
        "validate_wrong_world",
        &repo_root().join("tests/cases/wrong-world"),
    );
    let job = scratch.0.join("job.yaml");
    let out = eddy(&["validate", job.to_str().expect("utf-8")], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty(), "validate must not run the job: {stdout}");
    assert!(
        stderr.contains("does not implement the `map-plugin` world"),
        "{stderr}"
    );
}

#[test]
fn a_failed_run_publishes_no_output_file() {
    let scratch = Scratch::with_case(
        "failed_run_no_file",
        &repo_root().join("tests/cases/plugin-trap"),
    );
    let job = "name: trap-to-file\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - name: hostile\n    map: hostile.wasm\n    params: { mode: panic }\nsinks:\n  - type: file\n    path: out.jsonl\n";
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let out = eddy(&["run", "job.yaml"], &scratch.0);
    assert!(!out.status.success());
    assert!(
        !scratch.0.join("out.jsonl").exists(),
        "a failed run published its output"
    );
}

#[test]
fn run_prints_a_summary_per_stage() {
    let job = repo_root().join("plugins/jobs/orders.yaml");
    let out = eddy(
        &[
            "run",
            "--plugin-dir",
            plugin_dir(),
            job.to_str().expect("utf-8"),
        ],
        Path::new(env!("CARGO_TARGET_TMPDIR")),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 16);
    for stage in [
        "source orders",
        "step   big-orders",
        "step   to-eur",
        "sink   stdout",
    ] {
        assert!(stderr.contains(stage), "summary lacks {stage:?}:\n{stderr}");
    }
    assert!(stderr.contains("in         20  out         16"), "{stderr}");
}
