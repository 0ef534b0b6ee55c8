//! The operator tools: `nano-wal inspect DIR`, `nano-wal verify DIR` and
//! `nano-wal dump DIR [--key K | --key-hex H] [--format text|hex|json]`.
//!
//! All three go through `nano_wal::inspect`: the directory is opened read-only, its
//! lock is not taken and nothing is modified. On a live WAL they see what is on disk at
//! that moment, so the last record of a newest segment may appear torn. `inspect`
//! and `dump` exit 0 even on a damaged WAL (damage is shown, or warned about on
//! stderr), and 1 when the directory cannot be read; `verify`'s exit codes are in
//! `verify.rs`.

mod dump;
mod inspect;
mod output;
mod verify;

pub use dump::{dump, DumpArgs};
pub use inspect::{inspect, InspectArgs};
pub use verify::{verify, VerifyArgs};
