//! liblsl's process-wide configuration. liblsl reads its API config file (multicast scope,
//! known peers, IPv6) once, at its first call, from the path in the `LSLAPICFG` environment
//! variable. Call [`configure`] at the very start of `main`, before any thread is spawned and
//! before anything touches liblsl (setting an environment variable is not thread-safe, and a later
//! change is ignored by liblsl anyway).
use std::path::{Path, PathBuf};

/// The environment variable liblsl reads its config path from.
pub const LSLAPICFG: &str = "LSLAPICFG";

#[derive(Debug, thiserror::Error)]
pub enum LslEnvError {
    #[error("LSL api config file {path} is not a readable file: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Points liblsl at `api_config` if one is given (an explicit setting wins over an inherited
/// `LSLAPICFG`); with `None` the environment is left alone, so an inherited `LSLAPICFG` or
/// liblsl's own search (lsl_api.cfg in the working directory, ~/lsl_api/, /etc/lsl_api/) applies.
/// The file must exist: liblsl would otherwise ignore it silently and fall back to multicast
/// defaults that find nothing on loopback-only machines.
pub fn configure(api_config: Option<&Path>) -> Result<(), LslEnvError> {
    let Some(path) = api_config else {
        return Ok(());
    };
    std::fs::File::open(path).map_err(|source| LslEnvError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    std::env::set_var(LSLAPICFG, path);
    tracing::info!(path = %path.display(), "liblsl api config");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_named_in_the_error() {
        let err = configure(Some(Path::new("/nonexistent/lsl_api.cfg"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/lsl_api.cfg"),
            "{err}"
        );
    }

    #[test]
    fn none_leaves_the_environment_alone() {
        let before = std::env::var_os(LSLAPICFG);
        configure(None).unwrap();
        assert_eq!(std::env::var_os(LSLAPICFG), before);
    }
}
