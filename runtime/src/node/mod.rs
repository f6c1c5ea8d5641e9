//! What every riptide node shares: its zenoh session, its clock, its metrics, rate-limited logging
//! and one shutdown path. Nodes (daemon, driver, sim, recorder) build on this; it imports none of them.

pub mod clock;
pub mod log;
pub mod metrics;
pub mod network;
pub mod shutdown;

pub use clock::{now_s, Clock};
pub use log::RateLimitedLog;
pub use metrics::{Metrics, RobotMetrics};
pub use network::{wait_alive, ZenohConfig, ZenohMode, DEFAULT_ENDPOINT};
pub use shutdown::Shutdown;
