//! The built-in operators: key-by, where, select and rolling, windows, and joins.

pub mod builtin;
pub mod join;
pub mod window;
