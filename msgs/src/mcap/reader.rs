//! Reading recordings back, finished or cut short by a crash.
//!
//! The `mcap` crate does the format: its sans-io [`LinearReader`] checks the magic and frames the records
//! (yielding each chunk whole), [`parse_record`] parses record bodies, [`ChunkReader`] walks a chunk's records and
//! checks its CRC, and [`ChannelAccumulator`] links schemas and channels with the spec's rules. What is riptide's
//! own is the crash policy: keep everything before the first record that cannot be used, apply a chunk
//! all-or-nothing, and say where and why the read stopped ([`Truncation`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use mcap::read::{parse_record, ChannelAccumulator, ChunkReader};
use mcap::records::{op, ChunkHeader, MessageHeader, Record};
use mcap::sans_io::{LinearReadEvent, LinearReader, LinearReaderOptions};

use crate::mcap::error::{McapError, Truncation};
use crate::mcap::types::same_type;
use crate::RosMessage;

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

/// A message read: its channel, times and where its payload lies in [`McapEpisode`]'s payload buffer.
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
    /// Bytes of the file read.
    bytes: u64,
    /// Every message payload, back to back (the file itself is not kept: chunk and record framing is dropped).
    payloads: Vec<u8>,
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
        let io_error = |source| McapError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        Self::read_from(path, file, len)
    }

    /// Read a recording held in memory; `path` only names it in messages.
    pub fn from_bytes(path: impl Into<PathBuf>, data: Vec<u8>) -> Result<Self, McapError> {
        let len = data.len() as u64;
        Self::read_from(path.into(), data.as_slice(), len)
    }

    /// Read a recording of about `len` bytes (no record in it is longer) from `source`.
    fn read_from(path: PathBuf, source: impl Read, len: u64) -> Result<Self, McapError> {
        let mut parser = Parser::default();
        let (bytes, truncation) = match parser.parse(source, len) {
            Ok(read) => read,
            Err(Stop::NotMcap(reason)) => return Err(McapError::NotMcap { path, reason }),
            Err(Stop::Io(source)) => return Err(McapError::Io { path, source }),
        };
        let Parser {
            mut channels,
            metadata,
            mut messages,
            payloads,
            ..
        } = parser;
        for m in &messages {
            channels[m.channel].message_count += 1;
        }
        // Stable: messages with equal log times stay in file order.
        messages.sort_by_key(|m| m.log_time);
        Ok(Self {
            path,
            bytes,
            payloads,
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

    /// Messages in log-time order with their channels (for copying them elsewhere, as [`super::recover`] does).
    pub(super) fn messages_with_channels(&self) -> impl Iterator<Item = (RecordedMessage<'_>, &ChannelInfo)> + '_ {
        self.messages.iter().map(|m| (self.view(m), &self.channels[m.channel]))
    }

    fn view<'a>(&'a self, m: &MessageRef) -> RecordedMessage<'a> {
        let channel = &self.channels[m.channel];
        RecordedMessage {
            topic: &channel.topic,
            type_name: &channel.type_name,
            log_time_ns: m.log_time,
            publish_time_ns: m.publish_time,
            sequence: m.sequence,
            data: &self.payloads[m.start..m.end],
        }
    }
}

impl fmt::Debug for McapEpisode {
    // Not derived: every payload would be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McapEpisode")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .field("channels", &self.channels.len())
            .field("metadata", &self.metadata.len())
            .field("messages", &self.messages.len())
            .field("truncation", &self.truncation)
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// The linear read

/// The 8 bytes that open and close every MCAP file.
const MAGIC_LEN: u64 = 8;
/// A record's opcode and length prefix.
const RECORD_HEADER_LEN: u64 = 9;

/// Why [`Parser::parse`] gave up on the whole file (anything later is a [`Truncation`]).
enum Stop {
    /// No magic or no Header record: nothing in it can be trusted.
    NotMcap(String),
    Io(io::Error),
}

/// Where the read is among the file's top-level records.
#[derive(Debug, Clone, Copy)]
struct At {
    /// Byte offset of the next record (after the last one used).
    offset: u64,
    /// Index of the next record (0 is the Header).
    record: usize,
    /// Whether the Footer has been read (only the closing magic is left).
    footer: bool,
}

/// What has been read so far. A chunk is applied all-or-nothing: `mark`/`rollback` undo a chunk that turns out
/// bad. (The accumulator is not rolled back: the read stops there.)
#[derive(Default)]
struct Parser {
    linker: ChannelAccumulator<'static>,
    channels: Vec<ChannelInfo>,
    channel_index: HashMap<u16, usize>,
    metadata: Vec<MetadataRecord>,
    messages: Vec<MessageRef>,
    payloads: Vec<u8>,
}

struct Mark {
    channels: usize,
    messages: usize,
    payloads: usize,
}

impl Parser {
    /// Read `source` (about `len` bytes: no record may be longer) to its end or its first unusable record.
    /// Returns the bytes read and where the read stopped early, if it did.
    fn parse(&mut self, mut source: impl Read, len: u64) -> Result<(u64, Option<Truncation>), Stop> {
        let limit = usize::try_from(len).unwrap_or(usize::MAX);
        let mut reader = LinearReader::new_with_options(
            LinearReaderOptions::default()
                .with_emit_chunks(true)
                .with_check_finishes_after_end_magic(true)
                .with_record_length_limit(limit),
        );
        let mut read = 0u64;
        let mut at = At {
            offset: MAGIC_LEN,
            record: 0,
            footer: false,
        };
        while let Some(event) = reader.next_event() {
            match event {
                Ok(LinearReadEvent::ReadRequest(need)) => {
                    let n = read_some(&mut source, reader.insert(need)).map_err(Stop::Io)?;
                    reader.notify_read(n);
                    read += n as u64;
                }
                Ok(LinearReadEvent::Record { opcode, data }) => {
                    if let Err(reason) = self.apply(opcode, data, at.record) {
                        let reason = format!("{} record: {reason}", opcode_name(opcode));
                        if at.record == 0 {
                            return Err(Stop::NotMcap(reason));
                        }
                        return Ok((read, Some(at.truncation(reason))));
                    }
                    at.offset += RECORD_HEADER_LEN + data.len() as u64;
                    at.record += 1;
                    at.footer |= opcode == op::FOOTER;
                }
                Err(e) => return stopped(&e, at, read).map(|t| (read, Some(t))),
            }
        }
        Ok((read, None))
    }

    /// Use one top-level record.
    fn apply(&mut self, opcode: u8, body: &[u8], index: usize) -> Result<(), String> {
        match opcode {
            0x00 => return Err("opcode 0x00 is not a record (zero-filled or corrupt data)".into()),
            op::HEADER if index > 0 => return Err("a second Header record".into()),
            _ if index == 0 && opcode != op::HEADER => return Err("the first record is not a Header".into()),
            _ => {}
        }
        match parse_record(opcode, body).map_err(|e| describe(&e))? {
            Record::Chunk { header, data } => self.chunk(header, &data),
            Record::Metadata(m) => {
                self.metadata.push(MetadataRecord {
                    name: m.name,
                    entries: m.metadata,
                });
                Ok(())
            }
            // Schemas and channels also repeat in the summary section; the same content again is fine.
            record @ (Record::Schema { .. } | Record::Channel(_) | Record::Message { .. }) => self.linked(record),
            // Indexes, statistics, attachments, DataEnd, summary offsets, Footer, private records: not needed.
            _ => Ok(()),
        }
    }

    /// A chunk: its records through the crate's chunk reader (which checks the CRC after the last one); on any
    /// error nothing of it is kept.
    fn chunk(&mut self, header: ChunkHeader, data: &[u8]) -> Result<(), String> {
        let mark = self.mark();
        let result = ChunkReader::new(header, data)
            .map_err(|e| describe(&e))
            .and_then(|records| {
                for (index, record) in records.enumerate() {
                    match record {
                        Ok(record @ (Record::Schema { .. } | Record::Channel(_) | Record::Message { .. })) => {
                            self.linked(record)
                                .map_err(|reason| format!("inner record {index}: {reason}"))?;
                        }
                        Ok(other) => {
                            return Err(format!(
                                "inner record {index}: a {} record is not allowed in a chunk",
                                opcode_name(other.opcode())
                            ))
                        }
                        Err(e @ mcap::McapError::BadChunkCrc { .. }) => return Err(describe(&e)),
                        Err(e) => return Err(format!("inner record {index}: {}", describe(&e))),
                    }
                }
                Ok(())
            });
        if result.is_err() {
            self.rollback(mark);
        }
        result
    }

    /// A Schema, Channel or Message record, linked by the crate's accumulator.
    fn linked(&mut self, record: Record<'_>) -> Result<(), String> {
        match record {
            Record::Schema { header, data } => self
                .linker
                .add_schema_from_slice(header, &data)
                .map_err(|e| describe(&e)),
            Record::Channel(channel) => {
                let id = channel.id;
                self.linker.add_channel(channel).map_err(|e| describe(&e))?;
                self.register_channel(id);
                Ok(())
            }
            Record::Message { header, data } => self.message(&header, &data),
            _ => Ok(()),
        }
    }

    /// Add a channel the accumulator has just accepted to the list, the first time it is seen.
    fn register_channel(&mut self, id: u16) {
        if self.channel_index.contains_key(&id) {
            return;
        }
        let Some(channel) = self.linker.get(id) else { return };
        let schema = channel.schema.as_deref();
        self.channel_index.insert(id, self.channels.len());
        self.channels.push(ChannelInfo {
            id,
            topic: channel.topic.clone(),
            type_name: schema.map(|s| s.name.clone()).unwrap_or_default(),
            schema_encoding: schema.map(|s| s.encoding.clone()).unwrap_or_default(),
            schema: schema.map(|s| s.data.to_vec()).unwrap_or_default(),
            message_encoding: channel.message_encoding.clone(),
            message_count: 0,
        });
    }

    fn message(&mut self, header: &MessageHeader, data: &[u8]) -> Result<(), String> {
        let &channel = self
            .channel_index
            .get(&header.channel_id)
            .ok_or_else(|| format!("message on undefined channel {}", header.channel_id))?;
        let start = self.payloads.len();
        self.payloads.extend_from_slice(data);
        self.messages.push(MessageRef {
            channel,
            log_time: header.log_time,
            publish_time: header.publish_time,
            sequence: header.sequence,
            start,
            end: self.payloads.len(),
        });
        Ok(())
    }

    fn mark(&self) -> Mark {
        Mark {
            channels: self.channels.len(),
            messages: self.messages.len(),
            payloads: self.payloads.len(),
        }
    }

    fn rollback(&mut self, mark: Mark) {
        for c in &self.channels[mark.channels..] {
            self.channel_index.remove(&c.id);
        }
        self.channels.truncate(mark.channels);
        self.messages.truncate(mark.messages);
        self.payloads.truncate(mark.payloads);
    }
}

impl At {
    fn truncation(self, reason: String) -> Truncation {
        Truncation {
            offset: self.offset,
            record: self.record,
            reason,
        }
    }
}

/// Where and why the linear reader stopped, from its error: a file without a magic or Header is no MCAP file,
/// anything later is a truncation at the record the reader was on.
fn stopped(e: &mcap::McapError, at: At, read: u64) -> Result<Truncation, Stop> {
    use mcap::McapError as E;
    if at.footer {
        return Ok(match e {
            E::UnexpectedEof => at.truncation("the closing magic after the Footer is cut off".into()),
            E::BadMagic => at.truncation("bytes after the Footer are not the closing magic".into()),
            E::BytesAfterEndMagic => Truncation {
                offset: at.offset + MAGIC_LEN,
                record: at.record + 1,
                reason: "data after the closing magic".into(),
            },
            other => at.truncation(describe(other)),
        });
    }
    let ends_here = read == at.offset;
    if at.record == 0 {
        return match e {
            _ if read == 0 => Err(Stop::NotMcap("the file is empty".into())),
            E::BadMagic => Err(Stop::NotMcap("the file does not start with the MCAP magic".into())),
            E::UnexpectedEof if read < MAGIC_LEN => Err(Stop::NotMcap(format!(
                "the file is {read} bytes, shorter than the MCAP magic"
            ))),
            E::UnexpectedEof if ends_here => {
                Ok(at.truncation("the file ends after the magic, before the Header record".into()))
            }
            other => Err(Stop::NotMcap(format!("Header record: {}", describe(other)))),
        };
    }
    let reason = match e {
        E::UnexpectedEof if ends_here => "the file ends here without a Footer (recording not finished)".into(),
        E::UnexpectedEof => format!(
            "truncated record: the file ends {} bytes into it",
            read.saturating_sub(at.offset)
        ),
        E::RecordTooLarge { opcode, len } => format!(
            "truncated {} record: it claims {len} bytes, more than the whole file",
            opcode_name(*opcode)
        ),
        other => describe(other),
    };
    Ok(at.truncation(reason))
}

/// Fill as much of `buf` as `source` has (0 only at its end), retrying interrupted reads.
fn read_some(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The crate's error with its causes (a parse error says "Record parse failed", its cause says where).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn opcode_name(opcode: u8) -> String {
    let name = match opcode {
        op::HEADER => "Header",
        op::FOOTER => "Footer",
        op::SCHEMA => "Schema",
        op::CHANNEL => "Channel",
        op::MESSAGE => "Message",
        op::CHUNK => "Chunk",
        op::MESSAGE_INDEX => "MessageIndex",
        op::CHUNK_INDEX => "ChunkIndex",
        op::ATTACHMENT => "Attachment",
        op::ATTACHMENT_INDEX => "AttachmentIndex",
        op::STATISTICS => "Statistics",
        op::METADATA => "Metadata",
        op::METADATA_INDEX => "MetadataIndex",
        op::SUMMARY_OFFSET => "SummaryOffset",
        op::DATA_END => "DataEnd",
        other => return format!("opcode {other:#04x}"),
    };
    name.to_string()
}
