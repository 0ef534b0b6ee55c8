//! Test-only hooks that make file operations on named paths misbehave, for error
//! paths no real file reaches when the tests run as root (a read that fails) or
//! that need a writer at an exact moment (a file changed while it is scanned).
//! Keyed by path, so tests running at once in other directories are not touched.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The paths a hook is armed for.
pub(crate) struct PathHook(Mutex<Vec<PathBuf>>);

impl PathHook {
    pub(crate) const fn new() -> PathHook {
        PathHook(Mutex::new(Vec::new()))
    }

    fn paths(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the hook is armed for `path`.
    pub(crate) fn armed(&self, path: &Path) -> bool {
        self.paths().iter().any(|p| p == path)
    }

    /// Arms the hook for `path` until the guard is dropped.
    pub(crate) fn arm(&'static self, path: PathBuf) -> Armed {
        self.paths().push(path.clone());
        Armed { hook: self, path }
    }
}

/// Disarms its hook for its path when dropped.
#[must_use = "the hook is disarmed when this is dropped"]
pub(crate) struct Armed {
    hook: &'static PathHook,
    path: PathBuf,
}

impl Drop for Armed {
    fn drop(&mut self) {
        let mut paths = self.hook.paths();
        if let Some(at) = paths.iter().position(|p| *p == self.path) {
            paths.remove(at);
        }
    }
}

/// Reads of the index checkpoints at its paths fail with an I/O error
/// (`index/checkpoint_data.rs`).
pub(crate) static FAILING_CHECKPOINT_READS: PathHook = PathHook::new();
