//! Compiled components cached on disk by content hash, so a plugin compiles once per
//! machine and engine configuration, not once per run.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::WasmError;

/// A directory of precompiled components.
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// Feeds `Hash` output into SHA-256 so the engine's compatibility hash is stable.
struct Sha(Sha256);

impl Hasher for Sha {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir`, created on first write.
    pub fn new(dir: PathBuf) -> Self {
        ComponentCache { dir }
    }

    /// The default location: `$EDDY_CACHE_DIR`, else `$XDG_CACHE_HOME/eddy` or
    /// `~/.cache/eddy`, with a `components` subdirectory.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("EDDY_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("eddy")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/eddy")))?;
        Some(base.join("components"))
    }

    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut sha = Sha(Sha256::new());
        sha.0.update(bytes);
        engine.precompile_compatibility_hash().hash(&mut sha);
        let digest = sha.0.finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.cwasm"))
    }

    /// The component compiled from `bytes`, from the cache when present.
    pub fn load(&self, engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Component, WasmError> {
        let entry = self.entry(engine, bytes);
        if entry.is_file() {
            // SAFETY: the entry was written by `Engine::precompile_component` of an engine
            // with the same compatibility hash (it is part of the file name) into the
            // user's own cache directory; a damaged entry fails to deserialize and is
            // recompiled below.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), "recompiling damaged cache entry: {e}")
                }
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| WasmError::Invalid {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?;
        if let Err(e) = write_atomically(&entry, &compiled) {
            tracing::warn!(entry = %entry.display(), "cannot write component cache: {e}");
        }
        // SAFETY: `compiled` was produced just now by this engine's own precompiler.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| WasmError::Invalid {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
