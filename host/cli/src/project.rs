//! `eddy new` and `eddy build`: a ready-to-build plugin project in Rust or Python, with
//! its job file, sample events, expected output and a unit test, and the build of the
//! project's component through the language's own toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The languages a project can be written in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust, with the `eddy-sdk` crate, built by cargo for `wasm32-wasip2`.
    Rust,
    /// Python, with `sdk/python/eddy_sdk.py`, built by componentize-py.
    Python,
}

/// A template file: where it goes in the project, and its text.
type Template = (&'static str, &'static str);

const COMMON: [Template; 4] = [
    (
        "job.yaml",
        include_str!("../../../sdk/templates/common/job.yaml"),
    ),
    (
        "events.jsonl",
        include_str!("../../../sdk/templates/common/events.jsonl"),
    ),
    (
        "expected.jsonl",
        include_str!("../../../sdk/templates/common/expected.jsonl"),
    ),
    (
        "plugin.yaml",
        include_str!("../../../sdk/templates/common/plugin.yaml"),
    ),
];

const RUST: [Template; 3] = [
    (
        "Cargo.toml",
        include_str!("../../../sdk/templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../sdk/templates/rust/src/lib.rs"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("../../../rust-toolchain.toml"),
    ),
];

const PYTHON: [Template; 2] = [
    (
        "app.py",
        include_str!("../../../sdk/templates/python/app.py"),
    ),
    (
        "test_app.py",
        include_str!("../../../sdk/templates/python/test_app.py"),
    ),
];

/// The checkout this binary was built from: its SDKs and WIT, by default.
fn default_sdk() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Creates the project `name` (a directory of that name) in `lang`.
pub fn new(name: &str, lang: Lang, sdk: Option<&Path>) -> Result<()> {
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
    let lang_name = match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
    };
    let own: &[Template] = match lang {
        Lang::Rust => &RUST,
        Lang::Python => &PYTHON,
    };
    for (path, text) in COMMON.iter().chain(own) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{file}}", &file)
            .replace("{{lang}}", lang_name)
            .replace("{{sdk}}", &sdk.display().to_string());
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    std::fs::write(dir.join(".gitignore"), "/target/\n*.wasm\n__pycache__/\n")?;
    let (build, test) = match lang {
        Lang::Rust => ("eddy build", "cargo test".to_owned()),
        Lang::Python => (
            "eddy build",
            format!(
                "PYTHONPATH={}/sdk/python python3 -m unittest",
                sdk.display()
            ),
        ),
    };
    println!(
        "created {name}/ ({lang_name} map plugin)\n  cd {name}\n  {build}           \
         # builds {file}\n  eddy run job.yaml    # its example job; compare with expected.jsonl\n  \
         {test}"
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

/// Builds the component of the project in the current directory.
pub fn build() -> Result<()> {
    let text = std::fs::read_to_string("plugin.yaml")
        .context("no plugin.yaml here: run `eddy build` in a project that `eddy new` created")?;
    let m: Manifest =
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("plugin.yaml: {e}"))?;
    match m.lang {
        Lang::Rust => build_rust(&m),
        Lang::Python => build_python(&m),
    }?;
    println!("built {}", m.component);
    Ok(())
}

/// Whether `program` runs at all (`--version`).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its output above says why");
    }
    Ok(())
}

fn build_rust(m: &Manifest) -> Result<()> {
    if !installed("cargo") {
        bail!("cargo is not installed: install Rust with rustup (https://rustup.rs)");
    }
    if installed("rustup") {
        let targets = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()?;
        if !String::from_utf8_lossy(&targets.stdout)
            .lines()
            .any(|t| t.trim() == "wasm32-wasip2")
        {
            bail!("the wasm32-wasip2 target is not installed: rustup target add wasm32-wasip2");
        }
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    run(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target_dir),
        "cargo build",
    )?;
    let built = target_dir
        .join("wasm32-wasip2/release")
        .join(m.name.replace('-', "_"))
        .with_extension("wasm");
    std::fs::copy(&built, &m.component)
        .with_context(|| format!("copying {} to {}", built.display(), m.component))?;
    Ok(())
}

fn build_python(m: &Manifest) -> Result<()> {
    if !installed("componentize-py") {
        bail!(
            "componentize-py is not installed: pip install componentize-py==0.25.1 \
             (Eddy's setup script installs it)"
        );
    }
    run(
        Command::new("componentize-py")
            .arg("-d")
            .arg(m.sdk.join("wit"))
            .args(["-w", &m.world, "componentize", "-p", "."])
            .arg("-p")
            .arg(m.sdk.join("sdk/python"))
            .args(["app", "-o", &m.component]),
        "componentize-py",
    )
}
