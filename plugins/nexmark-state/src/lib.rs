//! The Nexmark queries' stateful steps as a process-function component: joins, per-key
//! maxima and averages, window tops (see the `nexmark` crate).

eddy_sdk::export_process!(nexmark::Stateful);
