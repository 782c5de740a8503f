//! `eddy new`, `eddy build` and `eddy test`: a new plugin project in every language
//! builds with its language's toolchain, passes its own unit test and runs its job with
//! the expected output.

use std::path::{Path, PathBuf};
use std::process::Command;

use eddy_testkit::repo_root;

use crate::support::{Scratch, command, eddy, text};

/// One build directory for every Rust project the tests create, so they compile the
/// SDK's dependencies once.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("project-target")
}

/// A command in `dir` without the flags meant for the test build (coverage, sanitizers).
fn clean(mut cmd: Command) -> Command {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Creates project `shout-it` in `lang` in a fresh scratch directory.
fn new_project(test: &str, lang: &str) -> (Scratch, PathBuf) {
    new_project_of(test, lang, "map", "shout-it")
}

/// Creates project `name`, a `kind` plugin in `lang`, in a fresh scratch directory.
/// (Rust projects share one build directory: tests running at once need distinct names.)
fn new_project_of(test: &str, lang: &str, kind: &str, name: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(test);
    let out = eddy(&["new", "--lang", lang, "--kind", kind, name], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("created {name}/")), "{stdout}");
    let dir = scratch.0.join(name);
    (scratch, dir)
}

/// `eddy build` in the project `dir`, which must succeed.
fn build(dir: &Path) {
    let out = clean(command(&["build"], dir))
        .output()
        .expect("eddy build");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "eddy build failed: {stdout}{stderr}");
}

/// The project's unit tests, natively, with its language's runner.
fn unit_tests_pass(lang: &str, dir: &Path) {
    let out = match lang {
        "rust" => clean(Command::new("cargo"))
            .args(["test", "--quiet"])
            .current_dir(dir)
            .output(),
        "python" => Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .env("PYTHONPATH", repo_root().join("sdk/python"))
            .current_dir(dir)
            .output(),
        "js" => Command::new("node")
            .arg("--import")
            .arg(repo_root().join("sdk/js/test/register.js"))
            .arg("--test")
            .current_dir(dir)
            .output(),
        other => panic!("{other} projects have no native unit tests"),
    }
    .expect("the unit test runner");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{lang}: {stdout}{stderr}");
}

/// `eddy build`, then the project's job, whose output must be its expected output, and
/// `eddy test`, which checks the same and must catch a changed expectation.
fn build_and_run(dir: &Path) {
    build(dir);
    assert!(dir.join("shout_it.wasm").exists());
    let out = eddy(&["run", "-q", "job.yaml"], dir);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected");
    assert_eq!(stdout, expected);
    let out = eddy(&["test"], dir);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "eddy test: {stderr}");
    assert!(stdout.contains("ok: 3 lines as expected"), "{stdout}");
    std::fs::write(dir.join("expected.jsonl"), expected.replace("HELLO", "HI")).expect("edit");
    let out = eddy(&["test"], dir);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 1 differs from expected.jsonl") && stderr.contains("HI"),
        "{stderr}"
    );
}

#[test]
fn a_new_rust_project_builds_passes_its_test_and_runs_its_job() {
    let (_scratch, dir) = new_project("project-rust", "rust");
    build_and_run(&dir);
    unit_tests_pass("rust", &dir);
}

#[test]
fn a_new_python_project_builds_passes_its_test_and_runs_its_job() {
    let (_scratch, dir) = new_project("project-python", "python");
    build_and_run(&dir);
    unit_tests_pass("python", &dir);
}

#[test]
fn a_new_javascript_project_builds_passes_its_test_and_runs_its_job() {
    let (_scratch, dir) = new_project("project-js", "js");
    build_and_run(&dir);
    unit_tests_pass("js", &dir);
}

#[test]
fn a_new_c_project_builds_and_runs_its_job() {
    let (_scratch, dir) = new_project("project-c", "c");
    build_and_run(&dir);
}

/// A new process-function project in every language: keyed map state and event-time
/// timers, built by its toolchain, whose job gives the template's expected counts.
#[test]
fn new_process_function_projects_build_and_pass_their_job_in_every_language() {
    for lang in ["rust", "python", "js", "c"] {
        let (_scratch, dir) = new_project_of(
            &format!("project-process-{lang}"),
            lang,
            "process",
            "count-it",
        );
        let manifest = std::fs::read_to_string(dir.join("plugin.yaml")).expect("manifest");
        assert!(manifest.contains("world: process-plugin"), "{manifest}");
        build(&dir);
        let out = eddy(&["test"], &dir);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{lang}: eddy test: {stderr}");
        assert!(
            stdout.contains("ok: 4 lines as expected"),
            "{lang}: {stdout}"
        );
        if matches!(lang, "python" | "js") {
            unit_tests_pass(lang, &dir);
        }
    }
}

/// The JavaScript SDK's own unit tests (JSON text as the Rust SDK writes it, batches).
#[test]
fn the_javascript_sdk_passes_its_unit_tests() {
    let sdk = repo_root().join("sdk/js");
    let out = Command::new("node")
        .args(["--import", "./test/register.js", "--test", "test/"])
        .current_dir(&sdk)
        .output()
        .expect("node");
    assert!(out.status.success(), "{}", text(&out).0);
}

/// The Python SDK's own unit tests (JSON text as the Rust SDK writes it, batches).
#[test]
fn the_python_sdk_passes_its_unit_tests() {
    let sdk = repo_root().join("sdk/python");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .env("PYTHONPATH", &sdk)
        .current_dir(&sdk)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn build_says_which_toolchain_is_missing_and_how_to_install_it() {
    for (lang, missing) in [
        (
            "python",
            "componentize-py is not installed: pip install componentize-py",
        ),
        ("rust", "cargo is not installed: install Rust with rustup"),
        ("js", "node is not installed: install Node.js 18 or later"),
        (
            "c",
            "clang is not installed: apt-get install clang lld wasi-libc",
        ),
    ] {
        let (_scratch, dir) = new_project(&format!("project-missing-{lang}"), lang);
        let out = command(&["build"], &dir)
            .env("PATH", "/nonexistent")
            .output()
            .expect("eddy build");
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains(missing), "{lang}: {stderr}");
    }
}

#[test]
fn new_refuses_bad_names_and_existing_directories_and_build_needs_a_project() {
    let scratch = Scratch::new("project-refusals");
    let out = eddy(&["new", "Bad Name"], &scratch.0);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is not a plugin name"),
        "{}",
        text(&out).1
    );
    std::fs::create_dir(scratch.0.join("taken")).expect("dir");
    let out = eddy(&["new", "taken"], &scratch.0);
    assert!(text(&out).1.contains("already exists"), "{}", text(&out).1);
    let out = eddy(&["build"], &scratch.0);
    assert!(
        text(&out).1.contains("no plugin.yaml here"),
        "{}",
        text(&out).1
    );
}
