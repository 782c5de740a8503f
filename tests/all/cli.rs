//! The command line beyond running cases: `validate`, summaries, and what a failed run
//! leaves behind.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eddy_testkit::repo_root;

use crate::support::{ChildGuard, Scratch, command, eddy, plugin_dir, text};

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

#[test]
fn a_run_whose_stdout_reader_goes_away_ends_quietly() {
    // `eddy run job.yaml | head -1`: far more output than anyone reads, and checkpoints
    // with restarts, which a closed pipe must not set off.
    let scratch = Scratch::new("closed_stdout");
    let job = "name: closed-stdout\ncheckpoints: { interval: 50ms, dir: checkpoints }\nsources:\n  - type: generator\n    name: orders\n    shape: orders\n    count: 200000000\nsinks:\n  - type: stdout\n";
    std::fs::write(scratch.0.join("job.yaml"), job).expect("write job");
    let mut child = ChildGuard(
        command(&["run", "job.yaml"], &scratch.0)
            .env("EDDY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start eddy"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read a line");
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run went on after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{status}: {stderr}");
    for noise in ["panicked", "error", "Broken pipe", "restarting"] {
        assert!(!stderr.contains(noise), "{noise:?} in:\n{stderr}");
    }
    // The summary still goes to stderr, which is open.
    assert!(stderr.contains("finished in"), "{stderr}");
}
