//! RIHS01 type hashes (REP-2016), computed from the `ros2msg` schema text every [`RosMessage`] carries.
//!
//! rmw_zenoh puts the hash in every data key and liveliness token (Jazzy and later), so a subscriber built
//! for another definition of a type never matches. The hash is the SHA-256 of a JSON type description:
//! the type's fields in declaration order, then every type it references (transitively), sorted by name;
//! defaults and comments are not part of it.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::error::Ros2Error;
use crate::RosMessage;

/// Prefix of version-1 hashes (`RIHS01_<64 hex digits>`).
pub const RIHS01_PREFIX: &str = "RIHS01_";

/// The field rosidl adds to a message without fields (C structs cannot be empty); it is hashed too.
const EMPTY_MESSAGE_FIELD: &str = "structure_needs_at_least_one_member";

/// `RIHS01_…` of `T`.
pub fn type_hash<T: RosMessage>() -> Result<String, Ros2Error> {
    type_hash_of(T::TYPE_NAME, T::SCHEMA)
}

/// `RIHS01_…` of the type `type_name` (`pkg/msg/Type`) described by a `ros2msg` schema: its own definition,
/// then each dependency after a line of `=` and a `MSG: pkg/Type` line.
pub fn type_hash_of(type_name: &str, schema: &str) -> Result<String, Ros2Error> {
    let json = hashable_description(type_name, schema)?;
    let digest = Sha256::digest(json.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{RIHS01_PREFIX}{hex}"))
}

/// The JSON text that is hashed (exposed so that a mismatch can be diffed against rosidl's).
pub fn hashable_description(type_name: &str, schema: &str) -> Result<String, Ros2Error> {
    let main = normalise_type_name(type_name)?;
    let types = parse_schema(&main, schema)?;
    let mut referenced = BTreeSet::new();
    collect_references(&main, &types, &mut referenced)?;
    let mut json = String::from("{\"type_description\": ");
    write_description(&mut json, &main, &types[&main]);
    json.push_str(", \"referenced_type_descriptions\": [");
    for (i, name) in referenced.iter().enumerate() {
        if i > 0 {
            json.push_str(", ");
        }
        write_description(&mut json, name, &types[name]);
    }
    json.push_str("]}");
    Ok(json)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldType {
    type_id: u8,
    capacity: u64,
    string_capacity: u64,
    nested_type_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    ty: FieldType,
}

fn write_description(out: &mut String, name: &str, fields: &[Field]) {
    out.push_str(&format!("{{\"type_name\": \"{name}\", \"fields\": ["));
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!(
            "{{\"name\": \"{}\", \"type\": {{\"type_id\": {}, \"capacity\": {}, \"string_capacity\": {}, \
             \"nested_type_name\": \"{}\"}}}}",
            f.name, f.ty.type_id, f.ty.capacity, f.ty.string_capacity, f.ty.nested_type_name
        ));
    }
    out.push_str("]}");
}

fn collect_references(
    name: &str,
    types: &BTreeMap<String, Vec<Field>>,
    seen: &mut BTreeSet<String>,
) -> Result<(), Ros2Error> {
    let fields = types.get(name).ok_or_else(|| Ros2Error::Schema {
        type_name: name.into(),
        reason: "referenced but not defined in the schema".into(),
    })?;
    for f in fields {
        let nested = &f.ty.nested_type_name;
        if !nested.is_empty() && seen.insert(nested.clone()) {
            collect_references(nested, types, seen)?;
        }
    }
    Ok(())
}

/// Every block of the schema as `pkg/msg/Type` → fields.
fn parse_schema(main: &str, schema: &str) -> Result<BTreeMap<String, Vec<Field>>, Ros2Error> {
    let mut types = BTreeMap::new();
    let mut name = main.to_string();
    let mut lines: Vec<&str> = Vec::new();
    let mut iter = schema.lines().peekable();
    loop {
        let line = iter.next();
        let separator = line.is_some_and(|l| l.len() >= 3 && l.chars().all(|c| c == '='));
        if line.is_none() || separator {
            let fields = parse_block(&name, &lines)?;
            if types.insert(name.clone(), fields).is_some() {
                return Err(Ros2Error::Schema {
                    type_name: name,
                    reason: "defined twice".into(),
                });
            }
            lines.clear();
            let Some(_) = line else { break };
            let header = iter.next().unwrap_or_default();
            let Some(dep) = header.strip_prefix("MSG: ") else {
                return Err(Ros2Error::Schema {
                    type_name: main.into(),
                    reason: format!("a `MSG: pkg/Type` line must follow each separator, found {header:?}"),
                });
            };
            name = normalise_type_name(dep.trim())?;
            continue;
        }
        lines.extend(line);
    }
    Ok(types)
}

fn parse_block(type_name: &str, lines: &[&str]) -> Result<Vec<Field>, Ros2Error> {
    let package = type_name.split('/').next().unwrap_or_default();
    let mut fields = Vec::new();
    for raw in lines {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut tokens = line.split_whitespace();
        let (Some(ty), Some(name)) = (tokens.next(), tokens.next()) else {
            return Err(Ros2Error::Schema {
                type_name: type_name.into(),
                reason: format!("field line {line:?} needs a type and a name"),
            });
        };
        // Constants (`TYPE NAME=VALUE` or `TYPE NAME = VALUE`) are not fields.
        if name.contains('=') || tokens.next().is_some_and(|t| t.starts_with('=')) {
            continue;
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Ros2Error::Schema {
                type_name: type_name.into(),
                reason: format!("field name {name:?} is not an identifier"),
            });
        }
        let ty = parse_field_type(package, ty).map_err(|reason| Ros2Error::Schema {
            type_name: type_name.into(),
            reason,
        })?;
        fields.push(Field { name: name.into(), ty });
    }
    if fields.is_empty() {
        fields.push(Field {
            name: EMPTY_MESSAGE_FIELD.into(),
            ty: FieldType {
                type_id: 3,
                capacity: 0,
                string_capacity: 0,
                nested_type_name: String::new(),
            },
        });
    }
    Ok(fields)
}

/// `float64[]`, `uint8[3]`, `string<=8[<=4]`, `std_msgs/Header`, `Point` (same package), …
fn parse_field_type(package: &str, token: &str) -> Result<FieldType, String> {
    let (base, array) = match token.split_once('[') {
        Some((base, rest)) => {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("array type {token:?} lacks its closing ']'"))?;
            (base, Some(inner))
        }
        None => (token, None),
    };
    let parse_n = |s: &str| s.parse::<u64>().map_err(|_| format!("bad bound {s:?} in {token:?}"));
    let (array_offset, capacity) = match array {
        None => (0, 0),
        Some("") => (144, 0),
        Some(bound) => match bound.strip_prefix("<=") {
            Some(n) => (96, parse_n(n)?),
            None => (48, parse_n(bound)?),
        },
    };
    let (base, string_capacity) = match base.split_once("<=") {
        Some((b @ ("string" | "wstring"), n)) => (b, parse_n(n)?),
        Some(_) => return Err(format!("only strings take a bound: {token:?}")),
        None => (base, 0),
    };
    let primitive = match base {
        "int8" => Some(2),
        "uint8" => Some(3),
        "int16" => Some(4),
        "uint16" => Some(5),
        "int32" => Some(6),
        "uint32" => Some(7),
        "int64" => Some(8),
        "uint64" => Some(9),
        "float32" => Some(10),
        "float64" => Some(11),
        "char" => Some(13),
        "bool" => Some(15),
        "byte" => Some(16),
        "string" if string_capacity > 0 => Some(21),
        "string" => Some(17),
        "wstring" if string_capacity > 0 => Some(22),
        "wstring" => Some(18),
        _ => None,
    };
    let (type_id, nested_type_name) = match primitive {
        Some(id) => (id, String::new()),
        None => {
            let nested = match base {
                "Header" => "std_msgs/msg/Header".to_string(),
                b if b.contains('/') => normalise_type_name(b).map_err(|e| e.to_string())?,
                b => normalise_type_name(&format!("{package}/{b}")).map_err(|e| e.to_string())?,
            };
            (1, nested)
        }
    };
    Ok(FieldType {
        type_id: type_id + array_offset,
        capacity,
        string_capacity,
        nested_type_name,
    })
}

/// `pkg/Type` or `pkg/msg/Type` → `pkg/msg/Type`.
pub(crate) fn normalise_type_name(name: &str) -> Result<String, Ros2Error> {
    let parts: Vec<&str> = name.split('/').collect();
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match parts.as_slice() {
        [pkg, ty] if ident(pkg) && ident(ty) => Ok(format!("{pkg}/msg/{ty}")),
        [pkg, "msg", ty] if ident(pkg) && ident(ty) => Ok(name.to_string()),
        _ => Err(Ros2Error::TypeName(name.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_map_to_rosidl_ids() {
        let t = |s| parse_field_type("pkg", s).unwrap();
        assert_eq!((t("float64").type_id, t("float64[]").type_id), (11, 155));
        assert_eq!((t("uint8[3]").type_id, t("uint8[3]").capacity), (51, 3));
        assert_eq!((t("int32[<=4]").type_id, t("int32[<=4]").capacity), (102, 4));
        let s = t("string<=8");
        assert_eq!((s.type_id, s.string_capacity), (21, 8));
        assert_eq!(t("Point").nested_type_name, "pkg/msg/Point");
        assert_eq!(t("geometry_msgs/Point[]").type_id, 145);
        assert!(parse_field_type("pkg", "float64[").is_err());
        assert!(parse_field_type("pkg", "uint8<=3").is_err());
    }

    #[test]
    fn an_empty_message_hashes_rosidls_placeholder_field() {
        let json = hashable_description("std_msgs/msg/Empty", "").unwrap();
        assert_eq!(
            json,
            "{\"type_description\": {\"type_name\": \"std_msgs/msg/Empty\", \"fields\": [{\"name\": \
             \"structure_needs_at_least_one_member\", \"type\": {\"type_id\": 3, \"capacity\": 0, \
             \"string_capacity\": 0, \"nested_type_name\": \"\"}}]}, \"referenced_type_descriptions\": []}"
        );
    }

    #[test]
    fn constants_and_comments_are_not_fields_and_missing_dependencies_are_errors() {
        let a = type_hash_of("p/msg/A", "uint8 X=1\nint32 y # the y\n").unwrap();
        let b = type_hash_of("p/msg/A", "int32 y\n").unwrap();
        assert_eq!(a, b);
        let e = type_hash_of("p/msg/A", "p/B b\n").unwrap_err().to_string();
        assert!(e.contains("p/msg/B"), "{e}");
        assert!(type_hash_of("not a type", "int32 y\n").is_err());
    }
}
