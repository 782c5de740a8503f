//! Plugins written in other languages run the same jobs with the same results.

use eddy_testkit::plugins::{AMOUNT_FILTER_PY, CURRENCY_CONVERT_PY, WORD_SPLIT_PY};
use eddy_testkit::repo_root;

use crate::support::{Scratch, eddy, text};

/// The currency-convert example job with its plugin swapped for `plugin`.
fn convert_with(test: &str, plugin: &str, input: &str) -> std::process::Output {
    let scratch = Scratch::new(test);
    std::fs::copy(plugin, scratch.0.join("plugin.wasm")).expect("copy plugin");
    std::fs::write(scratch.0.join("orders.jsonl"), input).expect("input");
    let job = std::fs::read_to_string(repo_root().join("plugins/currency-convert/job.yaml"))
        .expect("example job")
        .replace("plugin-dir: ../dist\n", "")
        .replace("currency_convert.wasm", "plugin.wasm");
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    eddy(&["run", "--quiet", "job.yaml"], &scratch.0)
}

/// One test, so that the Python component (slow to compile in a debug build) compiles
/// once and the second run finds it in the component cache.
#[test]
fn python_plugins_match_rust_ones_in_output_and_errors() {
    let input = std::fs::read_to_string(repo_root().join("plugins/currency-convert/orders.jsonl"))
        .expect("orders");
    let out = convert_with("python_convert", CURRENCY_CONVERT_PY, &input);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rust = std::fs::read_to_string(repo_root().join("plugins/currency-convert/job.expected"))
        .expect("expected");
    assert_eq!(stdout, rust);

    let input = "{\"id\":1,\"customer\":\"a\",\"amount\":1.0,\"currency\":\"USD\",\"ts\":0}\n{\"id\":2,\"customer\":\"b\",\"amount\":2.0,\"currency\":\"XYZ\",\"ts\":0}\n";
    let out = convert_with("python_error", CURRENCY_CONVERT_PY, input);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("plugin plugin.wasm failed in `eddy:plugin/map-operator@0.1.0#map-batch` on event 1 of its batch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no exchange rate for currency \"XYZ\""),
        "{stderr}"
    );
}

/// Runs the example job `job` (from the repository root) with its plugin file
/// `rust_file` replaced by the component `twin`.
fn run_twin(test: &str, job: &str, rust_file: &str, twin: &str) -> std::process::Output {
    let scratch = Scratch::new(test);
    std::fs::copy(twin, scratch.0.join(rust_file)).expect("copy twin");
    let dir = scratch.0.to_str().expect("UTF-8 path");
    eddy(&["run", "--quiet", "--plugin-dir", dir, job], &repo_root())
}

#[test]
fn python_filter_and_flat_map_twins_give_the_rust_plugins_output() {
    for (job, rust_file, twin) in [
        (
            "plugins/amount-filter/job.yaml",
            "amount_filter.wasm",
            AMOUNT_FILTER_PY,
        ),
        (
            "plugins/word-split/job.yaml",
            "word_split.wasm",
            WORD_SPLIT_PY,
        ),
    ] {
        let out = run_twin(&format!("twin-{rust_file}"), job, rust_file, twin);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{job}: {stderr}");
        let expected = std::fs::read_to_string(repo_root().join(job).with_extension("expected"))
            .expect("expected output");
        assert_eq!(stdout, expected, "{job}");
    }
}
