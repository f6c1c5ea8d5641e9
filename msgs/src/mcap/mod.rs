//! MCAP recording of riptide's ROS 2 messages: one channel per topic, `ros2msg` schemas (the types' `SCHEMA`
//! text), CDR payloads, so that recordings open in Foxglove and the standard MCAP tools.
//!
//! Recordings must survive the process dying (a `kill -9`, a crash, a power cut with [`RecorderOptions::sync`]).
//! [`McapRecorder`] therefore builds each chunk in memory and hands it to the OS in one piece once it reaches
//! [`RecorderOptions::chunk_size`] bytes or [`RecorderOptions::max_chunk_age`], so a crash loses at most the chunk
//! being built. Such a file lacks its summary and footer, so Foxglove and the `mcap` tools refuse it;
//! [`McapEpisode`] does not need them: it reads the file record by record from the start (the `mcap` crate's
//! sans-io `LinearReader` frames and parses the records and checks chunk CRCs), stops at the first truncated or
//! invalid record and keeps everything before it (chunks are all-or-nothing). [`recover`] rewrites such a file
//! as a finished one that those tools open.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use riptide_msgs::mcap::{McapEpisode, McapRecorder};
//! use riptide_msgs::ros::{Clock, Time};
//!
//! let mut rec = McapRecorder::create("episode.mcap")?;
//! rec.write_metadata("episode", &BTreeMap::from([("seed".to_string(), "7".to_string())]))?;
//! rec.write("/clock", 1_000, &Clock { clock: Time { sec: 0, nanosec: 1_000 } })?;
//! rec.finish()?;
//!
//! let ep = McapEpisode::open("episode.mcap")?;
//! for m in ep.messages() {
//!     let clock: Clock = m.decode()?;
//!     println!("{} {} {} {:?}", m.topic, m.type_name, m.log_time_ns, clock);
//! }
//! # Ok::<(), riptide_msgs::mcap::McapError>(())
//! ```
//!
//! The reader holds the whole file in memory (message payloads are slices of it) and reads uncompressed chunks
//! only, which is what the recorder writes; compressed chunks from other tools end the read with a clear reason.

mod error;
mod reader;
mod types;
mod writer;

use std::path::Path;

pub use error::{McapError, Truncation};
pub use reader::{ChannelInfo, McapEpisode, MetadataRecord, RecordedMessage};
pub use types::{canonical_type_name, schema_for_type_name};
pub use writer::{McapRecorder, RecorderOptions};

// ------------------------------------------------------------------------------------------------
// Recovery

/// What [`recover`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub messages: usize,
    pub channels: usize,
    pub metadata: usize,
    /// Where the input's read stopped (`None`: the input was complete).
    pub truncation: Option<Truncation>,
}

/// Read `path` as far as it is intact and write everything found — channels with their schemas, metadata,
/// messages in log-time order with their times — to `out_path` as a finished MCAP file.
pub fn recover(path: impl AsRef<Path>, out_path: impl AsRef<Path>) -> Result<RecoveryReport, McapError> {
    let (path, out_path) = (path.as_ref(), out_path.as_ref());
    let same = match (std::fs::canonicalize(path), std::fs::canonicalize(out_path)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(McapError::SamePath {
            path: path.to_path_buf(),
        });
    }
    let episode = McapEpisode::open(path)?;
    let mut out = McapRecorder::create(out_path)?;
    for m in episode.metadata() {
        out.write_metadata(&m.name, &m.entries)?;
    }
    for (m, c) in episode.messages_with_channels() {
        out.write_record(
            &writer::Channel {
                topic: &c.topic,
                schema_name: &c.type_name,
                schema_encoding: &c.schema_encoding,
                schema: &c.schema,
                message_encoding: &c.message_encoding,
            },
            m.log_time_ns,
            m.publish_time_ns,
            m.data,
        )?;
    }
    out.finish()?;
    Ok(RecoveryReport {
        messages: episode.message_count(),
        channels: episode.channels().iter().filter(|c| c.message_count > 0).count(),
        metadata: episode.metadata().len(),
        truncation: episode.truncation().cloned(),
    })
}
