//! Plugins written in Python, JavaScript and C run the same jobs as their Rust twins
//! with byte-identical results: each twin is built from source by the test kit with its
//! language's toolchain.

use std::path::Path;

use eddy_testkit::plugins::{
    AMOUNT_FILTER_C, AMOUNT_FILTER_JS, AMOUNT_FILTER_PY, CURRENCY_CONVERT, CURRENCY_CONVERT_C,
    CURRENCY_CONVERT_JS, CURRENCY_CONVERT_PY, ORDER_SUMMARY, ORDER_SUMMARY_C, ORDER_SUMMARY_JS,
    ORDER_SUMMARY_PY, STATE_PROBE_C, WORD_SPLIT_C, WORD_SPLIT_JS, WORD_SPLIT_PY,
};
use eddy_testkit::repo_root;

use crate::support::{Scratch, eddy, text};

/// The twins of `currency-convert`, by language.
const CONVERT_TWINS: [(&str, &str); 3] = [
    ("python", CURRENCY_CONVERT_PY),
    ("js", CURRENCY_CONVERT_JS),
    ("c", CURRENCY_CONVERT_C),
];

/// The twins of `order-summary`, by language.
const SUMMARY_TWINS: [(&str, &str); 3] = [
    ("python", ORDER_SUMMARY_PY),
    ("js", ORDER_SUMMARY_JS),
    ("c", ORDER_SUMMARY_C),
];

/// A scratch directory holding `job` (with `plugin.wasm` standing for its plugin) and
/// `plugin` as `plugin.wasm`.
fn scratch_with(test: &str, plugin: &str, job: &str) -> Scratch {
    let scratch = Scratch::new(test);
    std::fs::copy(plugin, scratch.0.join("plugin.wasm")).expect("copy plugin");
    std::fs::write(scratch.0.join("job.yaml"), job).expect("job");
    scratch
}

/// The currency-convert example job on `input` with its plugin swapped for `plugin`.
fn convert_with(test: &str, plugin: &str, input: &str) -> std::process::Output {
    let job = std::fs::read_to_string(repo_root().join("plugins/currency-convert/job.yaml"))
        .expect("example job")
        .replace("plugin-dir: ../dist\n", "")
        .replace("currency_convert.wasm", "plugin.wasm");
    let scratch = scratch_with(test, plugin, &job);
    std::fs::write(scratch.0.join("orders.jsonl"), input).expect("input");
    eddy(&["run", "--quiet", "job.yaml"], &scratch.0)
}

/// One test for all map twins, so that each component (slow to compile in a debug
/// build) compiles once and its second run finds it in the component cache.
#[test]
fn map_twins_match_the_rust_plugin_in_output_and_errors() {
    let input = std::fs::read_to_string(repo_root().join("plugins/currency-convert/orders.jsonl"))
        .expect("orders");
    let rust = std::fs::read_to_string(repo_root().join("plugins/currency-convert/job.expected"))
        .expect("expected");
    let bad = "{\"id\":1,\"customer\":\"a\",\"amount\":1.0,\"currency\":\"USD\",\"ts\":0}\n{\"id\":2,\"customer\":\"b\",\"amount\":2.0,\"currency\":\"XYZ\",\"ts\":0}\n";
    for (lang, twin) in CONVERT_TWINS {
        let out = convert_with(&format!("convert-{lang}"), twin, &input);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{lang}: {stderr}");
        assert_eq!(stdout, rust, "{lang}");

        let out = convert_with(&format!("convert-error-{lang}"), twin, bad);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{lang}: a missing rate must fail");
        assert!(
            stderr.contains("plugin plugin.wasm failed in `eddy:plugin/map-operator@0.1.0#map-batch` on event 1 of its batch"),
            "{lang}: {stderr}"
        );
        assert!(
            stderr.contains("no exchange rate for currency \"XYZ\""),
            "{lang}: {stderr}"
        );
    }
}

#[test]
fn filter_and_flat_map_twins_give_the_rust_plugins_output() {
    for (job, rust_file, twin) in [
        ("amount-filter", "amount_filter.wasm", AMOUNT_FILTER_PY),
        ("amount-filter", "amount_filter.wasm", AMOUNT_FILTER_JS),
        ("amount-filter", "amount_filter.wasm", AMOUNT_FILTER_C),
        ("word-split", "word_split.wasm", WORD_SPLIT_PY),
        ("word-split", "word_split.wasm", WORD_SPLIT_JS),
        ("word-split", "word_split.wasm", WORD_SPLIT_C),
    ] {
        let job = format!("plugins/{job}/job.yaml");
        let scratch = Scratch::new("twin");
        std::fs::copy(twin, scratch.0.join(rust_file)).expect("copy twin");
        let dir = scratch.0.to_str().expect("UTF-8 path");
        let out = eddy(&["run", "--quiet", "--plugin-dir", dir, &job], &repo_root());
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{twin}: {stderr}");
        let expected = std::fs::read_to_string(repo_root().join(&job).with_extension("expected"))
            .expect("expected output");
        assert_eq!(stdout, expected, "{twin}");
    }
}

/// A keyed process-function job over generated orders: map state per customer, an
/// event-time timer per bucket, a side output for big orders, two subtasks.
const SUMMARY_JOB: &str = "
name: summary
parallelism: 2
sources:
  - type: generator
    shape: orders
    count: 3000
    seed: 11
    event-time: { field: ts, max-out-of-orderness: 2s }
steps:
  - key-by: customer
  - name: summary
    process: plugin.wasm
    params: { big: 450 }
    side-outputs: [big-orders]
sinks:
  - type: file
    path: summary.jsonl
  - type: file
    path: big.jsonl
    input: big-orders
";

/// The summary job's main and side output with `plugin`, each sorted (two subtasks
/// interleave their rows).
fn summary_with(test: &str, plugin: &str) -> (Vec<String>, Vec<String>) {
    let scratch = scratch_with(test, plugin, SUMMARY_JOB);
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    assert!(out.status.success(), "{test}: {}", text(&out).1);
    let sorted = |file: &str| {
        let text = std::fs::read_to_string(scratch.0.join(file)).expect("output");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    (sorted("summary.jsonl"), sorted("big.jsonl"))
}

/// Runs the `process-function` case (hand-checked rows) with the plugin swapped for
/// `twin`; returns its stdout and its side output file.
fn process_case_with(test: &str, twin: &str) -> (String, String) {
    let case = repo_root().join("tests/cases/process-function");
    let scratch = Scratch::with_case(test, &case);
    let plugin = scratch.0.join("order_summary.wasm");
    std::fs::remove_file(&plugin).expect("unlink the Rust plugin");
    std::fs::copy(twin, &plugin).expect("copy twin");
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{test}: {stderr}");
    let side = std::fs::read_to_string(scratch.0.join("big.jsonl")).expect("side output");
    (stdout, side)
}

#[test]
fn keyed_process_twins_match_the_rust_plugin_row_for_row() {
    let case = repo_root().join("tests/cases/process-function");
    let read = |p: &Path| std::fs::read_to_string(p).expect("expected output");
    let expected = (
        read(&case.join("job.expected")),
        read(&case.join("expected/big.jsonl")),
    );
    let rust = summary_with("summary-rust", ORDER_SUMMARY);
    assert!(
        rust.0.len() > 100,
        "the job emits buckets: {}",
        rust.0.len()
    );
    assert!(!rust.1.is_empty(), "the job has big orders");
    for (lang, twin) in SUMMARY_TWINS {
        assert_eq!(
            process_case_with(&format!("case-{lang}"), twin),
            expected,
            "{lang}: the hand-checked case"
        );
        let got = summary_with(&format!("summary-{lang}"), twin);
        assert_eq!(got.0, rust.0, "{lang}: main output");
        assert_eq!(got.1, rust.1, "{lang}: side output");
    }
}

/// The currency-convert job of every language, with the Rust one as reference, on a
/// file of many generated orders: a wider check of number formatting and rounding.
#[test]
fn map_twins_match_on_many_generated_orders() {
    let job = "
name: many
sources:
  - type: generator
    shape: orders
    count: 20000
    seed: 99
steps:
  - name: to-eur
    map: plugin.wasm
    params: { target: EUR, rates: { USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 } }
sinks:
  - type: file
    path: out.jsonl
";
    let run = |test: &str, plugin: &str| {
        let scratch = scratch_with(test, plugin, job);
        let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
        assert!(out.status.success(), "{test}: {}", text(&out).1);
        std::fs::read_to_string(scratch.0.join("out.jsonl")).expect("output")
    };
    let rust = run("many-rust", CURRENCY_CONVERT);
    assert_eq!(rust.lines().count(), 20000);
    for (lang, twin) in CONVERT_TWINS {
        assert!(run(&format!("many-{lang}"), twin) == rust, "{lang} differs");
    }
}

/// The C SDK's list state and map entries (which the twins do not use), through a probe
/// plugin on the hand-checked orders: a list per customer that timers read and cut back
/// to its last value, and a map from event time to amount read in key order.
#[test]
fn c_list_state_and_map_entries_keep_what_was_written() {
    let case = repo_root().join("tests/cases/process-function");
    let job = "
name: probe
batch-size: 1
sources:
  - type: file
    path: in.jsonl
    event-time: { field: ts }
steps:
  - key-by: customer
  - name: probe
    process: plugin.wasm
sinks:
  - type: stdout
";
    let scratch = scratch_with("state-probe-c", STATE_PROBE_C, job);
    std::fs::copy(case.join("in.jsonl"), scratch.0.join("in.jsonl")).expect("input");
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // c1's first timer fires once the event at 12 s is in (the watermark follows it);
    // map keys are in byte order ("12000" before "9000").
    assert_eq!(
        stdout,
        concat!(
            r#"{"customer":"c1","at":9999,"list":[100.0,50.5,20.0],"keys":["1000","12000","9000"],"values":[100.0,20.0,50.5]}"#,
            "\n",
            r#"{"customer":"c2","at":9999,"list":[500.0],"keys":["2000"],"values":[500.0]}"#,
            "\n",
            r#"{"customer":"c1","at":19999,"list":[20.0,700.0],"keys":["25000"],"values":[700.0]}"#,
            "\n",
            r#"{"customer":"c2","at":19999,"list":[500.0,10.0],"keys":["15000"],"values":[10.0]}"#,
            "\n",
            r#"{"customer":"c1","at":29999,"list":[700.0],"keys":[],"values":[]}"#,
            "\n",
        )
    );
}
