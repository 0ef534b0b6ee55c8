//! `nano-wal crash-child` and `nano-wal crash-loop`: the kill -9 crash test.
//!
//! - `child.rs`: the child, which ingests from many threads until it is killed;
//! - `record.rs`: the self-describing records it writes, and how they are checked;
//! - `parent.rs`: the loop that spawns, kills and checks the child, cycle by cycle;
//! - `check.rs`: the checks after each reopen; `figures.rs`: the totals printed.

mod check;
mod child;
mod figures;
mod parent;
mod record;

pub use child::{run_child, ChildArgs};
pub use parent::{run_loop, LoopArgs};
