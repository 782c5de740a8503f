//! The sandbox and tenants through the real binary: output floods are bounded, grants
//! open exactly what they say, dead letters let a job go on, quotas hold, and a hostile
//! tenant's job next to a good one leaves the good one's results intact.

use std::path::Path;

use crate::support::{Scratch, eddy, text};

const RATES: &str = "{ rates: { USD: 0.92, GBP: 1.17, JPY: 0.0062, CHF: 1.05 } }";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write test file");
}

fn events(n: usize, trigger_every: usize) -> String {
    (0..n)
        .map(|i| {
            if i % trigger_every == trigger_every - 1 {
                format!("{{\"n\":{i},\"trigger\":true}}\n")
            } else {
                format!("{{\"n\":{i}}}\n")
            }
        })
        .collect()
}

#[test]
fn an_output_flood_is_bounded_and_reported() {
    let scratch = Scratch::with_plugins("flood");
    write(&scratch.0, "in.jsonl", &events(4, 2));
    write(
        &scratch.0,
        "job.yaml",
        "name: flood\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - name: loud\n    map: hostile.wasm\n    params: { mode: flood }\nsinks:\n  - type: stdout\n",
    );
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, events(4, 2));
    assert!(
        stderr.contains("plugin output over the limit was dropped"),
        "{stderr}"
    );
    assert!(
        stderr.len() < 1 << 20,
        "the flood reached the host log: {} bytes",
        stderr.len()
    );
}

#[test]
fn a_granted_directory_is_readable_and_nothing_else() {
    let scratch = Scratch::with_plugins("grant");
    write(&scratch.0, "in.jsonl", &events(2, 2));
    std::fs::create_dir_all(scratch.0.join("data")).expect("data dir");
    write(&scratch.0.join("data"), "secret.txt", "twelve bytes");
    write(
        &scratch.0,
        "job.yaml",
        "name: grant\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - name: read\n    map: hostile.wasm\n    params: { mode: open-file, path: /data/secret.txt }\n    sandbox:\n      dirs: [{ host: data, guest: /data }]\nsinks:\n  - type: stdout\n",
    );
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "{\"n\":0}\n{\"read\":12}\n");
}

#[test]
fn dead_letters_take_the_failing_events_and_the_job_goes_on() {
    let scratch = Scratch::with_plugins("dead_letter");
    write(&scratch.0, "in.jsonl", &events(1000, 100));
    write(
        &scratch.0,
        "job.yaml",
        "name: dlq\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - name: crashy\n    map: hostile.wasm\n    params: { mode: panic }\n    on-error: dead-letter\nsinks:\n  - type: file\n    path: out.jsonl\ndead-letter:\n  type: file\n  path: dead.jsonl\n",
    );
    let out = eddy(&["run", "job.yaml"], &scratch.0);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let good = std::fs::read_to_string(scratch.0.join("out.jsonl")).expect("output");
    let expected: String = events(1000, 100)
        .lines()
        .filter(|l| !l.contains("trigger"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(good, expected);
    let dead = std::fs::read_to_string(scratch.0.join("dead.jsonl")).expect("dead letters");
    let records: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 10);
    for r in &records {
        assert_eq!(r["job"], "dlq");
        assert_eq!(r["step"], "crashy");
        assert_eq!(r["event"]["trigger"], true);
        let error = r["error"].as_str().expect("error text");
        assert!(
            error.contains("hostile.wasm trapped in `eddy:plugin/map-operator@0.1.0#map-batch`"),
            "{error}"
        );
        assert!(
            error.contains("hostile plugin panicked on purpose"),
            "{error}"
        );
    }
    assert!(
        stderr.contains("14 traps"),
        "4 batches and 10 single events trapped: {stderr}"
    );
}

#[test]
fn tenant_quotas_and_roots_are_enforced() {
    let scratch = Scratch::with_plugins("quotas");
    std::fs::create_dir_all(scratch.0.join("acme")).expect("root");
    write(
        &scratch.0,
        "tenants.yaml",
        "tenants:\n  acme:\n    root: acme\n    max-cpu-deadline-ms: 100\n    max-instances: 2\n    max-output: 64mb\n    max-stack: 1mb\n",
    );
    let job = |extra: &str, sink: &str| {
        format!(
            "name: q\ntenant: acme\nsources:\n  - type: generator\n    count: 5\nsteps:\n  - name: conv\n    map: currency_convert.wasm\n    params: {RATES}\n{extra}sinks:\n  - type: file\n    path: {sink}\n"
        )
    };
    let run = |text: String| {
        write(&scratch.0, "job.yaml", &text);
        eddy(
            &["run", "--tenants", "tenants.yaml", "job.yaml"],
            &scratch.0,
        )
    };
    let ok = run(job(
        "    sandbox: { cpu-deadline-ms: 50 }\n",
        "acme/out.jsonl",
    ));
    assert!(ok.status.success(), "{}", text(&ok).1);
    let slow = run(job(
        "    sandbox: { cpu-deadline-ms: 1000 }\n",
        "acme/out.jsonl",
    ));
    assert!(text(&slow).1.contains("tenant \"acme\" does not allow step \"conv\" a CPU deadline of 1000 ms (max-cpu-deadline-ms 100)"), "{}", text(&slow).1);
    let wide = run(job(
        "    sandbox: { cpu-deadline-ms: 50 }\n    parallelism: 3\n",
        "acme/out.jsonl",
    ));
    assert!(
        text(&wide)
            .1
            .contains("does not allow 3 plugin instances (max-instances 2)"),
        "{}",
        text(&wide).1
    );
    let big_output = run(job(
        "    sandbox: { cpu-deadline-ms: 50, max-output: 128mb }\n",
        "acme/out.jsonl",
    ));
    assert!(
        text(&big_output)
            .1
            .contains("a max-output of 128.0 MiB (max-output 64.0 MiB)"),
        "{}",
        text(&big_output).1
    );
    let deep = run(
        job("    sandbox: { cpu-deadline-ms: 50 }\n", "acme/out.jsonl").replace(
            "tenant: acme\n",
            "tenant: acme\nsandbox: { max-stack: 4mb }\n",
        ),
    );
    assert!(
        text(&deep)
            .1
            .contains("a WASM stack of 4.0 MiB (max-stack 1.0 MiB)"),
        "{}",
        text(&deep).1
    );
    let escape = run(job(
        "    sandbox: { cpu-deadline-ms: 50 }\n",
        "../elsewhere.jsonl",
    ));
    assert!(
        text(&escape).1.contains("outside its root"),
        "{}",
        text(&escape).1
    );
    assert!(!scratch.0.join("../elsewhere.jsonl").exists());
    // A connector's directory grant is data access too, and its instances count.
    let connector_escape = run(
        "name: q\ntenant: acme\nsources:\n  - type: generator\n    count: 5\nsinks:\n  \
         - type: plugin\n    plugin: dir_sink.wasm\n    params: { dir: /out }\n    \
         sandbox: { dirs: [{ host: ., guest: /out, writable: true }] }\n"
            .to_owned(),
    );
    assert!(
        text(&connector_escape).1.contains("outside its root"),
        "{}",
        text(&connector_escape).1
    );
    let stranger = run(job("", "acme/out.jsonl").replace("tenant: acme", "tenant: zed"));
    assert!(
        text(&stranger).1.contains("unknown tenant \"zed\""),
        "{}",
        text(&stranger).1
    );
}

#[test]
fn a_hostile_tenant_next_to_a_good_one_cannot_hurt_its_results() {
    let scratch = Scratch::with_plugins("side_by_side");
    for dir in ["good", "evil"] {
        std::fs::create_dir_all(scratch.0.join(dir)).expect("tenant root");
    }
    write(
        &scratch.0,
        "tenants.yaml",
        "tenants:\n  good:\n    root: good\n  evil:\n    root: evil\n    max-cpu-deadline-ms: 500\n",
    );
    write(&scratch.0, "evil/in.jsonl", &events(500, 50));
    let good = format!(
        "name: orders\ntenant: good\nparallelism: 2\nsources:\n  - type: generator\n    count: 20000\n    seed: 5\nsteps:\n  - name: conv\n    map: currency_convert.wasm\n    params: {RATES}\n  - key-by: customer\n  - rolling: count\nsinks:\n  - type: file\n    path: good/out.jsonl\n"
    );
    let evil = "name: evil\ntenant: evil\nsandbox: { cpu-deadline-ms: 300 }\nsources:\n  - type: file\n    path: evil/in.jsonl\nsteps:\n  - name: spin\n    map: hostile.wasm\n    params: { mode: loop }\n  - name: bomb\n    map: hostile.wasm\n    params: { mode: memory-bomb }\nsinks:\n  - type: file\n    path: evil/out.jsonl\n";
    write(&scratch.0, "good.yaml", &good);
    write(&scratch.0, "evil.yaml", evil);
    let both = eddy(
        &["run", "--tenants", "tenants.yaml", "good.yaml", "evil.yaml"],
        &scratch.0,
    );
    let (_, stderr) = text(&both);
    assert!(!both.status.success());
    assert!(
        stderr.contains(
            "error: job \"evil\" (tenant evil): step \"spin\": plugin hostile.wasm trapped"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("exceeded its CPU deadline of 300 ms"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 2 jobs failed"), "{stderr}");
    assert!(!scratch.0.join("evil/out.jsonl").exists());

    // The good job's results are those of a run on its own.
    let together = std::fs::read_to_string(scratch.0.join("good/out.jsonl")).expect("good output");
    std::fs::remove_file(scratch.0.join("good/out.jsonl")).expect("remove");
    let alone = eddy(
        &["run", "--tenants", "tenants.yaml", "good.yaml"],
        &scratch.0,
    );
    assert!(alone.status.success(), "{}", text(&alone).1);
    let reference = std::fs::read_to_string(scratch.0.join("good/out.jsonl")).expect("good output");
    let sorted = |s: &str| {
        let mut lines: Vec<&str> = s.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    assert_eq!(together.lines().count(), 20000);
    assert_eq!(sorted(&together), sorted(&reference));
}

#[test]
fn the_whole_hostile_suite_is_contained_by_dead_letters() {
    let scratch = Scratch::with_plugins("hostile_suite");
    let modes = [
        ("panic", "panicked on purpose"),
        ("loop", "exceeded its CPU deadline of 200 ms"),
        ("recursion", "overflowed its stack"),
        ("memory-bomb", "refused memory growth"),
        ("huge-output", "above its max-output of 1.0 MiB"),
        ("open-file", "cannot open /etc/passwd"),
        ("connect", "cannot connect to 127.0.0.1:9"),
        ("bad-offsets", "malformed batch"),
        ("huge-error", "more bytes cut"),
    ];
    let mut input = String::new();
    let mut job = String::from(
        "name: suite\nmemory: { wasm: 256mb }\nsandbox: { cpu-deadline-ms: 200, max-output: 1mb }\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n",
    );
    for (i, (mode, _)) in modes.iter().enumerate() {
        input.push_str(&format!("{{\"n\":{i}}}\n{{\"n\":{i},\"{mode}\":true}}\n"));
        job.push_str(&format!(
            "  - name: {mode}\n    map: hostile.wasm\n    params: {{ mode: {mode}, on: {mode} }}\n    on-error: dead-letter\n"
        ));
        // Only the limit under test may fire: making and freeing 8 MiB can take longer
        // than the suite's 200 ms deadline on a loaded machine.
        if *mode == "huge-output" {
            job.push_str("    sandbox: { cpu-deadline-ms: 60000 }\n");
        }
    }
    job.push_str("sinks:\n  - type: file\n    path: out.jsonl\ndead-letter:\n  type: file\n  path: dead.jsonl\n");
    write(&scratch.0, "in.jsonl", &input);
    write(&scratch.0, "job.yaml", &job);
    let out = eddy(&["run", "--quiet", "job.yaml"], &scratch.0);
    assert!(out.status.success(), "{}", text(&out).1);
    let good = std::fs::read_to_string(scratch.0.join("out.jsonl")).expect("output");
    let expected: String = (0..modes.len())
        .map(|i| format!("{{\"n\":{i}}}\n"))
        .collect();
    assert_eq!(good, expected);
    let dead = std::fs::read_to_string(scratch.0.join("dead.jsonl")).expect("dead letters");
    let records: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), modes.len(), "{dead}");
    for (mode, error) in modes {
        let record = records
            .iter()
            .find(|r| r["step"] == mode)
            .unwrap_or_else(|| panic!("no dead letter from {mode}: {dead}"));
        assert_eq!(record["event"][mode], true);
        let text = record["error"].as_str().expect("error");
        assert!(text.contains(error), "{mode}: {text}");
    }
}

#[test]
fn what_a_plugin_has_the_host_print_or_keep_is_checked_and_capped() {
    let scratch = Scratch::with_plugins("hostile_caps");
    let dir = &scratch.0;
    write(
        dir,
        "in.jsonl",
        "{\"n\":1,\"trigger\":true}\n{\"n\":2,\"trigger\":true}\n",
    );
    // 400 MiB sent to the host log in one call: a bounded share reaches it.
    write(
        dir,
        "log.yaml",
        "name: loud\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - name: loud\n    map: hostile.wasm\n    params: { mode: log-flood }\nsinks:\n  - type: file\n    path: out.jsonl\n",
    );
    let out = eddy(&["run", "--quiet", "log.yaml"], dir);
    let (_, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(stderr.len() < 1 << 20, "{} bytes of log", stderr.len());
    assert!(stderr.contains("more bytes cut"), "{}", &stderr[..2000]);
    assert!(
        stderr.contains("lines over 100 per second were dropped"),
        "{}",
        &stderr[stderr.len() - 2000..]
    );
    let written = std::fs::read_to_string(dir.join("out.jsonl")).expect("output");
    assert_eq!(written.lines().count(), 2);

    // What crosses the side-output import is checked as the main output is.
    for (mode, error) in [
        (
            "malformed-side-output",
            "side output \"bad\": malformed batch",
        ),
        (
            "side-output-flood",
            "of side output (last to \"flood\") in one call, above its max-output of 1.0 MiB (sandbox.max-output)",
        ),
    ] {
        write(
            dir,
            "side.yaml",
            &format!(
                "name: side\nsandbox: {{ max-output: 1mb }}\nsources:\n  - type: file\n    path: in.jsonl\nsteps:\n  - key-by: n\n  - name: evil\n    process: hostile_process.wasm\n    params: {{ mode: {mode} }}\n    side-outputs: [bad, flood]\nsinks:\n  - type: file\n    path: side-out.jsonl\n  - type: file\n    path: bad.jsonl\n    input: bad\n  - type: file\n    path: flood.jsonl\n    input: flood\n"
            ),
        );
        let out = eddy(&["run", "--quiet", "side.yaml"], dir);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{mode}: {stderr}");
        for part in [
            "step \"evil\"",
            "hostile_process.wasm trapped in `eddy:plugin/process-function@0.1.0#",
            error,
        ] {
            assert!(stderr.contains(part), "{mode}: no {part:?} in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
    }
}

#[test]
fn a_timer_that_registers_itself_again_fails_the_step_instead_of_looping() {
    let scratch = Scratch::with_plugins("hostile_timer_loop");
    let dir = &scratch.0;
    write(
        dir,
        "in.jsonl",
        "{\"n\":1,\"ts\":1000}\n{\"n\":2,\"ts\":2000}\n",
    );
    write(
        dir,
        "job.yaml",
        "name: timers\nsources:\n  - type: file\n    path: in.jsonl\n    event-time: { field: ts }\nsteps:\n  - key-by: n\n  - name: again\n    process: hostile_process.wasm\n    params: { mode: timer-loop }\nsinks:\n  - type: file\n    path: out.jsonl\n",
    );
    let out = eddy(&["run", "--quiet", "job.yaml"], dir);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        "step \"again\"",
        "hostile_process.wasm",
        "process-function@0.1.0#on-timer",
        "timers kept being registered for times already passed while event time advanced",
    ] {
        assert!(stderr.contains(part), "no {part:?} in {stderr}");
    }
}
