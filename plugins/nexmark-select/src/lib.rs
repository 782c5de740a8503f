//! The Nexmark queries' first step as a flat-map component: picks and reshapes the
//! events a query reads (see the `nexmark` crate).

eddy_sdk::export_flat_map!(nexmark::Select);
