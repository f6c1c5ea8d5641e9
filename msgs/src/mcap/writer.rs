//! The crash-safe recorder: the `mcap` crate's writer, with chunks cut and handed to the OS by us.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mcap::error::McapError;
use crate::mcap::types::canonical_type_name;
use crate::{RosMessage, MESSAGE_ENCODING, SCHEMA_ENCODING};

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
                &Channel {
                    topic,
                    schema_name: T::TYPE_NAME,
                    schema_encoding: SCHEMA_ENCODING,
                    schema: T::SCHEMA.as_bytes(),
                    message_encoding: MESSAGE_ENCODING,
                },
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
    /// `ros2msg` schema text ([`super::schema_for_type_name`] has riptide's). `type_name` becomes the schema name,
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
            &Channel {
                topic,
                schema_name: type_name,
                schema_encoding: SCHEMA_ENCODING,
                schema: schema_text.as_bytes(),
                message_encoding: MESSAGE_ENCODING,
            },
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
    /// due. Also used by [`super::recover`] to copy channels with their original encodings and times.
    pub(super) fn write_record(
        &mut self,
        channel: &Channel<'_>,
        log_time_ns: u64,
        publish_time_ns: u64,
        payload: &[u8],
    ) -> Result<(), McapError> {
        let (channel_id, sequence) = self.channel_for(channel)?;
        let path = self.path.clone();
        let header = ::mcap::records::MessageHeader {
            channel_id,
            sequence,
            log_time: log_time_ns,
            publish_time: publish_time_ns,
        };
        self.writer_mut()?
            .write_to_known_channel(&header, payload)
            .map_err(|source| McapError::Write { path, source })?;
        self.messages += 1;
        self.chunk_bytes += payload.len() as u64 + MESSAGE_OVERHEAD;
        let started = *self.chunk_started.get_or_insert_with(Instant::now);
        let too_old = self.options.max_chunk_age.is_some_and(|age| started.elapsed() >= age);
        if self.chunk_bytes >= self.options.chunk_size || too_old {
            self.flush()?;
        }
        Ok(())
    }

    /// The channel id and next sequence number of `channel.topic`, registering schema and channel on first use;
    /// a topic given a second type is refused.
    fn channel_for(&mut self, channel: &Channel<'_>) -> Result<(u16, u32), McapError> {
        let path = self.path.clone();
        let wrap = |source| McapError::Write {
            path: path.clone(),
            source,
        };
        let Channel {
            topic,
            schema_name,
            schema_encoding,
            schema,
            message_encoding,
        } = *channel;
        match self.topics.get_mut(topic) {
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
                Ok((channel.id, sequence))
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
                Ok((id, 0))
            }
        }
    }
}

impl Drop for McapRecorder {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

/// A channel as the recorder registers it: topic, schema and message encoding.
pub(super) struct Channel<'a> {
    pub topic: &'a str,
    pub schema_name: &'a str,
    pub schema_encoding: &'a str,
    pub schema: &'a [u8],
    pub message_encoding: &'a str,
}
