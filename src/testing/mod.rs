//! Code that exists only for tests: the in-memory storage, fault hooks, the
//! power-cut model, the loom model helpers and the fuzzing entry points.

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
#[cfg(test)]
pub(crate) mod hooks;
#[cfg(any(test, loom))]
pub(crate) mod mem_storage;
#[cfg(loom)]
pub mod model;
#[cfg(all(test, not(loom)))]
mod power_cut;
#[cfg(all(test, not(loom)))]
mod storage_contract;
