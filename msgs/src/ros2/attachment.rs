//! The per-sample attachment rmw_zenoh puts on every published sample (and drops samples without):
//! sequence number, source timestamp and publisher GID.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::error::Ros2Error;

/// Current form (Kilted, Jazzy ≥ 0.2.4, Humble ≥ 0.1.2, Rolling ≥ 0.6): 33 bytes.
pub const ATTACHMENT_LEN: usize = 33;

const KEYED_SEQUENCE: &str = "sequence_number";
const KEYED_TIMESTAMP: &str = "source_timestamp";
const KEYED_GID: &str = "source_gid";

/// What a sample's attachment says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// Per publisher, from 1.
    pub sequence_number: i64,
    /// Wall-clock nanoseconds since the Unix epoch when the sample was published (also under sim time).
    pub source_timestamp_ns: i64,
    /// The publisher's GID.
    pub source_gid: [u8; 16],
}

impl Attachment {
    /// `i64 LE` sequence number · `i64 LE` timestamp · `0x10` · 16 GID bytes (zenoh-ext's serialisation of
    /// `(i64, i64, [u8; 16])`).
    pub fn encode(&self) -> [u8; ATTACHMENT_LEN] {
        let mut out = [0u8; ATTACHMENT_LEN];
        out[..8].copy_from_slice(&self.sequence_number.to_le_bytes());
        out[8..16].copy_from_slice(&self.source_timestamp_ns.to_le_bytes());
        out[16] = 16;
        out[17..].copy_from_slice(&self.source_gid);
        out
    }

    /// Parse the current form or the older keyed one (`"sequence_number"`, i64, `"source_timestamp"`, i64,
    /// `"source_gid"`, 16 bytes, each string length-prefixed), which starts with `0x0f "seq"`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Ros2Error> {
        if bytes.starts_with(b"\x0fseq") {
            return parse_keyed(bytes);
        }
        if bytes.len() != ATTACHMENT_LEN {
            return Err(Ros2Error::Attachment(format!(
                "{} bytes: the attachment is {ATTACHMENT_LEN} (or the older keyed form)",
                bytes.len()
            )));
        }
        if bytes[16] != 16 {
            return Err(Ros2Error::Attachment(format!(
                "GID length byte is {:#04x}, expected 0x10",
                bytes[16]
            )));
        }
        Ok(Self {
            sequence_number: i64_at(bytes, 0),
            source_timestamp_ns: i64_at(bytes, 8),
            source_gid: bytes[17..].try_into().unwrap_or_default(),
        })
    }
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(b)
}

fn parse_keyed(bytes: &[u8]) -> Result<Attachment, Ros2Error> {
    let mut at = 0usize;
    let bad = |why: String| Ros2Error::Attachment(format!("keyed attachment: {why}"));
    let key = |expected: &str, at: &mut usize| -> Result<(), Ros2Error> {
        let len = usize::from(*bytes.get(*at).ok_or_else(|| bad("truncated".into()))?);
        let name = bytes
            .get(*at + 1..*at + 1 + len)
            .ok_or_else(|| bad("truncated".into()))?;
        if name != expected.as_bytes() {
            return Err(bad(format!(
                "expected key {expected:?}, found {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        *at += 1 + len;
        Ok(())
    };
    let take = |at: &mut usize, n: usize| -> Result<Vec<u8>, Ros2Error> {
        let v = bytes.get(*at..*at + n).ok_or_else(|| bad("truncated".into()))?.to_vec();
        *at += n;
        Ok(v)
    };
    key(KEYED_SEQUENCE, &mut at)?;
    let seq = take(&mut at, 8)?;
    key(KEYED_TIMESTAMP, &mut at)?;
    let ts = take(&mut at, 8)?;
    key(KEYED_GID, &mut at)?;
    // The GID's bytes, with or without their own length prefix.
    let rest = bytes.len() - at;
    if rest == 17 && bytes[at] == 16 {
        at += 1;
    } else if rest != 16 {
        return Err(bad(format!("{rest} bytes left for a 16-byte GID")));
    }
    let gid = take(&mut at, 16)?;
    Ok(Attachment {
        sequence_number: i64_at(&seq, 0),
        source_timestamp_ns: i64_at(&ts, 0),
        source_gid: gid.try_into().unwrap_or_default(),
    })
}

/// A stable GID for an endpoint: the first 16 bytes of the SHA-256 of its liveliness token (rmw_zenoh
/// derives its GIDs from a hash of the same key).
pub fn gid_for(token: &str) -> [u8; 16] {
    let digest = Sha256::digest(token.as_bytes());
    let mut gid = [0u8; 16];
    gid.copy_from_slice(&digest[..16]);
    gid
}

/// Counts samples lost between a subscription and each publisher (by GID), from sequence numbers.
#[derive(Debug, Default)]
pub struct SequenceGaps {
    last: HashMap<[u8; 16], i64>,
    missed: u64,
}

impl SequenceGaps {
    /// Record a sample; returns how many of this publisher's samples were skipped just before it (a
    /// sequence number that goes back, as after a publisher restart, starts over and counts none).
    pub fn observe(&mut self, a: &Attachment) -> u64 {
        let gap = match self.last.insert(a.source_gid, a.sequence_number) {
            Some(prev) if a.sequence_number > prev => (a.sequence_number - prev - 1).unsigned_abs(),
            _ => 0,
        };
        self.missed += gap;
        gap
    }

    /// Samples missed so far, all publishers together.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: i64) -> Attachment {
        Attachment {
            sequence_number: seq,
            source_timestamp_ns: 1_733_000_000_123_456_789,
            source_gid: gid_for("@ros2_lv/0/zid/0/1/MP/%/%/riptide_daemon/%riptide%action%chunk"),
        }
    }

    #[test]
    fn the_current_form_is_33_bytes_and_round_trips() {
        let a = sample(1);
        let bytes = a.encode();
        assert_eq!(&bytes[..8], &1i64.to_le_bytes());
        assert_eq!(bytes[16], 0x10);
        assert_eq!(Attachment::parse(&bytes).unwrap(), a);
        for bad in [&bytes[..32], &[0u8; 34][..], &[]] {
            assert!(Attachment::parse(bad).is_err());
        }
        let mut wrong = bytes;
        wrong[16] = 8;
        assert!(Attachment::parse(&wrong).unwrap_err().to_string().contains("0x08"));
    }

    #[test]
    fn the_keyed_form_parses_with_or_without_a_gid_length() {
        let a = sample(7);
        let mut keyed = Vec::new();
        for (key, value) in [
            (KEYED_SEQUENCE, a.sequence_number.to_le_bytes().to_vec()),
            (KEYED_TIMESTAMP, a.source_timestamp_ns.to_le_bytes().to_vec()),
        ] {
            keyed.push(key.len() as u8);
            keyed.extend_from_slice(key.as_bytes());
            keyed.extend(value);
        }
        keyed.push(KEYED_GID.len() as u8);
        keyed.extend_from_slice(KEYED_GID.as_bytes());
        let mut prefixed = keyed.clone();
        prefixed.push(16);
        prefixed.extend_from_slice(&a.source_gid);
        keyed.extend_from_slice(&a.source_gid);
        assert!(keyed.starts_with(b"\x0fseq"));
        assert_eq!(Attachment::parse(&keyed).unwrap(), a);
        assert_eq!(Attachment::parse(&prefixed).unwrap(), a);
        assert!(Attachment::parse(&keyed[..20]).is_err());
    }

    #[test]
    fn gaps_are_counted_per_publisher() {
        let mut gaps = SequenceGaps::default();
        assert_eq!(gaps.observe(&sample(1)), 0);
        assert_eq!(gaps.observe(&sample(2)), 0);
        assert_eq!(gaps.observe(&sample(5)), 2);
        let mut other = sample(1);
        other.source_gid = [9; 16];
        assert_eq!(gaps.observe(&other), 0);
        assert_eq!(gaps.observe(&sample(1)), 0, "a restarted publisher starts over");
        assert_eq!(gaps.missed(), 2);
    }
}
