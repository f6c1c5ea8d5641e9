//! What every riptide node shares: its zenoh session, its clock, its metrics, rate-limited logging
//! and one shutdown path. Nodes (daemon, driver, sim, recorder) build on this; it imports none of them.

pub mod clock;
pub mod log;
pub mod metrics;
pub mod network;
pub mod ros2;
pub mod shutdown;

pub use clock::{now_s, Clock};
pub use log::RateLimitedLog;
pub use metrics::{Metrics, RobotMetrics};
pub use network::{wait_alive, ZenohConfig, ZenohMode, DEFAULT_ENDPOINT};
pub use ros2::{Graph, Publisher, Ros2Args, Ros2Config, Ros2Settings, RosType, Subscription, Topic};
pub use shutdown::Shutdown;
