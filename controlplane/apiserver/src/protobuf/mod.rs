//! Protobuf request bodies: `application/vnd.kubernetes.protobuf`, as kubectl 1.32+
//! sends `create namespace` and `create deployment`.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope whose `raw` bytes
//! are the object's message. The message is read field by field with the table of
//! `table.rs` (tag, JSON name and type of every field of every message reachable
//! from a served kind, derived from the `k8s-pb` messages by
//! `scripts/gen-protobuf-table.py`) into the JSON object the rest of the server
//! handles. The messages that JSON writes as scalars (Time, Quantity, IntOrString,
//! RawExtension…) are read by name. Responses stay JSON.

mod table;

use base64::Engine;
use serde_json::{Map, Value, json};
use wasmkube_types::patch::definition_of;

use crate::error::{ApiError, ApiResult};

/// The media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// What every body starts with.
const MAGIC: &[u8] = b"k8s\0";
/// How deep messages may nest before a body is refused.
const MAX_DEPTH: usize = 64;

/// A message of the table.
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

/// A field of a message.
struct Field {
    tag: u32,
    name: &'static str,
    ty: Type,
    repeated: bool,
}

/// The type of a field.
#[derive(Clone, Copy)]
enum Type {
    Str,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(&'static str),
    MapOfStr,
    MapOfBytes,
    MapOf(&'static str),
}

fn message(name: &str) -> Option<&'static Message> {
    let messages = table::MESSAGES;
    messages
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &messages[i])
}

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf body is not valid: {why}"))
}

/// One field as it is on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// No field of the table is a 32-bit fixed one: read past, never used.
    Fixed32,
}

/// Reads the fields of one message, in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| bad("a varint is cut short"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a varint is longer than ten bytes"))
    }

    fn take(&mut self, n: usize) -> ApiResult<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(bad("a field runs past the end of its message"));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn next(&mut self) -> ApiResult<Option<(u32, Wire<'a>)>> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| bad("a field tag is out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n =
                    usize::try_from(self.varint()?).map_err(|_| bad("a length is out of range"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => return Err(bad(format!("wire type {other} is not supported"))),
        };
        Ok(Some((tag, wire)))
    }
}

/// The JSON object of a protobuf request body, with its apiVersion and kind.
pub(crate) fn decode(body: &[u8]) -> ApiResult<Value> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s\\0 magic"))?;
    let unknown = decode_message("io.k8s.apimachinery.pkg.runtime.Unknown", envelope, 0)?;
    let api_version = unknown["typeMeta"]["apiVersion"].as_str().unwrap_or("");
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let definition = definition_of(group, version, kind).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("protobuf bodies of {api_version} {kind} are not supported: send JSON"),
        )
    })?;
    let raw = match &unknown["raw"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("encoded here"),
        _ => Vec::new(),
    };
    let mut object = decode_message(definition, &raw, 0)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

fn decode_message(name: &str, bytes: &[u8], depth: usize) -> ApiResult<Value> {
    if depth > MAX_DEPTH {
        return Err(bad("messages nest too deep"));
    }
    if let Some(scalar) = special(name, bytes)? {
        return Ok(scalar);
    }
    let message = message(name).ok_or_else(|| bad(format!("no message {name}")))?;
    let mut object = Map::new();
    let mut reader = Reader { bytes };
    while let Some((tag, wire)) = reader.next()? {
        // Fields this table does not know are skipped, as protobuf readers do.
        let Some(field) = message.fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        match field.ty {
            Type::MapOfStr | Type::MapOfBytes | Type::MapOf(_) => {
                let Wire::Bytes(entry) = wire else {
                    return Err(bad(format!(
                        "{name}.{}: a map entry must be a message",
                        field.name
                    )));
                };
                let (key, value) = map_entry(field.ty, entry, depth)?;
                let map = object.entry(field.name).or_insert_with(|| json!({}));
                map[key] = value;
            }
            _ if field.repeated => {
                let list = object.entry(field.name).or_insert_with(|| json!([]));
                let list = list.as_array_mut().expect("made a list");
                match (wire, field.ty) {
                    // Packed numbers: one length-delimited run of them.
                    (Wire::Bytes(run), Type::Bool | Type::Int32 | Type::Int64) => {
                        let mut packed = Reader { bytes: run };
                        while !packed.bytes.is_empty() {
                            list.push(scalar(
                                field.ty,
                                Wire::Varint(packed.varint()?),
                                name,
                                field,
                            )?);
                        }
                    }
                    (wire, _) => list.push(value(field, wire, name, depth)?),
                }
            }
            _ => {
                let value = value(field, wire, name, depth)?;
                // An empty string is what Go writes for an unset one.
                if value != json!("") && !value.is_null() {
                    object.insert(field.name.to_owned(), value);
                }
            }
        }
    }
    Ok(Value::Object(object))
}

fn value(field: &Field, wire: Wire<'_>, message: &str, depth: usize) -> ApiResult<Value> {
    match (field.ty, wire) {
        (Type::Message(name), Wire::Bytes(bytes)) => decode_message(name, bytes, depth + 1),
        (ty, wire) => scalar(ty, wire, message, field),
    }
}

fn scalar(ty: Type, wire: Wire<'_>, message: &str, field: &Field) -> ApiResult<Value> {
    Ok(match (ty, wire) {
        (Type::Str, Wire::Bytes(b)) => json!(text(b)?),
        (Type::Bytes, Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Type::Bool, Wire::Varint(v)) => json!(v != 0),
        // int32 and int64 are written as the 64-bit two's complement.
        (Type::Int32, Wire::Varint(v)) => json!(v as i64 as i32),
        (Type::Int64, Wire::Varint(v)) => json!(v as i64),
        (Type::Double, Wire::Fixed64(v)) => json!(f64::from_bits(v)),
        _ => return Err(bad(format!("{message}.{}: wrong wire type", field.name))),
    })
}

fn text(bytes: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| bad("a string is not UTF-8"))
}

/// A map entry: key (1) and value (2).
fn map_entry(ty: Type, entry: &[u8], depth: usize) -> ApiResult<(String, Value)> {
    let mut reader = Reader { bytes: entry };
    let (mut key, mut value) = (String::new(), Value::Null);
    while let Some((tag, wire)) = reader.next()? {
        match (tag, wire, ty) {
            (1, Wire::Bytes(b), _) => key = text(b)?.to_owned(),
            (2, Wire::Bytes(b), Type::MapOfStr) => value = json!(text(b)?),
            (2, Wire::Bytes(b), Type::MapOfBytes) => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (2, Wire::Bytes(b), Type::MapOf(name)) => value = decode_message(name, b, depth + 1)?,
            _ => return Err(bad("a map entry has an unexpected field")),
        }
    }
    if value.is_null() {
        value = match ty {
            Type::MapOf(name) => decode_message(name, &[], depth + 1)?,
            _ => json!(""),
        };
    }
    Ok((key, value))
}

/// The messages that JSON writes as scalars; `None` for the others.
fn special(name: &str, bytes: &[u8]) -> ApiResult<Option<Value>> {
    let short = name.rsplit('.').next().unwrap_or(name);
    let known = matches!(
        name,
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.Duration"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "io.k8s.apimachinery.pkg.api.resource.Quantity"
            | "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
            | "io.k8s.apimachinery.pkg.runtime.RawExtension"
    );
    if !known {
        return Ok(None);
    }
    let mut fields: [Option<Wire<'_>>; 4] = [None, None, None, None];
    let mut reader = Reader { bytes };
    while let Some((tag, wire)) = reader.next()? {
        if let Some(slot) = fields.get_mut(tag as usize) {
            *slot = Some(wire);
        }
    }
    let int = |w: &Option<Wire<'_>>| match w {
        Some(Wire::Varint(v)) => *v as i64,
        _ => 0,
    };
    fn bytes_of<'a>(w: &Option<Wire<'a>>) -> &'a [u8] {
        match w {
            Some(Wire::Bytes(b)) => b,
            _ => &[],
        }
    }
    Ok(Some(match short {
        "Time" | "MicroTime" => {
            let (seconds, nanos) = (int(&fields[1]), int(&fields[2]));
            if seconds == 0 && nanos == 0 {
                Value::Null
            } else {
                json!(timestamp(seconds, nanos, short == "MicroTime")?)
            }
        }
        "Duration" => json!(duration(int(&fields[1]))),
        "Quantity" => json!(text(bytes_of(&fields[1]))?),
        "IntOrString" => match int(&fields[1]) {
            0 => json!(int(&fields[2]) as i32),
            _ => json!(text(bytes_of(&fields[3]))?),
        },
        // FieldsV1 and RawExtension hold JSON.
        _ => match bytes_of(&fields[1]) {
            [] => Value::Null,
            raw => serde_json::from_slice(raw).map_err(|e| bad(format!("embedded JSON: {e}")))?,
        },
    }))
}

/// RFC 3339 in UTC, with microseconds for a MicroTime.
fn timestamp(seconds: i64, nanos: i64, micro: bool) -> ApiResult<String> {
    let at = wasmkube_types::k8s_openapi::jiff::Timestamp::new(seconds, nanos as i32)
        .map_err(|e| bad(format!("a time is out of range: {e}")))?;
    Ok(if micro {
        format!("{}", at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    } else {
        format!("{}", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    })
}

/// A duration of `nanos` as Go writes one (`1h2m3s`, `1.5s`, `0s`).
fn duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let (h, m) = (nanos / 3_600_000_000_000, nanos / 60_000_000_000 % 60);
    let s = (nanos % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_owned();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use prost::Message as _;

    use super::*;

    fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    #[test]
    fn a_deployment_as_kubectl_sends_it() {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let container = core::Container {
            name: Some("web".into()),
            image: Some("web:1".into()),
            args: vec!["--port".into(), "80".into()],
            ports: vec![core::ContainerPort {
                container_port: Some(8080),
                ..Default::default()
            }],
            resources: Some(core::ResourceRequirements {
                limits: BTreeMap::from([(
                    "memory".to_owned(),
                    k8s_pb::apimachinery::pkg::api::resource::Quantity {
                        string: Some("64Mi".into()),
                    },
                )]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let deployment = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                labels: labels.clone(),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(0),
                    nanos: Some(0),
                }),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![container],
                        ..Default::default()
                    }),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_surge: Some(IntOrString {
                            r#type: Some(1),
                            int_val: None,
                            str_val: Some("25%".into()),
                        }),
                        max_unavailable: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(-1),
                            str_val: None,
                        }),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        };
        let object = decode(&body("apps/v1", "Deployment", deployment.encode_to_vec())).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "web", "image": "web:1", "args": ["--port", "80"],
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"memory": "64Mi"}},
                        }]},
                    },
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": -1}},
                },
            })
        );
    }

    #[test]
    fn namespaces_secrets_and_times() {
        let namespace = core::Namespace {
            metadata: Some(meta::ObjectMeta {
                name: Some("edge".into()),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let object = decode(&body("v1", "Namespace", namespace.encode_to_vec())).unwrap();
        assert_eq!(object["metadata"]["name"], "edge");
        assert_eq!(
            object["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: BTreeMap::from([("k".to_owned(), b"\x00v".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let object = decode(&body("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(object["data"], json!({"k": "AHY="}));
        assert_eq!(object["type"], "Opaque");
    }

    #[test]
    fn bad_bodies_are_refused_not_panicked_on() {
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(&body("v9", "Widget", vec![])).unwrap_err().code, 415);
        let cut = body("v1", "Namespace", vec![0x0a, 0x05, b'x']);
        assert_eq!(decode(&cut).unwrap_err().code, 400);
        let too_deep = decode_message("io.k8s.api.core.v1.Namespace", &[], MAX_DEPTH + 1);
        assert_eq!(too_deep.unwrap_err().code, 400);
        assert_eq!(duration(3_723_500_000_000), "1h2m3.5s");
    }
}
