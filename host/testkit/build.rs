//! Builds the example plugins into components before the tests compile, and records
//! where they are, so no test depends on a manual build step.

use std::path::{Path, PathBuf};
use std::process::Command;

use eddy_toolchain::{Lang, Plugin};

/// Every component package that tests and benchmarks use: the example plugins, and
/// the guest of the boundary benchmark.
const PLUGINS: &[&str] = &[
    "word-split",
    "currency-convert",
    "amount-filter",
    "hostile",
    "hostile-process",
    "distinct-count",
    "session-summary",
    "order-summary",
    "order-summary-v2",
    "sequence-source",
    "dir-sink",
    "top-count",
    "max-rows",
    "nexmark-select",
    "nexmark-state",
    "nexmark-source",
    "eddy-bench-guest",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    for dir in [
        "plugins",
        "tests/plugins",
        "sdk",
        "wit",
        "host/bench/guest",
        "host/bench/wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    // A stable directory beside the build outputs, so the plugin build is incremental,
    // and one per checkout, so two checkouts sharing a target directory never swap
    // each other's plugins.
    let checkout = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.canonicalize()
            .unwrap_or_else(|_| root.clone())
            .hash(&mut h);
        format!("wasm-plugins-{:016x}", h.finish())
    };
    let target = out
        .ancestors()
        .nth(4)
        .map(|t| t.join(&checkout))
        .unwrap_or_else(|| out.join(&checkout));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip2")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    for p in PLUGINS {
        cmd.arg("-p").arg(p);
    }
    // Flags meant for the host (coverage, sanitizers, target-cpu) must not reach wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    // The nested cargo must not read the build's standard input.
    let status = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .expect("cannot run cargo to build the example plugins");
    assert!(
        status.success(),
        "building the example plugins for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
    );
    let dir = target.join("wasm32-wasip2/release");
    let mut consts = String::new();
    consts.push_str(&format!("/// Directory holding every example plugin component.\npub const PLUGIN_DIR: &str = {:?};\n", path_str(&dir)));
    for p in PLUGINS {
        let file = dir.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        consts.push_str(&format!(
            "/// The `{p}` example plugin component.\npub const {}: &str = {:?};\n",
            p.replace('-', "_").to_uppercase(),
            path_str(&file)
        ));
    }
    consts.push_str(&twins(&root, &target));
    std::fs::write(out.join("plugins.rs"), consts).expect("cannot write plugins.rs");
}

/// The twins of Rust example plugins in the other languages, and test probes of the
/// SDKs: directory, language and world.
const TWINS: &[(&str, Lang, &str)] = &[
    ("plugins/currency-convert-py", Lang::Python, "map-plugin"),
    ("plugins/amount-filter-py", Lang::Python, "filter-plugin"),
    ("plugins/word-split-py", Lang::Python, "flat-map-plugin"),
    ("plugins/order-summary-py", Lang::Python, "process-plugin"),
    ("plugins/currency-convert-js", Lang::Js, "map-plugin"),
    ("plugins/amount-filter-js", Lang::Js, "filter-plugin"),
    ("plugins/word-split-js", Lang::Js, "flat-map-plugin"),
    ("plugins/order-summary-js", Lang::Js, "process-plugin"),
    ("plugins/currency-convert-c", Lang::C, "map-plugin"),
    ("plugins/amount-filter-c", Lang::C, "filter-plugin"),
    ("plugins/word-split-c", Lang::C, "flat-map-plugin"),
    ("plugins/order-summary-c", Lang::C, "process-plugin"),
    ("tests/plugins/state-probe-c", Lang::C, "process-plugin"),
];

/// Builds the twins with their languages' toolchains.
fn twins(root: &Path, target: &Path) -> String {
    let mut consts = String::new();
    for (path, lang, world) in TWINS {
        let dir = path.rsplit('/').next().unwrap_or(path);
        let name = dir.replace('-', "_");
        let file = target.join(format!("twins/{name}.wasm"));
        let plugin = Plugin {
            lang: *lang,
            name: dir,
            dir: &root.join(path),
            world,
            sdk: root,
            work: &target.join("twins").join(dir),
        };
        if let Err(e) = eddy_toolchain::build(&plugin, &file) {
            panic!(
                "building the {lang} plugin {dir} failed: {e} (.ci/setup installs every toolchain)"
            );
        }
        consts.push_str(&format!(
            "/// The {lang} plugin `{path}`.\npub const {}: &str = {:?};\n",
            name.to_uppercase(),
            path_str(&file)
        ));
    }
    consts
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("build paths are UTF-8").to_owned()
}
