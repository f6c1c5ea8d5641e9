//! Configuration validation: [`ConfigError`] and the checks the constructors share.

/// A configuration value that failed validation. `key` is the dotted path of the offending key, e.g.
/// `safety.position_min[2]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted path of the bad key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` put before the key.
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}.{}", self.key);
        self
    }
}

/// Checks that `value` is finite, naming `key` otherwise.
pub(crate) fn require_finite(key: impl Into<String>, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("must be finite (got {value})")))
    }
}

/// Checks that `value` is finite and > 0, naming `key` otherwise.
pub(crate) fn require_positive(key: impl Into<String>, value: f64) -> Result<(), ConfigError> {
    let key = key.into();
    require_finite(key.clone(), value)?;
    if value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("must be > 0 (got {value})")))
    }
}
