//! `eddy new`, `eddy build` and `eddy test`: a ready-to-build plugin project in Rust,
//! Python, JavaScript or C, with its job file, sample events, expected output and a
//! test; the build of its component through the language's own toolchain; and the run of
//! its job against the expected output.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use eddy_toolchain::Lang;

/// A template file: where it goes in the project, and its text.
type Template = (&'static str, &'static str);

/// What a new project's plugin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A map that upper-cases a field (with a native unit test).
    Map,
    /// A keyed process function: counts per user and window in map state, emitted by
    /// event-time timers.
    Process,
}

macro_rules! template {
    ($to:literal, $from:literal) => {
        ($to, include_str!(concat!("../../../sdk/templates/", $from)))
    };
}

const PLUGIN_YAML: Template = template!("plugin.yaml", "common/plugin.yaml");
const CARGO_TOML: Template = template!("Cargo.toml", "rust/Cargo.toml");
const TOOLCHAIN: Template = (
    "rust-toolchain.toml",
    include_str!("../../../rust-toolchain.toml"),
);

const MAP_JOB: [Template; 3] = [
    template!("job.yaml", "common/job.yaml"),
    template!("events.jsonl", "common/events.jsonl"),
    template!("expected.jsonl", "common/expected.jsonl"),
];

const PROCESS_JOB: [Template; 3] = [
    template!("job.yaml", "process/job.yaml"),
    template!("events.jsonl", "process/events.jsonl"),
    template!("expected.jsonl", "process/expected.jsonl"),
];

/// The files of a new project of `kind` in `lang`.
fn templates(lang: Lang, kind: Kind) -> Vec<Template> {
    let job = match kind {
        Kind::Map => MAP_JOB,
        Kind::Process => PROCESS_JOB,
    };
    let code: &[Template] = match (lang, kind) {
        (Lang::Rust, Kind::Map) => &[
            CARGO_TOML,
            TOOLCHAIN,
            template!("src/lib.rs", "rust/src/lib.rs"),
        ],
        (Lang::Rust, Kind::Process) => &[
            CARGO_TOML,
            TOOLCHAIN,
            template!("src/lib.rs", "process/lib.rs"),
        ],
        (Lang::Python, Kind::Map) => &[
            template!("app.py", "python/app.py"),
            template!("test_app.py", "python/test_app.py"),
        ],
        (Lang::Python, Kind::Process) => &[
            template!("app.py", "process/app.py"),
            template!("test_app.py", "process/test_app.py"),
        ],
        (Lang::Js, Kind::Map) => &[
            template!("app.js", "js/app.js"),
            template!("app.test.js", "js/app.test.js"),
        ],
        (Lang::Js, Kind::Process) => &[
            template!("app.js", "process/app.js"),
            template!("app.test.js", "process/app.test.js"),
        ],
        (Lang::C, Kind::Map) => &[template!("app.c", "c/app.c")],
        (Lang::C, Kind::Process) => &[template!("app.c", "process/app.c")],
    };
    job.into_iter()
        .chain([PLUGIN_YAML])
        .chain(code.iter().copied())
        .collect()
}

/// The checkout this binary was built from: its SDKs and WIT, by default.
fn default_sdk() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Creates the project `name` (a directory of that name): a `kind` plugin in `lang`.
pub fn new(name: &str, lang: Lang, kind: Kind, sdk: Option<&Path>) -> Result<()> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits, `-` and `_`, \
             starting with a letter"
        );
    }
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} already exists; choose another name", dir.display());
    }
    let sdk = std::path::absolute(sdk.map_or_else(default_sdk, Path::to_owned))?;
    if !sdk.join("sdk/rust/Cargo.toml").exists() || !sdk.join("wit").is_dir() {
        bail!(
            "{} is not an Eddy checkout (no sdk/rust and wit/ in it); name one with --sdk",
            sdk.display()
        );
    }
    let file = format!("{}.wasm", name.replace('-', "_"));
    let lang_name = lang.name();
    let (kind_name, world) = match kind {
        Kind::Map => ("map plugin", "map-plugin"),
        Kind::Process => ("process function", "process-plugin"),
    };
    for (path, text) in templates(lang, kind) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{file}}", &file)
            .replace("{{lang}}", lang_name)
            .replace("{{world}}", world)
            .replace("{{sdk}}", &sdk.display().to_string());
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    std::fs::write(
        dir.join(".gitignore"),
        "/target/\n*.wasm\n__pycache__/\nnode_modules/\n",
    )?;
    let unit = match (lang, kind) {
        (Lang::Rust, Kind::Process) | (Lang::C, _) => String::new(),
        (Lang::Rust, _) => "cargo test".to_owned(),
        (Lang::Python, _) => format!(
            "PYTHONPATH={}/sdk/python python3 -m unittest",
            sdk.display()
        ),
        (Lang::Js, _) => format!(
            "node --import {}/sdk/js/test/register.js --test",
            sdk.display()
        ),
    };
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!("\n  {unit}    # unit tests, natively")
    };
    println!(
        "created {name}/ ({lang_name} {kind_name})\n  cd {name}\n  eddy build           \
         # builds {file}\n  eddy test            # runs job.yaml, compares with expected.jsonl{unit}"
    );
    Ok(())
}

/// What `plugin.yaml` says about a project.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    lang: Lang,
    world: String,
    component: String,
    sdk: PathBuf,
}

/// The project in the current directory, from its `plugin.yaml`.
fn manifest() -> Result<Manifest> {
    let text = std::fs::read_to_string("plugin.yaml")
        .context("no plugin.yaml here: run this in a project that `eddy new` created")?;
    serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("plugin.yaml: {e}"))
}

/// Builds the component of the project in the current directory.
pub fn build() -> Result<()> {
    let m = manifest()?;
    let here = std::env::current_dir()?;
    let plugin = eddy_toolchain::Plugin {
        lang: m.lang,
        name: &m.name,
        dir: &here,
        world: &m.world,
        sdk: &m.sdk,
        work: &here.join("target/eddy"),
    };
    eddy_toolchain::build(&plugin, &here.join(&m.component))?;
    println!("built {}", m.component);
    Ok(())
}

/// Runs the project's job with its component and compares what it prints with
/// `expected.jsonl`, line by line.
pub fn test() -> Result<()> {
    let m = manifest()?;
    if !Path::new(&m.component).is_file() {
        bail!("{} is not built yet: run `eddy build` first", m.component);
    }
    let out = Command::new(std::env::current_exe()?)
        .args(["run", "--quiet", "job.yaml"])
        .output()
        .context("running job.yaml")?;
    if !out.status.success() {
        bail!(
            "job.yaml failed:\n{}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let got = String::from_utf8_lossy(&out.stdout);
    let want = std::fs::read_to_string("expected.jsonl").context("reading expected.jsonl")?;
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    for i in 0..got_lines.len().max(want_lines.len()) {
        let (g, w) = (got_lines.get(i), want_lines.get(i));
        if g != w {
            bail!(
                "line {} differs from expected.jsonl:\n  got:      {}\n  expected: {}",
                i + 1,
                g.unwrap_or(&"(nothing)"),
                w.unwrap_or(&"(nothing)")
            );
        }
    }
    println!("ok: {} lines as expected", want_lines.len());
    Ok(())
}
