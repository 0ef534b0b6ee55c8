//! Read-only inspection of a WAL directory, for the operator tools.

mod checkpoint_check;
mod scan;

pub use scan::*;
