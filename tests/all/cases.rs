//! Data-driven cases: a job file and, beside it, `<job>.expected` (the exact stdout of a
//! successful run) or `<job>.expected-error` (lines the error output must contain), and
//! optionally an `expected/` folder of files the run must have written (relative paths).
//! Examples under `plugins/` run in place; cases under `tests/cases/` run in a scratch
//! copy with the example plugins linked beside them.

use std::path::{Path, PathBuf};

use eddy_testkit::repo_root;

use crate::support::{Scratch, eddy, plugin_dir, text};

fn run_case(test: &str, job: &str) {
    let job = repo_root().join(job);
    let stem = job.file_stem().and_then(|s| s.to_str()).expect("job name");
    let expected_out = job.with_file_name(format!("{stem}.expected"));
    let expected_err = job.with_file_name(format!("{stem}.expected-error"));
    let in_place = job.starts_with(repo_root().join("plugins"));
    let scratch;
    let (cwd, job_arg) = if in_place {
        (job.parent().expect("job dir").to_owned(), job.clone())
    } else {
        scratch = Scratch::with_case(test, job.parent().expect("job dir"));
        (
            scratch.0.clone(),
            scratch.0.join(job.file_name().expect("job file")),
        )
    };
    let job_arg = job_arg.to_str().expect("utf-8 path");
    let mut args = vec!["run", "--quiet", job_arg];
    if in_place {
        args.extend(["--plugin-dir", plugin_dir()]);
    }
    let out = eddy(&args, &cwd);
    let (stdout, stderr) = text(&out);
    if expected_err.is_file() {
        assert!(
            !out.status.success(),
            "{test}: expected a failure, got success:\n{stdout}"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{test}: exit code (stderr: {stderr})"
        );
        assert!(
            !stderr.contains("panicked at host"),
            "{test}: the host panicked:\n{stderr}"
        );
        let wanted = std::fs::read_to_string(&expected_err).expect("expected-error file");
        for line in wanted.lines().filter(|l| !l.is_empty()) {
            assert!(
                stderr.contains(line),
                "{test}: error output lacks {line:?}:\n{stderr}"
            );
        }
    } else {
        assert!(out.status.success(), "{test}: failed:\n{stderr}");
        let wanted = std::fs::read_to_string(&expected_out)
            .unwrap_or_else(|_| panic!("{test}: no {}", expected_out.display()));
        assert_eq!(stdout, wanted, "{test}: stdout differs");
        let expected_files = job.with_file_name("expected");
        if expected_files.is_dir() {
            for entry in walk(&expected_files) {
                let rel = entry
                    .strip_prefix(&expected_files)
                    .expect("under expected/");
                let got = std::fs::read_to_string(cwd.join(rel))
                    .unwrap_or_else(|e| panic!("{test}: output {} missing: {e}", rel.display()));
                let want = std::fs::read_to_string(&entry).expect("expected file");
                assert_eq!(got, want, "{test}: {} differs", rel.display());
            }
        }
    }
}

macro_rules! cases {
    ($($name:ident => $job:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_case(stringify!($name), $job);
            }
        )*

        /// Every job file in the repository's examples and cases has a test above.
        #[test]
        fn every_job_file_has_a_case() {
            let listed: Vec<PathBuf> = vec![$(repo_root().join($job)),*];
            let mut missing = Vec::new();
            for dir in ["plugins", "tests/cases"] {
                collect_jobs(&repo_root().join(dir), &mut |job| {
                    if !listed.contains(&job) {
                        missing.push(job);
                    }
                });
            }
            assert!(missing.is_empty(), "job files without a case: {missing:?}");
        }
    };
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn collect_jobs(dir: &Path, found: &mut dyn FnMut(PathBuf)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // The Nexmark queries are checked against a reference in nexmark.rs.
        if path.is_dir()
            && !["src", "dist", "expected", "queries"]
                .iter()
                .any(|d| path.ends_with(d))
        {
            collect_jobs(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found(path);
        }
    }
}

cases! {
    example_orders => "plugins/jobs/orders.yaml",
    example_currency_convert => "plugins/currency-convert/job.yaml",
    example_amount_filter => "plugins/amount-filter/job.yaml",
    example_word_split => "plugins/word-split/job.yaml",
    example_hostile => "plugins/hostile/job.yaml",
    example_hot_items => "plugins/jobs/hot-items.yaml",
    example_sessions => "plugins/jobs/sessions.yaml",
    example_highest_bid => "plugins/jobs/highest-bid.yaml",
    example_new_users => "plugins/jobs/new-users.yaml",
    malformed_yaml => "tests/cases/malformed-yaml/job.yaml",
    unknown_field => "tests/cases/unknown-field/job.yaml",
    missing_plugin => "tests/cases/missing-plugin/job.yaml",
    invalid_component => "tests/cases/invalid-component/job.yaml",
    core_module => "tests/cases/core-module/job.yaml",
    wrong_world => "tests/cases/wrong-world/job.yaml",
    plugin_trap => "tests/cases/plugin-trap/job.yaml",
    plugin_error => "tests/cases/plugin-error/job.yaml",
    plugin_sink_error => "tests/cases/plugin-sink-error/job.yaml",
    malformed_input => "tests/cases/malformed-input/job.yaml",
    broken_contract => "tests/cases/broken-contract/job.yaml",
    bad_offsets => "tests/cases/bad-offsets/job.yaml",
    file_sink => "tests/cases/file-sink/job.yaml",
    memory_bomb => "tests/cases/memory-bomb/job.yaml",
    hostile_loop => "tests/cases/hostile-loop/job.yaml",
    hostile_fuel => "tests/cases/hostile-fuel/job.yaml",
    hostile_recursion => "tests/cases/hostile-recursion/job.yaml",
    hostile_huge_output => "tests/cases/hostile-huge-output/job.yaml",
    hostile_open_file => "tests/cases/hostile-open-file/job.yaml",
    hostile_connect => "tests/cases/hostile-connect/job.yaml",
    window_tumbling => "tests/cases/window-tumbling/job.yaml",
    window_lateness => "tests/cases/window-lateness/job.yaml",
    window_sliding => "tests/cases/window-sliding/job.yaml",
    window_session => "tests/cases/window-session/job.yaml",
    window_global => "tests/cases/window-global/job.yaml",
    window_process => "tests/cases/window-process/job.yaml",
    process_function => "tests/cases/process-function/job.yaml",
    process_dead_letter => "tests/cases/process-dead-letter/job.yaml",
    process_state_exhausted => "tests/cases/process-state-exhausted/job.yaml",
    interval_join => "tests/cases/interval-join/job.yaml",
    window_function => "tests/cases/window-function/job.yaml",
    window_function_session => "tests/cases/window-function-session/job.yaml",
    managed_exhausted => "tests/cases/managed-exhausted/job.yaml",
    wasm_memory_too_small => "tests/cases/wasm-memory-too-small/job.yaml",
}
