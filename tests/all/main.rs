//! End-to-end tests: the real `eddy` binary runs job files whose operators are the
//! example plugins, built into components by `eddy-testkit`'s build script.

mod cases;
mod cli;
mod cluster;
mod dashboard;
mod deploy;
mod engine;
mod ha;
mod kafka;
mod native;
mod nexmark;
mod polyglot;
mod project;
mod recovery;
mod sandbox;
mod support;
mod time;
