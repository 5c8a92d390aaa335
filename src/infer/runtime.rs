//! Loading ONNX Runtime (ort's `load-dynamic`): find libonnxruntime, load it once per process and
//! keep the one ort environment alive for every session.
//!
//! ort panics on first use when it cannot find the library, so everything that touches ort goes
//! through [`environment`], which fails with a [`RuntimeError`] that says where it looked.
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

/// File name of the pinned ONNX Runtime library.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found; tried: {}. Fix: set the library path in the config, \
         or export ORT_DYLIB_PATH=/path/to/{ORT_LIBRARY_FILE}, or run scripts/setup in the checkout",
        display_paths(.tried)
    )]
    NotFound { tried: Vec<PathBuf> },
    #[error("could not load ONNX Runtime from {}: {why}", .path.display())]
    Load { path: PathBuf, why: String },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no candidate path)".into();
    }
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

struct Loaded {
    path: PathBuf,
    env: Environment,
}

/// ort allows one library and one environment per process; the first successful init wins.
static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads ONNX Runtime once per process and returns the path it was loaded from.
///
/// Candidates, first existing wins: `library` (from the config), env `ORT_DYLIB_PATH`,
/// `<exe dir>/../lib/affectd/` (installed layout), the checkout's native library directory baked
/// in at compile time (`AFFECTD_NATIVE_LIB_DIR`). Later calls return the already loaded path,
/// whatever they ask for (ort cannot unload or switch libraries).
pub fn init(library: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    init_env(library).map(|loaded| loaded.0)
}

/// The process-wide ort environment, loading the library from the default candidates if nothing
/// has been loaded yet.
pub fn environment() -> Result<Environment, RuntimeError> {
    init_env(None).map(|loaded| loaded.1)
}

fn init_env(library: Option<&Path>) -> Result<(PathBuf, Environment), RuntimeError> {
    let mut guard = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(loaded) = guard.as_ref() {
        if let Some(requested) = library {
            if requested != loaded.path {
                tracing::warn!(
                    requested = %requested.display(),
                    loaded = %loaded.path.display(),
                    "ONNX Runtime is already loaded; keeping the loaded library"
                );
            }
        }
        return Ok((loaded.path.clone(), loaded.env.clone()));
    }
    let tried = candidates(library);
    if let Some(configured) = library.filter(|p| !p.is_file()) {
        tracing::warn!(
            path = %configured.display(),
            "configured ONNX Runtime library does not exist; trying the default locations"
        );
    }
    let path =
        tried
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound {
                tried: tried.clone(),
            })?;
    // ort resolves relative paths against the executable's directory; make ours absolute first.
    let path = std::path::absolute(&path).unwrap_or(path);
    let load_error = |why: String| RuntimeError::Load {
        path: path.clone(),
        why,
    };
    let env = ort::init_from(&path)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("affectd")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    tracing::info!(path = %path.display(), "loaded ONNX Runtime");
    *guard = Some(Loaded {
        path: path.clone(),
        env: env.clone(),
    });
    Ok((path, env))
}

/// Candidate library paths in order of preference.
fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("../lib/affectd").join(ORT_LIBRARY_FILE));
    }
    if let Some(dir) = option_env!("AFFECTD_NATIVE_LIB_DIR") {
        out.push(Path::new(dir).join(ORT_LIBRARY_FILE));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_path_comes_first_and_missing_paths_are_all_named() {
        let wanted = Path::new("/nonexistent/affectd-test/libonnxruntime.so");
        let list = candidates(Some(wanted));
        assert_eq!(list[0], wanted);
        assert!(list
            .iter()
            .any(|p| p.ends_with(Path::new("lib/affectd").join(ORT_LIBRARY_FILE))));
        let err = RuntimeError::NotFound { tried: list }.to_string();
        assert!(
            err.contains("/nonexistent/affectd-test/libonnxruntime.so"),
            "{err}"
        );
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
    }

    #[test]
    fn init_loads_the_checkout_library_and_is_idempotent() {
        let first = init(None).expect("ONNX Runtime loads from the checkout's native dir");
        assert!(first.ends_with(ORT_LIBRARY_FILE), "{}", first.display());
        let again = init(Some(Path::new("/nonexistent/other.so"))).unwrap();
        assert_eq!(first, again);
        environment().unwrap();
    }
}
