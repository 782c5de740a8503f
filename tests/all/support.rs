//! Running the `eddy` binary the way a user does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eddy_testkit::plugins::PLUGIN_DIR;

/// The `eddy` command in `cwd` with a test-local component cache, quiet logs and no
/// plugin directory from the environment.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cmd.args(args)
        .current_dir(cwd)
        .env(
            "EDDY_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("eddy-cache"),
        )
        .env("EDDY_LOG", "warn")
        .env_remove("EDDY_PLUGIN_DIR")
        .env_remove("EDDY_CLUSTER")
        .env_remove("EDDY_TOKEN");
    cmd
}

/// Runs `eddy` to completion.
pub fn eddy(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd)
        .output()
        .expect("cannot start the eddy binary")
}

/// The directory with every built example plugin.
pub fn plugin_dir() -> &'static str {
    PLUGIN_DIR
}

/// A fresh scratch directory for one test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory named after `test`.
    pub fn new(test: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("scratch")
            .join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create scratch dir");
        Scratch(dir)
    }

    /// A copy of the case folder `case`, with every example plugin linked beside it
    /// (a case's own `.wasm` files come first).
    pub fn with_case(test: &str, case: &Path) -> Scratch {
        let scratch = Scratch::new(test);
        for entry in std::fs::read_dir(case).expect("case folder") {
            let entry = entry.expect("case entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), scratch.0.join(entry.file_name()))
                    .expect("copy case file");
            }
        }
        scratch.link_plugins();
        scratch
    }

    /// A new directory with every example plugin linked in it.
    pub fn with_plugins(test: &str) -> Scratch {
        let scratch = Scratch::new(test);
        scratch.link_plugins();
        scratch
    }

    fn link_plugins(&self) {
        for entry in std::fs::read_dir(PLUGIN_DIR).expect("plugin dir") {
            let path = entry.expect("plugin entry").path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let link = self.0.join(path.file_name().expect("file name"));
                if !link.exists() {
                    std::os::unix::fs::symlink(&path, link).expect("link plugin");
                }
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A failed test keeps its directory, to be looked at.
        if std::thread::panicking() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stdout and stderr as text, for assertions.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Kills a spawned process when dropped, so a failing test leaves nothing running.
pub struct ChildGuard(pub std::process::Child);

/// The URL of the API that `eddy run --ui` (started with its stderr piped) prints;
/// the rest of its stderr is drained on a thread of its own.
pub fn ui_address(child: &mut ChildGuard) -> String {
    use std::io::BufRead;
    let stderr = child.0.stderr.take().expect("stderr piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("eddy run --ui prints its address")
            .expect("stderr");
        if let Some((_, url)) = line.split_once("REST API on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    url
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a free port, for a process that must be told its address
/// before it starts.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}
