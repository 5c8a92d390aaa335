//! Hot swap: watch files (the model, the config) with notify and report changes, debounced.
//!
//! Models are installed by rename (temp file, fsync, rename), which replaces the directory entry,
//! so the watch is on the parent directory and events are matched by file name. Loading and
//! validating a new model happens on the watcher's side; the inference thread only receives a
//! ready [`Model`] and swaps it in between two windows.
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use notify::{RecursiveMode, Watcher};

use crate::infer::model::Model;
use crate::infer::Refusal;

/// How long a file must stay quiet after a change before it is reported (an install writes,
/// fsyncs and renames: several events for one change).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Keeps the OS watch alive; dropping it stops the watch and the debounce thread.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `files` and sends a file's path on `changed` after each (debounced) change.
pub fn watch_files(files: &[PathBuf], changed: Sender<PathBuf>) -> notify::Result<FileWatcher> {
    // Bounded: the debounce thread does nothing but drain it; if it is ever full, the events
    // dropped are repeats of changes already queued for the same few files.
    let (raw_tx, raw_rx) = crossbeam_channel::bounded::<PathBuf>(1024);
    let targets: Vec<PathBuf> = files.to_vec();
    let names: HashSet<(PathBuf, OsString)> = targets
        .iter()
        .filter_map(|p| Some((parent_dir(p), p.file_name()?.to_os_string())))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths {
            let Some(name) = path.file_name() else {
                continue;
            };
            if let Some(target) = targets
                .iter()
                .find(|t| t.file_name() == Some(name) && parent_dir(t) == parent_dir(&path))
            {
                let _ = raw_tx.try_send(target.clone());
            }
        }
    })?;
    let dirs: HashSet<PathBuf> = names.iter().map(|(dir, _)| dir.clone()).collect();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new()
        .name("file-watch".into())
        .spawn(move || debounce(raw_rx, changed))
        .expect("spawn file-watch thread");
    Ok(FileWatcher { _watcher: watcher })
}

/// Coalesces bursts of events per file; ends when the watcher (the sender side) is dropped.
fn debounce(raw: Receiver<PathBuf>, changed: Sender<PathBuf>) {
    let mut pending: Vec<PathBuf> = Vec::new();
    loop {
        let next = if pending.is_empty() {
            raw.recv().map_err(|_| ())
        } else {
            match raw.recv_timeout(DEBOUNCE) {
                Ok(p) => Ok(p),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    for path in pending.drain(..) {
                        if changed.send(path).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(()),
            }
        };
        match next {
            Ok(path) if !pending.contains(&path) => pending.push(path),
            Ok(_) => {}
            Err(()) => return,
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Outcome of trying a changed model file.
pub enum ModelCandidate {
    /// Loaded, validated, different from the one serving: swap it in.
    Ready(Box<Model>),
    /// Same content as the serving model (a touch, a re-install of the same file).
    Unchanged,
    Rejected(Refusal),
}

/// Loads and validates a model file off the inference thread. `serves` checks the contract
/// against what the running pipeline produces.
pub fn try_model(
    path: &Path,
    intra_threads: usize,
    current_id: &str,
    serves: impl Fn(&Model) -> Result<(), Refusal>,
) -> ModelCandidate {
    match Model::load(path, intra_threads) {
        Ok(model) if model.id() == current_id => ModelCandidate::Unchanged,
        Ok(model) => match serves(&model) {
            Ok(()) => ModelCandidate::Ready(Box::new(model)),
            Err(why) => ModelCandidate::Rejected(why),
        },
        Err(e) => ModelCandidate::Rejected(Refusal::from(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_renamed_in_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model.onnx");
        std::fs::write(&target, b"old").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let _w = watch_files(std::slice::from_ref(&target), tx).unwrap();
        // An atomic install: write a temp file, then rename over the target.
        let tmp = dir.path().join(".model.onnx.tmp");
        std::fs::write(&tmp, b"new").unwrap();
        std::fs::rename(&tmp, &target).unwrap();
        // An unrelated file in the same directory is not reported.
        std::fs::write(dir.path().join("other.txt"), b"x").unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, target);
        assert!(
            rx.recv_timeout(DEBOUNCE * 3).is_err(),
            "one change is reported once"
        );
    }
}
