//! [`MavlinkError`], the errors of the MAVLink back-end.

use crate::validate::ConfigError;

/// Errors of the MAVLink back-end.
#[derive(Debug, thiserror::Error)]
pub enum MavlinkError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection could not be opened.
    #[error("cannot open MAVLink connection `{connection}`: {source}")]
    Connect {
        /// The connection string.
        connection: String,
        /// Why.
        source: std::io::Error,
    },
    /// A link thread could not be started.
    #[error("cannot start the MAVLink {which} thread: {source}")]
    Spawn {
        /// `sender` or `receiver`.
        which: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A setpoint with a NaN or infinite value: never sent.
    #[error("setpoint is not finite: {0:?}")]
    NonFinite([f64; 4]),
    /// A command whose position is not `[x, y, z, yaw]`.
    #[error("a MAVLink setpoint is [x, y, z, yaw]; got {0} values")]
    Dimension(usize),
    /// [`MavlinkLink::land`](super::MavlinkLink::land) was called: this link no longer streams setpoints (open a new one to fly again).
    #[error("the vehicle was told to land; setpoints are no longer streamed")]
    Landing,
}
