//! Fuzzes the decoders of the on-disk format: records, the resynchronising scanner
//! recovery uses over damage, and segment headers. Every invariant is checked inside
//! `nano_wal::fuzzing::check_decoders`, which panics when one breaks.
//!
//! Run: `cargo +nightly fuzz run decode` from the repository root (see
//! `fuzz/README.md`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nano_wal::fuzzing::check_decoders(data);
});
