//! Builds plugin components from Rust, Python, JavaScript and C sources, each with its
//! language's own toolchain, against one checkout's WIT and SDKs. `eddy build` and the
//! test kit both build through here, so a plugin builds the same way everywhere.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::str::FromStr;

/// The languages a plugin can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust with the `eddy-sdk` crate, built by cargo for `wasm32-wasip2`.
    Rust,
    /// Python with `sdk/python`, built by componentize-py.
    Python,
    /// JavaScript with `sdk/js`, built by componentize-js.
    Js,
    /// C with `sdk/c`, built by wit-bindgen, clang (wasi-libc) and wasm-tools.
    C,
}

impl Lang {
    /// Every language, in the order the docs list them.
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

    /// The name used on the command line and in `plugin.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Lang::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown language {s:?}: use rust, python, js or c"))
    }
}

/// Why a plugin did not build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool the language needs is not installed.
    #[error("{program} is not installed: {install}")]
    Missing {
        /// The missing program or library.
        program: &'static str,
        /// How to install it.
        install: &'static str,
    },
    /// A tool ran and failed; it printed why.
    #[error("{what} failed ({status}); its output above says why")]
    Failed {
        /// The step that failed.
        what: &'static str,
        /// How it ended.
        status: ExitStatus,
    },
    /// Reading sources or writing outputs failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The language's SDK has no glue for this world yet.
    #[error("{lang} plugins implement {supported}, not the {world} world")]
    World {
        /// The plugin's language.
        lang: Lang,
        /// The world asked for.
        world: String,
        /// The worlds the SDK supports.
        supported: &'static str,
    },
}

/// One plugin to build.
#[derive(Clone, Copy, Debug)]
pub struct Plugin<'a> {
    /// Its language.
    pub lang: Lang,
    /// Its name; for Rust, the crate's name.
    pub name: &'a str,
    /// Its source directory (a cargo package for Rust; `app.py`, `app.js` or `*.c`).
    pub dir: &'a Path,
    /// The WIT world it implements, such as `map-plugin`.
    pub world: &'a str,
    /// The Eddy checkout whose `wit/` and `sdk/` it builds against.
    pub sdk: &'a Path,
    /// Scratch space for staged sources and intermediate files.
    pub work: &'a Path,
}

/// Builds `plugin` into the component file `out`.
pub fn build(plugin: &Plugin<'_>, out: &Path) -> Result<(), Error> {
    create_dir(plugin.work)?;
    match plugin.lang {
        Lang::Rust => build_rust(plugin, out),
        Lang::Python => build_python(plugin, out),
        Lang::Js => build_js(plugin, out),
        Lang::C => build_c(plugin, out),
    }
}

const RUSTUP: &str = "install Rust with rustup (https://rustup.rs)";
const WASIP2: &str = "rustup target add wasm32-wasip2";
const COMPONENTIZE_PY: &str = "pip install componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "npm install -g @bytecodealliance/componentize-js@0.23.0 \
     @bytecodealliance/preview2-shim@0.25.0 (needs Node.js 18 or later)";
const CLANG: &str = "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32";
const WIT_BINDGEN: &str = "cargo install --locked wit-bindgen-cli@0.63.0";
const WASM_TOOLS: &str = "cargo install --locked wasm-tools@1.263.0";

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require(program: &'static str, install: &'static str) -> Result<(), Error> {
    if installed(program) {
        Ok(())
    } else {
        Err(Error::Missing { program, install })
    }
}

/// Turns an I/O failure on `path` into an [`Error::Io`] naming it.
fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

fn run(cmd: &mut Command, what: &'static str) -> Result<(), Error> {
    let status = cmd.status().map_err(io_error(cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed { what, status })
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to).map(drop).map_err(io_error(from))
}

/// The files directly in `dir` whose names end in `suffix`, except test files, sorted.
fn sources(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let test = name.starts_with("test_") || name.contains(".test.") || name.contains("_test.");
        if name.ends_with(suffix) && !test && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn build_rust(p: &Plugin<'_>, out: &Path) -> Result<(), Error> {
    require("cargo", RUSTUP)?;
    if installed("rustup") {
        let targets = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(p.dir)
            .output()
            .map_err(io_error("rustup"))?;
        if !String::from_utf8_lossy(&targets.stdout)
            .lines()
            .any(|t| t.trim() == "wasm32-wasip2")
        {
            return Err(Error::Missing {
                program: "the wasm32-wasip2 target",
                install: WASIP2,
            });
        }
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| p.work.join("target"), PathBuf::from);
    run(
        Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(p.dir),
        "cargo build",
    )?;
    let built = target_dir
        .join("wasm32-wasip2/release")
        .join(p.name.replace('-', "_"))
        .with_extension("wasm");
    copy(&built, out)
}

fn build_python(p: &Plugin<'_>, out: &Path) -> Result<(), Error> {
    require("componentize-py", COMPONENTIZE_PY)?;
    run(
        Command::new("componentize-py")
            .arg("-d")
            .arg(p.sdk.join("wit"))
            .args(["-w", p.world, "componentize", "-p"])
            .arg(p.dir)
            .arg("-p")
            .arg(p.sdk.join("sdk/python"))
            .args(["app", "-o"])
            .arg(out),
        "componentize-py",
    )
}

/// The project's own componentize-js (`npm install` in it), else the one on PATH.
fn componentize_js(dir: &Path) -> Result<PathBuf, Error> {
    let local = dir.join("node_modules/.bin/componentize-js");
    if local.is_file() {
        return Ok(local);
    }
    require(
        "node",
        "install Node.js 18 or later (apt-get install nodejs)",
    )?;
    require("componentize-js", COMPONENTIZE_JS)?;
    Ok(PathBuf::from("componentize-js"))
}

/// Stages the plugin's modules beside the SDK's (they import `./eddy.js`) and builds
/// `app.js`; HTTP is disabled so the component imports only what Eddy provides.
fn build_js(p: &Plugin<'_>, out: &Path) -> Result<(), Error> {
    let tool = componentize_js(p.dir)?;
    let stage = p.work.join("js");
    create_dir(&stage)?;
    for file in sources(&p.sdk.join("sdk/js"), ".js")?
        .into_iter()
        .chain(sources(p.dir, ".js")?)
    {
        copy(&file, &stage.join(file.file_name().unwrap_or_default()))?;
    }
    run(
        Command::new(tool)
            .arg(stage.join("app.js"))
            .arg("--wit")
            .arg(p.sdk.join("wit"))
            .args(["--world-name", p.world, "-d", "http", "fetch-event", "-o"])
            .arg(out),
        "componentize-js",
    )
}

/// Generates the world's bindings, compiles them with the SDK, its glue for the world
/// and the plugin's `*.c` files, and wraps the module into a component (WASI preview 1
/// calls of wasi-libc adapted to preview 2).
fn build_c(p: &Plugin<'_>, out: &Path) -> Result<(), Error> {
    let glue = match p.world {
        "map-plugin" => "map.c",
        "filter-plugin" => "filter.c",
        "flat-map-plugin" => "flat_map.c",
        "process-plugin" => "process.c",
        world => {
            return Err(Error::World {
                lang: Lang::C,
                world: world.to_owned(),
                supported: "the map, filter, flat-map and process worlds",
            });
        }
    };
    require("clang", CLANG)?;
    require("wit-bindgen", WIT_BINDGEN)?;
    require("wasm-tools", WASM_TOOLS)?;
    let libc = Command::new("clang")
        .args(["--target=wasm32-wasi", "-print-file-name=libc.a"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !Path::new(&libc).is_absolute() {
        return Err(Error::Missing {
            program: "wasi-libc",
            install: CLANG,
        });
    }
    let gen_dir = p.work.join("bindings");
    run(
        Command::new("wit-bindgen")
            .arg("c")
            .arg(p.sdk.join("wit"))
            .args(["--world", p.world, "--rename-world", "plugin", "--out-dir"])
            .arg(&gen_dir),
        "wit-bindgen c",
    )?;
    let sdk = p.sdk.join("sdk/c");
    let core = p.work.join("core.wasm");
    run(
        Command::new("clang")
            .args([
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-Wall",
            ])
            .arg("-I")
            .arg(&gen_dir)
            .arg("-I")
            .arg(&sdk)
            .arg(gen_dir.join("plugin.c"))
            .arg(gen_dir.join("plugin_component_type.o"))
            .arg(sdk.join("eddy.c"))
            .arg(sdk.join(glue))
            .args(sources(p.dir, ".c")?)
            .arg("-o")
            .arg(&core),
        "clang",
    )?;
    let adapter = p.work.join("wasi_snapshot_preview1.reactor.wasm");
    std::fs::write(
        &adapter,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
    .map_err(io_error(&adapter))?;
    run(
        Command::new("wasm-tools")
            .args(["component", "new"])
            .arg(&core)
            .arg("--adapt")
            .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
            .arg("-o")
            .arg(out),
        "wasm-tools component new",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_by_their_names_and_unknown_ones_are_named() {
        for lang in Lang::ALL {
            assert_eq!(lang.name().parse::<Lang>(), Ok(lang));
        }
        let err = "go".parse::<Lang>().unwrap_err();
        assert!(err.contains("unknown language \"go\""), "{err}");
    }

    #[test]
    fn sources_skip_test_files_and_sort() {
        let dir = std::env::temp_dir().join(format!("eddy-toolchain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in [
            "b.js",
            "a.js",
            "app.test.js",
            "test_app.c",
            "x_test.c",
            "app.c",
            "notes.md",
        ] {
            std::fs::write(dir.join(f), "").expect("file");
        }
        let names = |suffix| -> Vec<String> {
            sources(&dir, suffix)
                .expect("read")
                .iter()
                .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(".js"), ["a.js", "b.js"]);
        assert_eq!(names(".c"), ["app.c"]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn c_plugins_name_the_worlds_they_support() {
        let dir = std::env::temp_dir();
        let plugin = Plugin {
            lang: Lang::C,
            name: "src",
            dir: &dir,
            world: "source-plugin",
            sdk: &dir,
            work: &dir,
        };
        let err = build(&plugin, &dir.join("out.wasm"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "c plugins implement the map, filter, flat-map and process worlds, not the source-plugin world"
        );
    }
}
