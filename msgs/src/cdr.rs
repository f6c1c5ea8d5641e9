//! A small serde data format for ROS 2 CDR (XCDR1, little-endian, `CDR_LE` encapsulation).
//!
//! Rules implemented (OMG CDR as used by ROS 2 rmw implementations, rmw_zenoh included):
//! - a 4-byte encapsulation header `00 01 00 00` (CDR_LE) precedes the payload;
//! - primitives are little-endian and aligned to their size (1, 2, 4 or 8 bytes) relative to the start of
//!   the payload, i.e. the byte after the header; padding bytes are written as zeros and ignored on read;
//! - `bool` is one byte, 0 or 1;
//! - strings are a `u32` length that counts the terminating NUL, the UTF-8 bytes, then the NUL;
//! - sequences (`Vec<T>`) are a `u32` element count followed by the elements; byte sequences
//!   (`serde_bytes`) are a `u32` count followed by the raw bytes (one `memcpy` each way);
//! - fixed-size arrays (`[T; N]`, tuples) and structs are their elements in order, with no length;
//! - C-like enums are a `u32` discriminant (variant index).
//!
//! Decoding never panics: every read is bounds-checked, a length prefix larger than the bytes that remain is
//! rejected before anything is allocated, strings must be NUL-terminated UTF-8, and after the message at most
//! 3 trailing zero bytes (padding to a 4-byte boundary, as DDS/zenoh transports may add) are accepted.

use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, Serialize};

use crate::MsgError;

type Result<T> = std::result::Result<T, MsgError>;

/// The encapsulation header of little-endian plain CDR (`CDR_LE`).
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Largest number of trailing padding bytes accepted after a message.
const MAX_TRAILING_PADDING: usize = 3;

/// Serialize `value` as CDR_LE (header included), appending to `out`.
pub(crate) fn to_writer<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&CDR_LE_HEADER);
    let origin = out.len();
    let mut ser = Serializer { out, origin };
    value.serialize(&mut ser)
}

/// Deserialize a CDR_LE buffer (header included) into a `T`.
pub(crate) fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    if bytes.len() < 4 {
        return Err(MsgError::MissingHeader { len: bytes.len() });
    }
    let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
    // Byte 3 may carry the XCDR1 option bits giving the number of padding bytes at the end (0..=3).
    if found[..3] != CDR_LE_HEADER[..3] || found[3] > 3 {
        return Err(MsgError::BadHeader { found });
    }
    let mut de = Deserializer {
        input: &bytes[4..],
        pos: 0,
    };
    let value = T::deserialize(&mut de)?;
    let rest = &de.input[de.pos..];
    if rest.len() > MAX_TRAILING_PADDING || rest.iter().any(|&b| b != 0) {
        return Err(MsgError::TrailingBytes {
            offset: de.pos,
            count: rest.len(),
        });
    }
    Ok(value)
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| MsgError::TooLong { len })
}

// ------------------------------------------------------------------------------------------------
// Serializer

struct Serializer<'a> {
    out: &'a mut Vec<u8>,
    /// Index in `out` where the payload (the alignment origin) starts.
    origin: usize,
}

impl Serializer<'_> {
    fn align(&mut self, n: usize) {
        let pos = self.out.len() - self.origin;
        let pad = (n - pos % n) % n;
        self.out.resize(self.out.len() + pad, 0);
    }

    fn put_u32(&mut self, v: u32) {
        self.align(4);
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn put_str(&mut self, s: &str) -> Result<()> {
        if let Some(index) = s.bytes().position(|b| b == 0) {
            return Err(MsgError::NulInString { index });
        }
        self.put_u32(len_u32(s.len() + 1)?);
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(0);
        Ok(())
    }
}

macro_rules! ser_prim {
    ($($method:ident: $ty:ty,)*) => {$(
        fn $method(self, v: $ty) -> Result<()> {
            self.align(std::mem::size_of::<$ty>());
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'a, 'b> ser::Serializer for &'a mut Serializer<'b> {
    type Ok = ();
    type Error = MsgError;
    type SerializeSeq = SeqSerializer<'a, 'b>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), MsgError>;
    type SerializeMap = ser::Impossible<(), MsgError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), MsgError>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }

    ser_prim! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64,
    }

    fn serialize_char(self, _v: char) -> Result<()> {
        Err(MsgError::Unsupported("char (use u8 or String)"))
    }

    fn serialize_str(self, v: &str) -> Result<()> {
        self.put_str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.put_u32(len_u32(v.len())?);
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<()> {
        Err(MsgError::Unsupported("Option"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<()> {
        Err(MsgError::Unsupported("Option"))
    }

    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Ok(())
    }

    fn serialize_unit_variant(self, _name: &'static str, variant_index: u32, _variant: &'static str) -> Result<()> {
        self.put_u32(variant_index);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<()> {
        Err(MsgError::Unsupported("enum variant with data"))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        // The count is written up front when known, otherwise back-patched in `end`.
        self.put_u32(len_u32(len.unwrap_or(0))?);
        let count_at = self.out.len() - 4;
        Ok(SeqSerializer {
            ser: self,
            count_at,
            count: 0,
            expected: len,
        })
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(MsgError::Unsupported("enum variant with data"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(MsgError::Unsupported("map"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(MsgError::Unsupported("enum variant with data"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

struct SeqSerializer<'a, 'b> {
    ser: &'a mut Serializer<'b>,
    count_at: usize,
    count: usize,
    expected: Option<usize>,
}

impl ser::SerializeSeq for SeqSerializer<'_, '_> {
    type Ok = ();
    type Error = MsgError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.count += 1;
        value.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<()> {
        if self.expected != Some(self.count) {
            let count = len_u32(self.count)?;
            self.ser.out[self.count_at..self.count_at + 4].copy_from_slice(&count.to_le_bytes());
        }
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Serializer<'_> {
    type Ok = ();
    type Error = MsgError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Serializer<'_> {
    type Ok = ();
    type Error = MsgError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Serializer<'_> {
    type Ok = ();
    type Error = MsgError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, _key: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<()> {
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Deserializer

struct Deserializer<'de> {
    /// The payload (after the encapsulation header); offsets and alignment are relative to its start.
    input: &'de [u8],
    pos: usize,
}

impl<'de> Deserializer<'de> {
    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.remaining() {
            return Err(MsgError::UnexpectedEof {
                offset: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let pad = (N - self.pos % N) % N;
        if pad + N > self.remaining() {
            return Err(MsgError::UnexpectedEof {
                offset: self.pos,
                needed: pad + N,
                remaining: self.remaining(),
            });
        }
        self.pos += pad;
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Read a `u32` length prefix and check that at least `len` bytes follow it.
    fn length_prefix(&mut self) -> Result<(usize, usize)> {
        let len = u32::from_le_bytes(self.take_array::<4>()?);
        let offset = self.pos - 4;
        if len as usize > self.remaining() {
            return Err(MsgError::LengthTooLarge {
                offset,
                len: u64::from(len),
                remaining: self.remaining(),
            });
        }
        Ok((offset, len as usize))
    }

    fn read_str(&mut self) -> Result<&'de str> {
        let (offset, len) = self.length_prefix()?;
        let bytes = self.take(len)?;
        let text = match bytes.split_last() {
            // Some writers encode the empty string as a bare zero length; accept it.
            None => &[][..],
            Some((0, text)) => text,
            Some(_) => {
                return Err(MsgError::BadString {
                    offset,
                    reason: "missing terminating NUL",
                })
            }
        };
        if text.contains(&0) {
            return Err(MsgError::BadString {
                offset,
                reason: "NUL byte inside the string",
            });
        }
        std::str::from_utf8(text).map_err(|_| MsgError::InvalidUtf8 { offset })
    }
}

macro_rules! de_prim {
    ($($method:ident: $ty:ty => $visit:ident,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(<$ty>::from_le_bytes(self.take_array()?))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = MsgError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported(
            "self-describing deserialization (CDR has no type tags)",
        ))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let offset = self.pos;
        match self.take(1)?[0] {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            value => Err(MsgError::InvalidBool { offset, value }),
        }
    }

    de_prim! {
        deserialize_i8: i8 => visit_i8, deserialize_i16: i16 => visit_i16,
        deserialize_i32: i32 => visit_i32, deserialize_i64: i64 => visit_i64,
        deserialize_u8: u8 => visit_u8, deserialize_u16: u16 => visit_u16,
        deserialize_u32: u32 => visit_u32, deserialize_u64: u64 => visit_u64,
        deserialize_f32: f32 => visit_f32, deserialize_f64: f64 => visit_f64,
    }

    fn deserialize_char<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("char (use u8 or String)"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.read_str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let (_, len) = self.length_prefix()?;
        visitor.visit_borrowed_bytes(self.take(len)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("Option"))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Every element of a ROS message type takes at least one byte, so a count larger than the remaining
        // bytes is corrupt; rejecting it here also keeps a hostile count from driving a huge allocation.
        let (_, len) = self.length_prefix()?;
        visitor.visit_seq(Elements { de: self, left: len })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Elements { de: self, left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(Elements { de: self, left: len })
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("map"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(Elements {
            de: self,
            left: fields.len(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("identifiers (CDR has no field names)"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("skipping unknown data (CDR has no type tags)"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = MsgError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // The count was checked against the remaining bytes; serde additionally caps preallocation.
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Deserializer<'de> {
    type Error = MsgError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index: de::value::U32Deserializer<MsgError> = u32::from_le_bytes(self.take_array()?).into_deserializer();
        let value = seed.deserialize(index)?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for &mut Deserializer<'de> {
    type Error = MsgError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(MsgError::Unsupported("enum variant with data"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("enum variant with data"))
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _visitor: V) -> Result<V::Value> {
        Err(MsgError::Unsupported("enum variant with data"))
    }
}
