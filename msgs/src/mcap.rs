//! MCAP recording of riptide's ROS 2 messages: one channel per topic, `ros2msg` schemas (the types' `SCHEMA`
//! text), CDR payloads, so that recordings open in Foxglove and the standard MCAP tools.
//!
//! Recordings must survive the process dying (a `kill -9`, a crash, a power cut with [`RecorderOptions::sync`]).
//! [`McapRecorder`] therefore builds each chunk in memory and hands it to the OS in one piece once it reaches
//! [`RecorderOptions::chunk_size`] bytes or [`RecorderOptions::max_chunk_age`], so a crash loses at most the chunk
//! being built. Such a file lacks its summary and footer; [`McapEpisode`] does not need them: it reads the file
//! record by record from the start, stops at the first truncated or invalid record and keeps everything before
//! it (chunks are all-or-nothing, checked by their CRC). [`recover`] rewrites such a file as a finished one.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{ros, MsgError, RosMessage, MESSAGE_ENCODING, SCHEMA_ENCODING};

/// The 8 bytes that open and close every MCAP file.
const MAGIC: &[u8; 8] = b"\x89MCAP0\r\n";

// MCAP record opcodes (https://mcap.dev/spec).
const OP_HEADER: u8 = 0x01;
const OP_FOOTER: u8 = 0x02;
const OP_SCHEMA: u8 = 0x03;
const OP_CHANNEL: u8 = 0x04;
const OP_MESSAGE: u8 = 0x05;
const OP_CHUNK: u8 = 0x06;
const OP_METADATA: u8 = 0x0C;

/// Everything that can go wrong recording or reading an MCAP file. Messages name the file and, for file
/// contents, the record and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum McapError {
    /// Opening, reading or creating a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start like an MCAP file (magic and Header record); nothing in it can be trusted.
    #[error("{}: not an MCAP file: {reason}", path.display())]
    NotMcap { path: PathBuf, reason: String },
    /// The file is damaged or unfinished (returned by [`McapEpisode::check_complete`]).
    #[error("{}: {damage}", path.display())]
    Damaged { path: PathBuf, damage: Truncation },
    /// The `mcap` writer failed (usually an I/O error underneath).
    #[error("{}: writing MCAP: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: ::mcap::McapError,
    },
    /// A topic was given a second message type (or a different schema for the same type).
    #[error("{}: topic {topic:?} is recorded as {existing}, cannot also record {requested} on it", path.display())]
    TopicConflict {
        path: PathBuf,
        topic: String,
        existing: String,
        requested: String,
    },
    /// A message could not be CDR-encoded.
    #[error("{}: encoding {type_name} for topic {topic:?}: {source}", path.display())]
    Encode {
        path: PathBuf,
        topic: String,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`RecordedMessage::decode`] was asked for a type other than the channel's.
    #[error("message on {topic:?} at {log_time_ns} ns is {actual:?}, not {expected}")]
    TypeMismatch {
        topic: String,
        log_time_ns: u64,
        actual: String,
        expected: &'static str,
    },
    /// A recorded payload is not valid CDR for its type.
    #[error("message on {topic:?} at {log_time_ns} ns does not decode as {type_name}: {source}")]
    Decode {
        topic: String,
        log_time_ns: u64,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`recover`] was asked to overwrite its input.
    #[error("{}: recover would overwrite its own input", path.display())]
    SamePath { path: PathBuf },
}

/// Where and why a linear read stopped before a finished file's end. Everything before `offset` was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset of the record that could not be used (the file's length if it simply ended).
    pub offset: u64,
    /// Index of that record among the file's top-level records (0 is the Header).
    pub record: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} at byte {}: {} (everything before it was kept)",
            self.record, self.offset, self.reason
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Type names and schemas

macro_rules! known_types {
    ($($ty:ident),* $(,)?) => { &[$((ros::$ty::TYPE_NAME, ros::$ty::SCHEMA)),*] };
}

/// `(TYPE_NAME, SCHEMA)` of every message type in [`crate::ros`].
const KNOWN_TYPES: &[(&str, &str)] = known_types![
    Time,
    Duration,
    Header,
    StringMsg,
    Clock,
    MultiArrayDimension,
    MultiArrayLayout,
    Float32MultiArray,
    Image,
    JointState,
    Point,
    Vector3,
    Quaternion,
    Pose,
    PoseStamped,
    Twist,
    TwistStamped,
    Transform,
    JointTrajectoryPoint,
    JointTrajectory,
    MultiDOFJointTrajectoryPoint,
    MultiDOFJointTrajectory,
    ChunkMeta,
];

/// The canonical `pkg/msg/Type` name of a type in [`crate::ros`], given in any of the spellings live ROS 2
/// graphs use: `sensor_msgs/msg/Image`, `sensor_msgs/Image` or rmw's `sensor_msgs::msg::dds_::Image_`.
pub fn canonical_type_name(type_name: &str) -> Option<&'static str> {
    let (pkg, name) = split_type_name(type_name)?;
    KNOWN_TYPES
        .iter()
        .map(|(known, _)| *known)
        .find(|known| split_type_name(known) == Some((pkg, name)))
}

/// The `ros2msg` schema text of a type in [`crate::ros`] (any spelling [`canonical_type_name`] accepts), so
/// that live topics whose type is only known by name can be recorded with [`McapRecorder::write_raw`].
pub fn schema_for_type_name(type_name: &str) -> Option<&'static str> {
    let canonical = canonical_type_name(type_name)?;
    KNOWN_TYPES
        .iter()
        .find(|(known, _)| *known == canonical)
        .map(|(_, schema)| *schema)
}

/// `(package, Type)` of `pkg/msg/Type`, `pkg/Type` or `pkg::msg::dds_::Type_`.
fn split_type_name(type_name: &str) -> Option<(&str, &str)> {
    if let Some((pkg, rest)) = type_name.split_once("::msg::dds_::") {
        return Some((pkg, rest.strip_suffix('_').unwrap_or(rest)));
    }
    let mut parts = type_name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(pkg), Some("msg"), Some(name), None) | (Some(pkg), Some(name), None, None)
            if !pkg.is_empty() && !name.is_empty() =>
        {
            Some((pkg, name))
        }
        _ => None,
    }
}

/// Whether a recorded type name denotes `T` (spellings may differ between recorders).
fn same_type(recorded: &str, wanted: &str) -> bool {
    recorded == wanted || matches!((split_type_name(recorded), split_type_name(wanted)), (Some(a), Some(b)) if a == b)
}

// ------------------------------------------------------------------------------------------------
// Writer

/// How [`McapRecorder`] cuts chunks and makes them durable.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// A chunk is written out once it holds this many bytes (default 256 KiB): the most a crash can lose
    /// besides what `max_chunk_age` bounds. A message larger than this gets a chunk of its own.
    pub chunk_size: u64,
    /// A chunk is also written out, at the next write, once its first message is this old (default 1 s), so a
    /// slow stream does not sit in memory. `None`: size only.
    pub max_chunk_age: Option<Duration>,
    /// `fsync` (data only) after each chunk, metadata record and at finish (default off). Without it a written
    /// chunk survives the process dying but not the machine losing power.
    pub sync: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        Self {
            chunk_size: 256 * 1024,
            max_chunk_age: Some(Duration::from_secs(1)),
            sync: false,
        }
    }
}

/// The file under the `mcap` writer: writes go straight to the OS (no user-space buffer to lose in a crash),
/// `flush` is `fsync` when asked for, and the position is tracked so `stream_position` costs no syscall.
struct SinkFile {
    file: File,
    pos: u64,
    sync: bool,
}

impl Write for SinkFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.sync {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }
}

impl Seek for SinkFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(pos)?;
        Ok(self.pos)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

/// The channel a topic was registered with, to reject a second type on it.
struct TopicChannel {
    id: u16,
    schema_name: String,
    schema_encoding: String,
    schema: Vec<u8>,
    message_encoding: String,
    sequence: u32,
}

/// Records ROS 2 messages to an MCAP file, one channel per topic, crash-safe chunk by chunk (see the module
/// docs). Dropping it without [`McapRecorder::finish`] still finishes the file, ignoring errors.
pub struct McapRecorder {
    path: PathBuf,
    writer: Option<::mcap::Writer<SinkFile>>,
    options: RecorderOptions,
    topics: HashMap<String, TopicChannel>,
    /// Approximate bytes in the chunk being built.
    chunk_bytes: u64,
    /// When the chunk being built got its first message.
    chunk_started: Option<Instant>,
    messages: u64,
    durable_messages: u64,
    scratch: Vec<u8>,
}

/// Bytes a Message record adds besides its payload (opcode, length, channel, sequence, two times).
const MESSAGE_OVERHEAD: u64 = 1 + 8 + 2 + 4 + 8 + 8;

impl McapRecorder {
    /// Create (or truncate) `path` with the default [`RecorderOptions`].
    pub fn create(path: impl AsRef<Path>) -> Result<Self, McapError> {
        Self::create_with(path, RecorderOptions::default())
    }

    /// Create (or truncate) `path`. The magic and Header record are on disk when this returns.
    pub fn create_with(path: impl AsRef<Path>, options: RecorderOptions) -> Result<Self, McapError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| McapError::Io {
            path: path.clone(),
            source,
        })?;
        let sink = SinkFile {
            file,
            pos: 0,
            sync: options.sync,
        };
        // Chunks are buffered in memory (disable_seeking) and closed by us (chunk_size None): the file only ever
        // receives whole chunks, and we know when one has gone out.
        let writer = ::mcap::WriteOptions::new()
            .compression(None)
            .profile("ros2")
            .library(format!("riptide-msgs {}", env!("CARGO_PKG_VERSION")))
            .use_chunks(true)
            .chunk_size(None)
            .disable_seeking(true)
            .create(sink)
            .map_err(|source| McapError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            writer: Some(writer),
            options,
            topics: HashMap::new(),
            chunk_bytes: 0,
            chunk_started: None,
            messages: 0,
            durable_messages: 0,
            scratch: Vec::new(),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Messages written so far.
    pub fn message_count(&self) -> u64 {
        self.messages
    }

    /// Messages in chunks already handed to the OS: what a reader gets back if the process dies now.
    pub fn durable_message_count(&self) -> u64 {
        self.durable_messages
    }

    /// Record `msg` on `topic` (CDR, `ros2msg` schema of `T`). The first message on a topic registers its schema
    /// and channel; a later one of another type is an error.
    pub fn write<T: RosMessage>(&mut self, topic: &str, log_time_ns: u64, msg: &T) -> Result<(), McapError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let result = match crate::encode_into(msg, &mut buf) {
            Ok(()) => self.write_record(
                topic,
                T::TYPE_NAME,
                SCHEMA_ENCODING,
                T::SCHEMA.as_bytes(),
                MESSAGE_ENCODING,
                log_time_ns,
                log_time_ns,
                &buf,
            ),
            Err(source) => Err(McapError::Encode {
                path: self.path.clone(),
                topic: topic.to_string(),
                type_name: T::TYPE_NAME,
                source,
            }),
        };
        self.scratch = buf;
        result
    }

    /// Record an already CDR-encoded payload of a type known by name (e.g. from a live topic), with its
    /// `ros2msg` schema text ([`schema_for_type_name`] has riptide's). `type_name` becomes the schema name,
    /// which Foxglove expects as `pkg/msg/Type`: riptide's types are stored under that spelling whichever one
    /// is given (`sensor_msgs::msg::dds_::Image_` → `sensor_msgs/msg/Image`), others as given.
    pub fn write_raw(
        &mut self,
        topic: &str,
        type_name: &str,
        schema_text: &str,
        log_time_ns: u64,
        payload: &[u8],
    ) -> Result<(), McapError> {
        let type_name = canonical_type_name(type_name).unwrap_or(type_name);
        self.write_record(
            topic,
            type_name,
            SCHEMA_ENCODING,
            schema_text.as_bytes(),
            MESSAGE_ENCODING,
            log_time_ns,
            log_time_ns,
            payload,
        )
    }

    /// Write a Metadata record (episode seed, environment config JSON, ...). This closes the current chunk
    /// first, so everything written so far becomes durable.
    pub fn write_metadata(&mut self, name: &str, entries: &BTreeMap<String, String>) -> Result<(), McapError> {
        let metadata = ::mcap::records::Metadata {
            name: name.to_string(),
            metadata: entries.clone(),
        };
        let path = self.path.clone();
        let writer = self.writer_mut()?;
        writer
            .write_metadata(&metadata)
            .and_then(|()| writer.flush())
            .map_err(|source| McapError::Write { path, source })?;
        self.chunk_written();
        Ok(())
    }

    /// Write out the chunk being built now (and `fsync` if [`RecorderOptions::sync`]).
    pub fn flush(&mut self) -> Result<(), McapError> {
        let path = self.path.clone();
        self.writer_mut()?
            .flush()
            .map_err(|source| McapError::Write { path, source })?;
        self.chunk_written();
        Ok(())
    }

    /// Write out the chunk being built if it is older than [`RecorderOptions::max_chunk_age`] (writes check this
    /// themselves; call it from a timer when a stream may go quiet). Returns whether a chunk was written.
    pub fn flush_if_due(&mut self) -> Result<bool, McapError> {
        let due = match (self.chunk_started, self.options.max_chunk_age) {
            (Some(started), Some(age)) => started.elapsed() >= age,
            _ => false,
        };
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// Write the last chunk, the summary (schemas, channels, statistics, indexes) and the footer.
    pub fn finish(mut self) -> Result<(), McapError> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<(), McapError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        writer.finish().map_err(|source| McapError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.chunk_written();
        Ok(())
    }

    fn writer_mut(&mut self) -> Result<&mut ::mcap::Writer<SinkFile>, McapError> {
        // Only `finish` takes the writer, and it consumes `self`; Drop is the only other caller.
        self.writer.as_mut().ok_or_else(|| McapError::Io {
            path: self.path.clone(),
            source: io::Error::other("recorder already finished"),
        })
    }

    fn chunk_written(&mut self) {
        self.chunk_bytes = 0;
        self.chunk_started = None;
        self.durable_messages = self.messages;
    }

    /// The one write path: check or register the topic's channel, append the message, close the chunk when
    /// due. Also used by [`recover`] to copy channels with their original encodings and times.
    #[allow(clippy::too_many_arguments)]
    fn write_record(
        &mut self,
        topic: &str,
        schema_name: &str,
        schema_encoding: &str,
        schema: &[u8],
        message_encoding: &str,
        log_time_ns: u64,
        publish_time_ns: u64,
        payload: &[u8],
    ) -> Result<(), McapError> {
        let path = self.path.clone();
        let wrap = |source| McapError::Write {
            path: path.clone(),
            source,
        };
        let (channel_id, sequence) = match self.topics.get_mut(topic) {
            Some(channel) => {
                if channel.schema_name != schema_name
                    || channel.schema_encoding != schema_encoding
                    || channel.schema != schema
                    || channel.message_encoding != message_encoding
                {
                    let same_name = channel.schema_name == schema_name;
                    return Err(McapError::TopicConflict {
                        path: self.path.clone(),
                        topic: topic.to_string(),
                        existing: channel.schema_name.clone(),
                        requested: if same_name {
                            format!("{schema_name} with a different schema or encoding")
                        } else {
                            schema_name.to_string()
                        },
                    });
                }
                let sequence = channel.sequence;
                channel.sequence = channel.sequence.wrapping_add(1);
                (channel.id, sequence)
            }
            None => {
                let writer = self.writer_mut()?;
                let schema_id = writer.add_schema(schema_name, schema_encoding, schema).map_err(wrap)?;
                let id = writer
                    .add_channel(schema_id, topic, message_encoding, &BTreeMap::new())
                    .map_err(wrap)?;
                self.chunk_bytes += (schema.len() + topic.len() + schema_name.len() + 64) as u64;
                self.topics.insert(
                    topic.to_string(),
                    TopicChannel {
                        id,
                        schema_name: schema_name.to_string(),
                        schema_encoding: schema_encoding.to_string(),
                        schema: schema.to_vec(),
                        message_encoding: message_encoding.to_string(),
                        sequence: 1,
                    },
                );
                (id, 0)
            }
        };
        let header = ::mcap::records::MessageHeader {
            channel_id,
            sequence,
            log_time: log_time_ns,
            publish_time: publish_time_ns,
        };
        self.writer_mut()?
            .write_to_known_channel(&header, payload)
            .map_err(wrap)?;
        self.messages += 1;
        self.chunk_bytes += payload.len() as u64 + MESSAGE_OVERHEAD;
        let started = *self.chunk_started.get_or_insert_with(Instant::now);
        let too_old = self.options.max_chunk_age.is_some_and(|age| started.elapsed() >= age);
        if self.chunk_bytes >= self.options.chunk_size || too_old {
            self.flush()?;
        }
        Ok(())
    }
}

impl Drop for McapRecorder {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

// ------------------------------------------------------------------------------------------------
// Reader

/// A channel of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// MCAP channel id.
    pub id: u16,
    pub topic: String,
    /// Schema name: the ROS type name, e.g. `sensor_msgs/msg/Image` (empty if the channel has no schema).
    pub type_name: String,
    /// `ros2msg` for riptide's recordings.
    pub schema_encoding: String,
    /// The schema text (bytes, as stored).
    pub schema: Vec<u8>,
    /// `cdr` for riptide's recordings.
    pub message_encoding: String,
    /// Messages read on this channel.
    pub message_count: u64,
}

/// A Metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRecord {
    pub name: String,
    pub entries: BTreeMap<String, String>,
}

/// One recorded message; `data` is the CDR payload as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedMessage<'a> {
    pub topic: &'a str,
    pub type_name: &'a str,
    pub log_time_ns: u64,
    pub publish_time_ns: u64,
    pub sequence: u32,
    pub data: &'a [u8],
}

impl RecordedMessage<'_> {
    /// Decode as `T`, after checking that the channel's type is `T`.
    pub fn decode<T: RosMessage>(&self) -> Result<T, McapError> {
        if !same_type(self.type_name, T::TYPE_NAME) {
            return Err(McapError::TypeMismatch {
                topic: self.topic.to_string(),
                log_time_ns: self.log_time_ns,
                actual: self.type_name.to_string(),
                expected: T::TYPE_NAME,
            });
        }
        crate::decode(self.data).map_err(|source| McapError::Decode {
            topic: self.topic.to_string(),
            log_time_ns: self.log_time_ns,
            type_name: T::TYPE_NAME,
            source,
        })
    }
}

/// Where a message lives in the file.
#[derive(Debug, Clone, Copy)]
struct MessageRef {
    /// Index into `channels`.
    channel: usize,
    log_time: u64,
    publish_time: u64,
    sequence: u32,
    start: usize,
    end: usize,
}

/// A recording read back: channels, metadata and messages in log-time order. Opens finished files and files
/// cut short by a crash alike (see [`McapEpisode::truncation`]).
pub struct McapEpisode {
    path: PathBuf,
    data: Vec<u8>,
    channels: Vec<ChannelInfo>,
    metadata: Vec<MetadataRecord>,
    messages: Vec<MessageRef>,
    truncation: Option<Truncation>,
}

impl McapEpisode {
    /// Read `path`. Errors only if it cannot be read or does not start with the MCAP magic and a Header
    /// record; damage after that ends the read and is reported by [`McapEpisode::truncation`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, McapError> {
        let path = path.as_ref().to_path_buf();
        let data = std::fs::read(&path).map_err(|source| McapError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(path, data)
    }

    /// Read a recording held in memory; `path` only names it in messages.
    pub fn from_bytes(path: impl Into<PathBuf>, data: Vec<u8>) -> Result<Self, McapError> {
        let path = path.into();
        let mut parser = Parser::default();
        let truncation = parser.parse_file(&data).map_err(|reason| McapError::NotMcap {
            path: path.clone(),
            reason,
        })?;
        let Parser {
            schemas: _,
            mut channels,
            metadata,
            mut messages,
            ..
        } = parser;
        for m in &messages {
            channels[m.channel].message_count += 1;
        }
        // Stable: messages with equal log times stay in file order.
        messages.sort_by_key(|m| m.log_time);
        Ok(Self {
            path,
            data,
            channels,
            metadata,
            messages,
            truncation,
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Channels in the order they were defined.
    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels
    }

    /// The channel of `topic` (the first, if a foreign file has several).
    pub fn channel(&self, topic: &str) -> Option<&ChannelInfo> {
        self.channels.iter().find(|c| c.topic == topic)
    }

    /// Metadata records in file order.
    pub fn metadata(&self) -> &[MetadataRecord] {
        &self.metadata
    }

    /// Entries of the last Metadata record called `name`.
    pub fn metadata_named(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.metadata.iter().rev().find(|m| m.name == name).map(|m| &m.entries)
    }

    /// Number of messages read.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// All messages in log-time order (file order among equal times).
    pub fn messages(&self) -> impl ExactSizeIterator<Item = RecordedMessage<'_>> + '_ {
        self.messages.iter().map(|m| self.view(m))
    }

    /// The messages on `topic`, in log-time order.
    pub fn messages_on<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = RecordedMessage<'a>> + 'a {
        self.messages().filter(move |m| m.topic == topic)
    }

    /// Decode every message on `topic` as `T`, with its log time.
    pub fn decode_topic<T: RosMessage>(&self, topic: &str) -> Result<Vec<(u64, T)>, McapError> {
        self.messages_on(topic)
            .map(|m| Ok((m.log_time_ns, m.decode()?)))
            .collect()
    }

    /// Whether the file ended with its Footer and closing magic, every record before it valid.
    pub fn is_complete(&self) -> bool {
        self.truncation.is_none()
    }

    /// Why the read stopped early: a crash-truncated tail, an unfinished file or a damaged record.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    /// `Ok` if the file is complete, else [`McapError::Damaged`] saying where and why.
    pub fn check_complete(&self) -> Result<(), McapError> {
        match &self.truncation {
            None => Ok(()),
            Some(damage) => Err(McapError::Damaged {
                path: self.path.clone(),
                damage: damage.clone(),
            }),
        }
    }

    fn view<'a>(&'a self, m: &MessageRef) -> RecordedMessage<'a> {
        let channel = &self.channels[m.channel];
        RecordedMessage {
            topic: &channel.topic,
            type_name: &channel.type_name,
            log_time_ns: m.log_time,
            publish_time_ns: m.publish_time,
            sequence: m.sequence,
            data: &self.data[m.start..m.end],
        }
    }
}

impl fmt::Debug for McapEpisode {
    // Not derived: the file's bytes would be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McapEpisode")
            .field("path", &self.path)
            .field("bytes", &self.data.len())
            .field("channels", &self.channels.len())
            .field("metadata", &self.metadata.len())
            .field("messages", &self.messages.len())
            .field("truncation", &self.truncation)
            .finish()
    }
}

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
    for m in &episode.metadata {
        out.write_metadata(&m.name, &m.entries)?;
    }
    for m in &episode.messages {
        let c = &episode.channels[m.channel];
        out.write_record(
            &c.topic,
            &c.type_name,
            &c.schema_encoding,
            &c.schema,
            &c.message_encoding,
            m.log_time,
            m.publish_time,
            &episode.data[m.start..m.end],
        )?;
    }
    out.finish()?;
    Ok(RecoveryReport {
        messages: episode.messages.len(),
        channels: episode.channels.iter().filter(|c| c.message_count > 0).count(),
        metadata: episode.metadata.len(),
        truncation: episode.truncation,
    })
}

/// A bounds-checked little-endian cursor over one record body; every read fails with a reason, never panics.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(format!(
                "{what} needs {n} bytes at body offset {}, only {left} left",
                self.pos
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A `uint32` length-prefixed byte string.
    fn bytes32(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.bytes32(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    /// A `uint32` byte-length-prefixed map of strings.
    fn string_map(&mut self, what: &str) -> Result<BTreeMap<String, String>, String> {
        let mut inner = Cursor::new(self.bytes32(what)?);
        let mut out = BTreeMap::new();
        while inner.pos < inner.data.len() {
            let key = inner.string(what)?;
            let value = inner.string(what)?;
            out.insert(key, value);
        }
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos..];
        self.pos = self.data.len();
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SchemaRecord {
    name: String,
    encoding: String,
    data: Vec<u8>,
}

/// Linear reader state. Chunks are applied all-or-nothing: `mark`/`rollback` undo a chunk that turns out bad.
#[derive(Default)]
struct Parser {
    schemas: Vec<(u16, SchemaRecord)>,
    schema_index: HashMap<u16, usize>,
    channels: Vec<ChannelInfo>,
    channel_index: HashMap<u16, usize>,
    metadata: Vec<MetadataRecord>,
    messages: Vec<MessageRef>,
}

struct Mark {
    schemas: usize,
    channels: usize,
    messages: usize,
}

impl Parser {
    /// Parse a whole file. `Err` if it is not MCAP at all; `Ok(Some(_))` where the read stopped early.
    fn parse_file(&mut self, data: &[u8]) -> Result<Option<Truncation>, String> {
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(if data.is_empty() {
                "the file is empty".to_string()
            } else {
                "the file does not start with the MCAP magic".to_string()
            });
        }
        let mut pos = MAGIC.len();
        let mut record = 0usize;
        let stop = |pos: usize, record: usize, reason: String| {
            Ok(Some(Truncation {
                offset: pos as u64,
                record,
                reason,
            }))
        };
        loop {
            if pos == data.len() {
                let reason = if record == 0 {
                    "the file ends after the magic, before the Header record".to_string()
                } else {
                    "the file ends here without a Footer (recording not finished)".to_string()
                };
                return stop(pos, record, reason);
            }
            let (opcode, body) = match record_at(data, pos) {
                Ok(r) => r,
                Err(reason) => {
                    if record == 0 {
                        return Err(format!("Header record: {reason}"));
                    }
                    return stop(pos, record, reason);
                }
            };
            if record == 0 && opcode != OP_HEADER {
                return Err(format!("first record has opcode {opcode:#04x}, not a Header"));
            }
            let end = pos + 9 + body.len();
            let result = match opcode {
                OP_FOOTER => {
                    return if data.len() - end < MAGIC.len() {
                        stop(
                            end,
                            record + 1,
                            "the closing magic after the Footer is cut off".to_string(),
                        )
                    } else if &data[end..end + MAGIC.len()] != MAGIC {
                        stop(
                            end,
                            record + 1,
                            "bytes after the Footer are not the closing magic".to_string(),
                        )
                    } else if end + MAGIC.len() != data.len() {
                        stop(
                            end + MAGIC.len(),
                            record + 2,
                            "data after the closing magic".to_string(),
                        )
                    } else {
                        Ok(None)
                    };
                }
                OP_SCHEMA => self.schema(body),
                OP_CHANNEL => self.channel(body),
                OP_MESSAGE => self.message(body, pos + 9),
                OP_CHUNK => self.chunk(body, pos + 9),
                OP_METADATA => self.metadata(body),
                0x00 => Err("opcode 0x00 is not a record (zero-filled or corrupt data)".to_string()),
                OP_HEADER if record > 0 => Err("a second Header record".to_string()),
                // Indexes, statistics, attachments, DataEnd, summary offsets, private records: not needed here.
                _ => Ok(()),
            };
            if let Err(reason) = result {
                return stop(pos, record, format!("{} record: {reason}", opcode_name(opcode)));
            }
            pos = end;
            record += 1;
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            schemas: self.schemas.len(),
            channels: self.channels.len(),
            messages: self.messages.len(),
        }
    }

    fn rollback(&mut self, mark: Mark) {
        for (id, _) in &self.schemas[mark.schemas..] {
            self.schema_index.remove(id);
        }
        self.schemas.truncate(mark.schemas);
        for c in &self.channels[mark.channels..] {
            self.channel_index.remove(&c.id);
        }
        self.channels.truncate(mark.channels);
        self.messages.truncate(mark.messages);
    }

    fn schema(&mut self, body: &[u8]) -> Result<(), String> {
        let mut c = Cursor::new(body);
        let id = c.u16("schema id")?;
        let record = SchemaRecord {
            name: c.string("schema name")?,
            encoding: c.string("schema encoding")?,
            data: c.bytes32("schema data")?.to_vec(),
        };
        if id == 0 {
            return Err("schema id 0 is reserved".to_string());
        }
        match self.schema_index.get(&id) {
            // Schemas repeat in the summary section; the same content again is fine.
            Some(&i) if self.schemas[i].1 == record => Ok(()),
            Some(&i) => Err(format!(
                "schema id {id} redefined ({:?}, was {:?})",
                record.name, self.schemas[i].1.name
            )),
            None => {
                self.schema_index.insert(id, self.schemas.len());
                self.schemas.push((id, record));
                Ok(())
            }
        }
    }

    fn channel(&mut self, body: &[u8]) -> Result<(), String> {
        let mut c = Cursor::new(body);
        let id = c.u16("channel id")?;
        let schema_id = c.u16("channel schema id")?;
        let topic = c.string("channel topic")?;
        let message_encoding = c.string("channel message encoding")?;
        let _metadata = c.string_map("channel metadata")?;
        let (type_name, schema_encoding, schema) = if schema_id == 0 {
            (String::new(), String::new(), Vec::new())
        } else {
            let &i = self
                .schema_index
                .get(&schema_id)
                .ok_or_else(|| format!("channel {id} ({topic:?}) refers to undefined schema {schema_id}"))?;
            let s = &self.schemas[i].1;
            (s.name.clone(), s.encoding.clone(), s.data.clone())
        };
        let info = ChannelInfo {
            id,
            topic,
            type_name,
            schema_encoding,
            schema,
            message_encoding,
            message_count: 0,
        };
        match self.channel_index.get(&id) {
            Some(&i) if self.channels[i] == info => Ok(()),
            Some(&i) => Err(format!(
                "channel id {id} redefined ({:?}, was {:?})",
                info.topic, self.channels[i].topic
            )),
            None => {
                self.channel_index.insert(id, self.channels.len());
                self.channels.push(info);
                Ok(())
            }
        }
    }

    /// `offset`: where `body` starts in the file, to turn the payload into a file range.
    fn message(&mut self, body: &[u8], offset: usize) -> Result<(), String> {
        let mut c = Cursor::new(body);
        let channel_id = c.u16("message channel id")?;
        let sequence = c.u32("message sequence")?;
        let log_time = c.u64("message log time")?;
        let publish_time = c.u64("message publish time")?;
        let start = offset + c.pos;
        let end = start + c.rest().len();
        let &channel = self
            .channel_index
            .get(&channel_id)
            .ok_or_else(|| format!("message on undefined channel {channel_id}"))?;
        self.messages.push(MessageRef {
            channel,
            log_time,
            publish_time,
            sequence,
            start,
            end,
        });
        Ok(())
    }

    fn metadata(&mut self, body: &[u8]) -> Result<(), String> {
        let mut c = Cursor::new(body);
        let name = c.string("metadata name")?;
        let entries = c.string_map("metadata entries")?;
        self.metadata.push(MetadataRecord { name, entries });
        Ok(())
    }

    /// A Chunk: header checks, CRC, then its records; on any error nothing of it is kept.
    fn chunk(&mut self, body: &[u8], offset: usize) -> Result<(), String> {
        let mut c = Cursor::new(body);
        let _start_time = c.u64("chunk message start time")?;
        let _end_time = c.u64("chunk message end time")?;
        let uncompressed_size = c.u64("chunk uncompressed size")?;
        let crc = c.u32("chunk uncompressed CRC")?;
        let compression = c.string("chunk compression")?;
        let size = c.u64("chunk records length")?;
        let records_offset = offset + c.pos;
        let records = usize::try_from(size)
            .ok()
            .filter(|&n| n <= body.len() - c.pos)
            .map(|n| c.take(n, "chunk records"))
            .ok_or_else(|| format!("records length {size} exceeds the chunk's {} bytes", body.len() - c.pos))??;
        if !compression.is_empty() {
            return Err(format!(
                "chunk compressed with {compression:?}; riptide reads uncompressed chunks only"
            ));
        }
        if uncompressed_size != size {
            return Err(format!(
                "uncompressed size {uncompressed_size} != records length {size}"
            ));
        }
        if crc != 0 {
            let actual = crc32(records);
            if actual != crc {
                return Err(format!("CRC mismatch: stored {crc:#010x}, computed {actual:#010x}"));
            }
        }
        let mark = self.mark();
        let mut pos = 0usize;
        let mut index = 0usize;
        while pos < records.len() {
            let result = record_at(records, pos).and_then(|(opcode, body)| {
                match opcode {
                    OP_SCHEMA => self.schema(body),
                    OP_CHANNEL => self.channel(body),
                    OP_MESSAGE => self.message(body, records_offset + pos + 9),
                    _ => Err(format!("opcode {opcode:#04x} is not allowed in a chunk")),
                }
                .map(|()| 9 + body.len())
            });
            match result {
                Ok(len) => pos += len,
                Err(reason) => {
                    self.rollback(mark);
                    return Err(format!("inner record {index} at chunk offset {pos}: {reason}"));
                }
            }
            index += 1;
        }
        Ok(())
    }
}

/// The record at `pos`: opcode and body, checked to lie within `data`.
fn record_at(data: &[u8], pos: usize) -> Result<(u8, &[u8]), String> {
    let left = data.len() - pos;
    if left < 9 {
        return Err(format!("truncated record: {left} bytes left, a record header needs 9"));
    }
    let opcode = data[pos];
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[pos + 1..pos + 9]);
    let len = u64::from_le_bytes(len);
    if len > (left - 9) as u64 {
        return Err(format!(
            "truncated {} record: body of {len} bytes, only {} left",
            opcode_name(opcode),
            left - 9
        ));
    }
    Ok((opcode, &data[pos + 9..pos + 9 + len as usize]))
}

fn opcode_name(opcode: u8) -> String {
    match opcode {
        0x01 => "Header".into(),
        0x02 => "Footer".into(),
        0x03 => "Schema".into(),
        0x04 => "Channel".into(),
        0x05 => "Message".into(),
        0x06 => "Chunk".into(),
        0x07 => "MessageIndex".into(),
        0x08 => "ChunkIndex".into(),
        0x09 => "Attachment".into(),
        0x0A => "AttachmentIndex".into(),
        0x0B => "Statistics".into(),
        0x0C => "Metadata".into(),
        0x0D => "MetadataIndex".into(),
        0x0E => "SummaryOffset".into(),
        0x0F => "DataEnd".into(),
        other => format!("opcode {other:#04x}"),
    }
}

/// CRC-32 (IEEE 802.3, reflected), the checksum MCAP uses; slicing-by-4 keeps reading image-heavy files fast.
fn crc32(data: &[u8]) -> u32 {
    static TABLES: [[u32; 256]; 4] = crc_tables();
    let mut crc = !0u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let x = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        crc = TABLES[3][(x & 0xff) as usize]
            ^ TABLES[2][((x >> 8) & 0xff) as usize]
            ^ TABLES[1][((x >> 16) & 0xff) as usize]
            ^ TABLES[0][(x >> 24) as usize];
    }
    for &b in words.remainder() {
        crc = TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const fn crc_tables() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 4 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Every remainder length takes the byte-wise tail.
        let data: Vec<u8> = (0..=255u8).cycle().take(1003).collect();
        let bytewise = |d: &[u8]| {
            let mut crc = !0u32;
            for &b in d {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        0xEDB8_8320 ^ (crc >> 1)
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        };
        for n in 0..16 {
            assert_eq!(crc32(&data[n..]), bytewise(&data[n..]), "offset {n}");
        }
    }

    #[test]
    fn type_name_spellings() {
        for name in [
            "sensor_msgs/msg/Image",
            "sensor_msgs/Image",
            "sensor_msgs::msg::dds_::Image_",
        ] {
            assert_eq!(canonical_type_name(name), Some("sensor_msgs/msg/Image"), "{name}");
            assert_eq!(schema_for_type_name(name), Some(ros::Image::SCHEMA));
        }
        assert_eq!(canonical_type_name("sensor_msgs/msg/PointCloud2"), None);
        assert_eq!(canonical_type_name("Image"), None);
        assert_eq!(canonical_type_name("a/b/c/d"), None);
        assert!(same_type("sensor_msgs/Image", "sensor_msgs/msg/Image"));
        assert!(!same_type("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"));
    }
}
