//! Errors of the WASM runtime, each naming the plugin file and, for calls, the export.

use std::path::PathBuf;

use eddy_core::{ErrorClass, OperatorError};

/// Why a plugin could not be loaded or a call into it failed.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The component file cannot be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component (or not one this engine accepts).
    #[error("plugin {path} is not a valid WebAssembly component: {message}")]
    Invalid {
        /// The component file.
        path: PathBuf,
        /// What the compiler reported.
        message: String,
    },
    /// The component does not export the interface the job's step needs.
    #[error(
        "plugin {path} does not implement the `{world}` world that a `{step_kind}` step needs: \
         it does not export `{expected}` (it exports: {exports})"
    )]
    WrongWorld {
        /// The component file.
        path: PathBuf,
        /// The world the step requires.
        world: &'static str,
        /// The job-file key of the step.
        step_kind: &'static str,
        /// The missing export.
        expected: String,
        /// What the component exports instead.
        exports: String,
    },
    /// The component needs imports the host does not grant.
    #[error("plugin {path} cannot be instantiated: {message}")]
    Link {
        /// The component file.
        path: PathBuf,
        /// What the linker reported.
        message: String,
    },
    /// The plugin trapped (panic, out-of-bounds access, unreachable...).
    #[error("plugin {plugin} trapped in `{export}`: {message}{}{}", quote(output), backtrace.as_deref().map(|b| format!("\n{b}")).unwrap_or_default())]
    Trap {
        /// The component file name.
        plugin: String,
        /// The export that was running.
        export: String,
        /// The trap.
        message: String,
        /// The plugin's last lines of stderr, which hold a panic message.
        output: Vec<String>,
        /// The guest's call stack, when known.
        backtrace: Option<String>,
        /// Whether the same input traps again: fuel and stack are spent alike on every
        /// replay, while a panic or a missed CPU deadline may depend on the world.
        class: ErrorClass,
    },
    /// The plugin returned an error on purpose.
    #[error("plugin {plugin} failed in `{export}`{}: {message}", at_event(*event, event_value))]
    Plugin {
        /// The component file name.
        plugin: String,
        /// The export that was running.
        export: String,
        /// Index of the offending event in its input batch.
        event: Option<u32>,
        /// A preview of that event's value.
        event_value: Option<String>,
        /// The plugin's message.
        message: String,
    },
    /// The plugin returned something that breaks the contract of its export.
    #[error("plugin {plugin} broke the contract of `{export}`: {message}")]
    Contract {
        /// The component file name.
        plugin: String,
        /// The export that was running.
        export: String,
        /// What is wrong with the result.
        message: String,
    },
    /// The engine itself could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
}

impl WasmError {
    /// Whether a restart can get past this error. A plugin that breaks its contract, a
    /// component that is not valid or not of the step's world, do so on every run; a
    /// trap is classified where it happens; a plugin error on purpose may come from its
    /// input or from the world around it (the WIT `plugin-error` does not say which),
    /// so it is retried unless it recurs unchanged.
    pub fn class(&self) -> ErrorClass {
        match self {
            WasmError::Read { source, .. } => ErrorClass::of_io(source),
            WasmError::Invalid { .. } | WasmError::WrongWorld { .. } => ErrorClass::USER_FATAL,
            WasmError::Contract { .. } => ErrorClass::USER_FATAL,
            // Instantiation can also fail for want of a free instance slot or memory.
            WasmError::Link { .. } => ErrorClass::USER_UNCERTAIN,
            WasmError::Trap { class, .. } => *class,
            WasmError::Plugin { .. } => ErrorClass::USER_UNCERTAIN,
            WasmError::Engine(_) => ErrorClass::INTERNAL,
        }
    }

    /// This error as the failure of step `step`, keeping its class.
    pub fn for_step(self, step: &str) -> OperatorError {
        let class = self.class();
        OperatorError::new(step, self).with_class(class)
    }
}

fn quote(output: &[String]) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\nplugin stderr:\n  {}", output.join("\n  "))
    }
}

fn at_event(event: Option<u32>, value: &Option<String>) -> String {
    match (event, value) {
        (Some(i), Some(v)) => format!(" on event {i} of its batch ({v})"),
        (Some(i), None) => format!(" on event {i} of its batch"),
        _ => String::new(),
    }
}
