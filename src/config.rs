//! affectd's configuration: one TOML file, every key documented in config/README.md, the defaults
//! written out in config/affectd.toml.
//!
//! Loading is strict: unknown keys, wrong types and bad values are errors that name the key
//! (`features.hop_s: must be > 0 and <= features.window_s (got 2)`). Relative paths are resolved
//! against the directory of the config file. [`Config::reload_plan`] says which changed keys a
//! running daemon applies live and which need a restart.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Keys a running daemon applies on reload (SIGHUP or a change of the file); every other changed
/// key is reported as needing a restart.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "inference.smoothing_tau_s",
    "outputs.jsonl.enabled",
    "outputs.jsonl.path",
];

/// The value of `outputs.jsonl.path` that means standard output.
pub const STDOUT_PATH: &str = "-";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML{}: {message}", line_suffix(*.line))]
    Syntax {
        message: String,
        line: Option<usize>,
    },
    #[error("{key}: unknown key{}{}", line_suffix(*.line), expected_suffix(.expected))]
    UnknownKey {
        key: String,
        expected: String,
        line: Option<usize>,
    },
    #[error("{key}: {message}{}", line_suffix(*.line))]
    Invalid {
        key: String,
        message: String,
        line: Option<usize>,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn expected_suffix(expected: &str) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!("; expected one of {expected}")
    }
}

impl ConfigError {
    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
            line: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub lsl: LslConfig,
    pub stream: StreamConfig,
    pub features: FeaturesConfig,
    pub model: ModelConfig,
    pub inference: InferenceConfig,
    pub outputs: OutputsConfig,
    pub metrics: MetricsConfig,
    pub record: RecordConfig,
    pub simulate: SimulateConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing EnvFilter directive string, e.g. "info" or "info,affectd::infer=debug".
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslConfig {
    /// An lsl_api.cfg for liblsl (exported as LSLAPICFG before liblsl starts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_config: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    #[serde(rename = "type")]
    pub stream_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    pub no_data_timeout_s: f64,
    pub ring_seconds: f64,
    pub waiting_log_interval_s: f64,
    /// Unit of channels whose stream description declares none ("uV", "mV", "V", "nV").
    pub default_unit: String,
    /// Least share of the model's trained grid cells the stream must fill to be served.
    pub min_coverage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    pub window_s: f64,
    pub hop_s: f64,
    /// Line-noise notch frequency; 0 = off.
    pub notch_hz: f64,
    /// [low, high] band-pass edges; empty = off.
    pub bandpass_hz: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub watch: bool,
    pub intra_threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnxruntime_library: Option<PathBuf>,
    /// Serve a model trained on features from other code (its contract says so). Off: such a
    /// model is refused at start and on hot swap.
    pub allow_foreign_features: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Time constant of the exponential smoothing of the probabilities; 0 = off.
    pub smoothing_tau_s: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    pub lsl: LslOutputConfig,
    pub jsonl: JsonlOutputConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslOutputConfig {
    pub enabled: bool,
    pub name: String,
    pub source_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlOutputConfig {
    pub enabled: bool,
    /// "-" = stdout, else a file that is appended to.
    pub path: PathBuf,
}

impl JsonlOutputConfig {
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == STDOUT_PATH
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    pub enabled: bool,
    pub directory: PathBuf,
    /// LSL stream types of the marker streams that are recorded beside the EEG.
    pub marker_types: Vec<String>,
    pub rotate_max_mb: u64,
    pub rotate_max_minutes: f64,
    pub flush_interval_s: f64,
    /// Record affectd's own Emotion output too.
    pub record_output: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// Channel labels; None = SEED's 62-channel montage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    pub sample_rate_hz: f64,
    pub effect_strength: f64,
    pub state_duration_s: f64,
    pub seed: u64,
    pub line_freq_hz: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            stream_type: "EEG".into(),
            name: None,
            source_id: None,
            no_data_timeout_s: 2.0,
            ring_seconds: 10.0,
            waiting_log_interval_s: 5.0,
            default_unit: crate::features::units::MICROVOLTS.into(),
            min_coverage: 0.5,
        }
    }
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            window_s: 1.0,
            hop_s: 0.25,
            notch_hz: 50.0,
            bandpass_hz: vec![1.0, 50.0],
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::from("../models/affectd-int8.onnx"),
            watch: true,
            intra_threads: 1,
            onnxruntime_library: None,
            allow_foreign_features: false,
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            smoothing_tau_s: 1.0,
        }
    }
}

impl Default for LslOutputConfig {
    fn default() -> Self {
        LslOutputConfig {
            enabled: true,
            name: "affectd-emotion".into(),
            source_id: "affectd-emotion".into(),
        }
    }
}

impl Default for JsonlOutputConfig {
    fn default() -> Self {
        JsonlOutputConfig {
            enabled: true,
            path: PathBuf::from(STDOUT_PATH),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: false,
            directory: PathBuf::from("../sessions"),
            marker_types: vec!["Markers".into()],
            rotate_max_mb: 1024,
            rotate_max_minutes: 60.0,
            flush_interval_s: 0.5,
            record_output: true,
        }
    }
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            channels: None,
            sample_rate_hz: 200.0,
            effect_strength: 1.0,
            state_duration_s: 20.0,
            seed: 1,
            line_freq_hz: 50.0,
        }
    }
}

impl Default for Config {
    /// The built-in defaults, with relative paths as written (relative to the directory of a
    /// config file; see [`Config::with_base_dir`]).
    fn default() -> Self {
        Config {
            log: LogConfig::default(),
            lsl: LslConfig::default(),
            stream: StreamConfig::default(),
            features: FeaturesConfig::default(),
            model: ModelConfig::default(),
            inference: InferenceConfig::default(),
            outputs: OutputsConfig::default(),
            metrics: MetricsConfig::default(),
            record: RecordConfig::default(),
            simulate: SimulateConfig::default(),
        }
    }
}

/// What a reload changes: keys applied live, keys that only take effect after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadPlan {
    pub live: Vec<String>,
    pub restart: Vec<String>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

impl Config {
    /// Reads, parses, resolves and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::from_toml_str(&text, base)
    }

    /// Parses and validates TOML text; relative paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        // Paths are kept as TOML strings (reload_plan compares configs as TOML).
        if base_dir.to_str().is_none() {
            return Err(ConfigError::Read {
                path: base_dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the config file's directory is not valid UTF-8",
                ),
            });
        }
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    message: e.message().to_owned(),
                    line: e.span().map(|s| line_of(text, s.start)),
                })?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| deserialize_error(text, &e))?;
        let config = config.with_base_dir(base_dir);
        config.validate()?;
        Ok(config)
    }

    /// Resolves the relative paths of this config against `base_dir`.
    pub fn with_base_dir(mut self, base_dir: &Path) -> Config {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        if let Some(p) = self.lsl.api_config.as_mut() {
            resolve(p);
        }
        resolve(&mut self.model.path);
        if let Some(p) = self.model.onnxruntime_library.as_mut() {
            resolve(p);
        }
        if !self.outputs.jsonl.is_stdout() {
            resolve(&mut self.outputs.jsonl.path);
        }
        resolve(&mut self.record.directory);
        self
    }

    /// Checks every value; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("not a tracing filter ({e}) (got {:?})", self.log.level),
            ));
        }
        if let Some(p) = &self.lsl.api_config {
            require_file("lsl.api_config", p)?;
        }

        let s = &self.stream;
        non_empty("stream.type", &s.stream_type)?;
        if let Some(n) = &s.name {
            non_empty("stream.name", n)?;
        }
        if let Some(n) = &s.source_id {
            non_empty("stream.source_id", n)?;
        }
        positive("stream.no_data_timeout_s", s.no_data_timeout_s)?;
        if crate::features::units::to_microvolts(&s.default_unit).is_none() {
            return Err(ConfigError::invalid(
                "stream.default_unit",
                format!(
                    "must be a voltage unit: uV, mV, V or nV (got {:?})",
                    s.default_unit
                ),
            ));
        }
        if !(0.0..=1.0).contains(&s.min_coverage) {
            return Err(ConfigError::invalid(
                "stream.min_coverage",
                format!("must be between 0 and 1 (got {:?})", s.min_coverage),
            ));
        }
        positive("stream.waiting_log_interval_s", s.waiting_log_interval_s)?;

        let f = &self.features;
        positive("features.window_s", f.window_s)?;
        if !(f.hop_s.is_finite() && f.hop_s > 0.0 && f.hop_s <= f.window_s) {
            return Err(ConfigError::invalid(
                "features.hop_s",
                format!("must be > 0 and <= features.window_s (got {:?})", f.hop_s),
            ));
        }
        if !(s.ring_seconds.is_finite() && s.ring_seconds >= f.window_s + f.hop_s) {
            return Err(ConfigError::invalid(
                "stream.ring_seconds",
                format!(
                    "must hold at least one window plus one hop ({} s) (got {:?})",
                    f.window_s + f.hop_s,
                    s.ring_seconds
                ),
            ));
        }
        non_negative("features.notch_hz", f.notch_hz)?;
        match f.bandpass_hz.as_slice() {
            [] => {}
            [lo, hi] if lo.is_finite() && hi.is_finite() && *lo > 0.0 && lo < hi => {}
            other => {
                return Err(ConfigError::invalid(
                    "features.bandpass_hz",
                    format!("must be [] (off) or [low, high] with 0 < low < high (got {other:?})"),
                ))
            }
        }

        let m = &self.model;
        if m.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("model.path", "must not be empty"));
        }
        if m.intra_threads == 0 {
            return Err(ConfigError::invalid(
                "model.intra_threads",
                "must be >= 1 (got 0)",
            ));
        }
        if let Some(p) = &m.onnxruntime_library {
            require_file("model.onnxruntime_library", p)?;
        }

        non_negative("inference.smoothing_tau_s", self.inference.smoothing_tau_s)?;

        let o = &self.outputs;
        non_empty("outputs.lsl.name", &o.lsl.name)?;
        non_empty("outputs.lsl.source_id", &o.lsl.source_id)?;
        if o.jsonl.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "outputs.jsonl.path",
                "must be \"-\" (stdout) or a file",
            ));
        }

        let r = &self.record;
        if r.directory.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "record.directory",
                "must not be empty",
            ));
        }
        for t in &r.marker_types {
            non_empty("record.marker_types", t)?;
        }
        if r.rotate_max_mb == 0 {
            return Err(ConfigError::invalid(
                "record.rotate_max_mb",
                "must be >= 1 (got 0)",
            ));
        }
        positive("record.rotate_max_minutes", r.rotate_max_minutes)?;
        if !(r.flush_interval_s.is_finite()
            && r.flush_interval_s > 0.0
            && r.flush_interval_s <= 1.0)
        {
            return Err(ConfigError::invalid(
                "record.flush_interval_s",
                format!("must be > 0 and <= 1.0 (got {:?})", r.flush_interval_s),
            ));
        }

        let sim = &self.simulate;
        if let Some(ch) = &sim.channels {
            if ch.is_empty() {
                return Err(ConfigError::invalid(
                    "simulate.channels",
                    "must list at least one label (omit the key for SEED's 62 channels)",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for c in ch {
                non_empty("simulate.channels", c)?;
                if !seen.insert(c.to_ascii_lowercase()) {
                    return Err(ConfigError::invalid(
                        "simulate.channels",
                        format!("duplicate label {c:?}"),
                    ));
                }
            }
        }
        positive("simulate.sample_rate_hz", sim.sample_rate_hz)?;
        non_negative("simulate.effect_strength", sim.effect_strength)?;
        positive("simulate.state_duration_s", sim.state_duration_s)?;
        non_negative("simulate.line_freq_hz", sim.line_freq_hz)?;
        if sim.line_freq_hz >= sim.sample_rate_hz / 2.0 {
            return Err(ConfigError::invalid(
                "simulate.line_freq_hz",
                format!(
                    "must be below the Nyquist frequency of simulate.sample_rate_hz ({} Hz) (got {:?})",
                    sim.sample_rate_hz / 2.0,
                    sim.line_freq_hz
                ),
            ));
        }
        Ok(())
    }

    /// Compares this (running) config with a newly loaded one, key by key.
    pub fn reload_plan(&self, new: &Config) -> ReloadPlan {
        let old = flatten(self);
        let new = flatten(new);
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut plan = ReloadPlan::default();
        for k in keys {
            if old.get(k) != new.get(k) {
                if LIVE_KEYS.contains(&k.as_str()) {
                    plan.live.push(k.clone());
                } else {
                    plan.restart.push(k.clone());
                }
            }
        }
        plan
    }

    /// Takes the [`LIVE_KEYS`] values from `new`, keeping everything else: the config a running
    /// daemon actually has after a reload.
    pub fn apply_live(&mut self, new: &Config) {
        self.log.level.clone_from(&new.log.level);
        self.inference.smoothing_tau_s = new.inference.smoothing_tau_s;
        self.outputs.jsonl.clone_from(&new.outputs.jsonl);
    }

    /// Every key of this config, dotted (`features.hop_s`), with its value as TOML.
    pub fn flat_keys(&self) -> BTreeMap<String, toml::Value> {
        flatten(self)
    }
}

/// Loads and validates a config file and says in one paragraph what the daemon would do with it
/// (`affectd check-config FILE`).
pub fn check(path: impl AsRef<Path>) -> Result<String, ConfigError> {
    let path = path.as_ref();
    let c = Config::load(path)?;
    let mut s = format!("{}: valid. ", path.display());
    let stream = &c.stream;
    let _ = write!(s, "Reads the LSL stream of type {:?}", stream.stream_type);
    if let Some(n) = &stream.name {
        let _ = write!(s, " named {n:?}");
    }
    if let Some(id) = &stream.source_id {
        let _ = write!(s, " with source_id {id:?}");
    }
    let f = &c.features;
    let _ = write!(
        s,
        "; {} s windows every {} s, notch {}, band-pass {}; ",
        f.window_s,
        f.hop_s,
        if f.notch_hz > 0.0 {
            format!("{} Hz", f.notch_hz)
        } else {
            "off".into()
        },
        match f.bandpass_hz.as_slice() {
            [lo, hi] => format!("{lo}-{hi} Hz"),
            _ => "off".into(),
        }
    );
    let _ = write!(
        s,
        "model {}{}{}, {} intra-op thread(s), smoothing tau {} s; outputs:",
        c.model.path.display(),
        if c.model.path.is_file() {
            ""
        } else {
            " (NOT FOUND yet)"
        },
        if c.model.watch { " (watched)" } else { "" },
        c.model.intra_threads,
        c.inference.smoothing_tau_s
    );
    let mut outs = Vec::new();
    if c.outputs.lsl.enabled {
        outs.push(format!(" LSL outlet {:?}", c.outputs.lsl.name));
    }
    if c.outputs.jsonl.enabled {
        outs.push(if c.outputs.jsonl.is_stdout() {
            " JSON lines to stdout".to_owned()
        } else {
            format!(" JSON lines to {}", c.outputs.jsonl.path.display())
        });
    }
    if c.metrics.enabled {
        outs.push(format!(" metrics on http://{}/metrics", c.metrics.listen));
    }
    if outs.is_empty() {
        outs.push(" none".into());
    }
    s.push_str(&outs.join(","));
    if c.record.enabled {
        let _ = write!(
            s,
            "; records sessions to {} (marker types {:?}, rotating at {} MB or {} min)",
            c.record.directory.display(),
            c.record.marker_types,
            c.record.rotate_max_mb,
            c.record.rotate_max_minutes
        );
    } else {
        s.push_str("; recording off");
    }
    let _ = write!(s, "; log level {:?}.", c.log.level);
    Ok(s)
}

fn flatten(c: &Config) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    // Cannot fail: string keys, finite-or-not floats, and UTF-8 paths (from_toml_str refuses a
    // non-UTF-8 base directory; TOML strings are UTF-8).
    let v = toml::Value::try_from(c).expect("config serializes to TOML");
    walk("", &v, &mut out);
    out
}

/// Turns toml's deserialization error (which ends with "in `a.b`") into one that names the key.
fn deserialize_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let display = e.to_string();
    let path = display
        .rsplit_once("\nin `")
        .and_then(|(_, rest)| rest.trim_end().strip_suffix('`'))
        .map(str::to_owned)
        .unwrap_or_default();
    let message = e.message().to_owned();
    // The line comes from a second parse straight from the text, whose errors carry spans.
    let line = toml::from_str::<Config>(text)
        .err()
        .and_then(|e| e.span())
        .map(|s| line_of(text, s.start));
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected = tail
                .trim_start_matches(", expected ")
                .trim_start_matches("one of ")
                .to_owned();
            return ConfigError::UnknownKey {
                key: join(field),
                expected,
                line,
            };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            return ConfigError::Invalid {
                key: join(field),
                message: "missing".into(),
                line,
            };
        }
    }
    ConfigError::Invalid {
        key: if path.is_empty() {
            "(top level)".into()
        } else {
            path
        },
        message,
        line,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be > 0 (got {v:?})"),
        ))
    }
}

fn non_negative(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be >= 0 (got {v:?})"),
        ))
    }
}

fn non_empty(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(ConfigError::invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

fn require_file(key: &str, p: &Path) -> Result<(), ConfigError> {
    if p.is_file() {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("no such file: {}", p.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/affectd"))
    }

    fn err_key(text: &str) -> (String, String) {
        let e = parse(text).expect_err(text);
        (e.key().unwrap_or("").to_owned(), e.to_string())
    }

    #[test]
    fn empty_file_is_the_defaults_resolved() {
        let c = parse("").unwrap();
        assert_eq!(
            c,
            Config::default().with_base_dir(Path::new("/etc/affectd"))
        );
        assert_eq!(
            c.model.path,
            Path::new("/etc/affectd/../models/affectd-int8.onnx")
        );
        assert!(c.outputs.jsonl.is_stdout());
    }

    #[test]
    fn absolute_and_relative_paths() {
        let c = parse("[model]\npath = \"/opt/m.onnx\"\n[outputs.jsonl]\npath = \"out.jsonl\"\n")
            .unwrap();
        assert_eq!(c.model.path, Path::new("/opt/m.onnx"));
        assert_eq!(c.outputs.jsonl.path, Path::new("/etc/affectd/out.jsonl"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let (k, msg) = err_key("[features]\nhop_s = 2.0\n");
        assert_eq!(k, "features.hop_s");
        assert_eq!(
            msg,
            "features.hop_s: must be > 0 and <= features.window_s (got 2.0)"
        );
        assert_eq!(
            err_key("[record]\nflush_interval_s = 1.5\n").0,
            "record.flush_interval_s"
        );
        assert_eq!(
            err_key("[features]\nbandpass_hz = [40.0, 4.0]\n").0,
            "features.bandpass_hz"
        );
        assert_eq!(err_key("[log]\nlevel = \"=][\"\n").0, "log.level");
        assert_eq!(
            err_key("[model]\nintra_threads = 0\n").0,
            "model.intra_threads"
        );
        assert_eq!(
            err_key("[stream]\nring_seconds = 1.0\n").0,
            "stream.ring_seconds"
        );
        assert_eq!(
            err_key("[lsl]\napi_config = \"nope.cfg\"\n").0,
            "lsl.api_config"
        );
        assert_eq!(
            err_key("[simulate]\nchannels = [\"Fp1\", \"FP1\"]\n").0,
            "simulate.channels"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let e = parse("[features]\nwindow_s = 1.0\nhopp_s = 0.25\n").unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
        assert_eq!(e.key(), Some("features.hopp_s"));
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(
            e.to_string().contains("hop_s"),
            "lists what is expected: {e}"
        );

        assert_eq!(
            parse("[outputs.jsonl]\nenable = true\n").unwrap_err().key(),
            Some("outputs.jsonl.enable")
        );
        assert_eq!(parse("[foo]\n").unwrap_err().key(), Some("foo"));

        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.key(), Some("metrics.listen"), "{e}");
        let e = parse("[features]\nwindow_s = \"1s\"\n").unwrap_err();
        assert_eq!(e.key(), Some("features.window_s"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse("[record]\nmarker_types = \"Markers\"\n").unwrap_err();
        assert_eq!(e.key(), Some("record.marker_types"), "{e}");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = parse("[log]\nlevel = \n").unwrap_err();
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(2), .. }),
            "{e:?}"
        );
    }

    #[test]
    fn integers_are_accepted_for_seconds() {
        let c = parse("[features]\nwindow_s = 2\nhop_s = 1\n").unwrap();
        assert_eq!((c.features.window_s, c.features.hop_s), (2.0, 1.0));
    }

    #[test]
    fn reload_plan_classifies_changed_keys() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(old.reload_plan(&new).is_empty());
        new.log.level = "debug".into();
        new.inference.smoothing_tau_s = 0.0;
        new.features.hop_s = 0.5;
        new.stream.name = Some("Muse".into());
        let plan = old.reload_plan(&new);
        assert_eq!(plan.live, ["inference.smoothing_tau_s", "log.level"]);
        assert_eq!(plan.restart, ["features.hop_s", "stream.name"]);
    }
    #[test]
    fn apply_live_takes_exactly_the_live_keys() {
        let old = Config::default();
        let mut new = old.clone();
        new.log.level = "debug".into();
        new.inference.smoothing_tau_s = 3.0;
        new.outputs.jsonl.enabled = false;
        new.outputs.jsonl.path = "/tmp/x.jsonl".into();
        new.features.window_s = 2.0;
        let mut effective = old.clone();
        effective.apply_live(&new);
        // Every live key changed is now equal; the restart key is still pending.
        let plan = effective.reload_plan(&new);
        assert!(plan.live.is_empty(), "{plan:?}");
        assert_eq!(plan.restart, ["features.window_s"]);
        assert_eq!(old.reload_plan(&new).live.len(), LIVE_KEYS.len());
    }
}
