//! SIGHUP reload of the config file: an invalid file is refused as a whole (the running config
//! stays, the error names the key, `affectd_config_reloads_total{result="error"}` counts it); of
//! a valid one the live keys are applied and the keys that need a restart are named.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError, ReloadPlan};
use crate::outputs::metrics::{Event, Metrics};

use super::logging::ReloadHandle;

pub struct ConfigReloader {
    path: PathBuf,
    effective: Config,
    log: Option<ReloadHandle>,
    metrics: Arc<Metrics>,
}

impl ConfigReloader {
    /// `running` is the config the daemon started with, loaded from `path`.
    pub fn new(
        path: impl Into<PathBuf>,
        running: Config,
        log: Option<ReloadHandle>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ConfigReloader {
            path: path.into(),
            effective: running,
            log,
            metrics,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force: the start-up one with every live change applied.
    pub fn effective(&self) -> &Config {
        &self.effective
    }

    /// Re-reads the file. On success the log level is already applied; the caller applies the
    /// other keys of `plan.live` from [`ConfigReloader::effective`].
    pub fn reload(&mut self) -> Result<ReloadPlan, ConfigError> {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "reload of {} refused, keeping the running config: {e}",
                    self.path.display()
                );
                self.metrics.emit(Event::ConfigReloaded { ok: false });
                return Err(e);
            }
        };
        let plan = self.effective.reload_plan(&new);
        if plan.live.iter().any(|k| k == "log.level") {
            if let Some(log) = &self.log {
                // Validation already parsed the filter, so this only fails if the subscriber
                // is gone.
                if let Err(e) = log.set_level(&new.log.level) {
                    tracing::warn!("{e}");
                }
            }
        }
        self.effective.apply_live(&new);
        if plan.is_empty() {
            tracing::info!("reloaded {}: nothing changed", self.path.display());
        } else {
            if !plan.live.is_empty() {
                tracing::info!(
                    "reloaded {}: applied {}",
                    self.path.display(),
                    plan.live.join(", ")
                );
            }
            if !plan.restart.is_empty() {
                tracing::warn!(
                    "reloaded {}: changed keys that need a restart to take effect: {}",
                    self.path.display(),
                    plan.restart.join(", ")
                );
            }
        }
        self.metrics.emit(Event::ConfigReloaded { ok: true });
        Ok(plan)
    }
}
