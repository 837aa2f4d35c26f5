//! Content negotiation: what a request body is written in, and what the client
//! wants back (JSON, YAML or a Table for `kubectl get`).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cache::Cached;
use crate::error::{ApiError, ApiResult};

/// One media range of an Accept header, with its parameters.
#[derive(Debug, PartialEq)]
pub struct MediaType<'a> {
    /// `application/json`.
    pub essence: &'a str,
    /// `as=Table`, `g=meta.k8s.io`, `v=v1`…
    pub params: Vec<(&'a str, &'a str)>,
}

impl MediaType<'_> {
    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// The media ranges of an Accept header, in the client's order.
pub fn accepted(headers: &HeaderMap) -> Vec<MediaType<'_>> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    accept
        .split(',')
        .map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().unwrap_or("");
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                .collect();
            MediaType { essence, params }
        })
        .collect()
}

/// How to write the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// A `meta.k8s.io/v1` Table, as `kubectl get` asks for.
    Table,
}

/// The first format in the client's Accept header that the server writes.
pub fn response_format(headers: &HeaderMap) -> ApiResult<Format> {
    let ranges = accepted(headers);
    if ranges.is_empty() {
        return Ok(Format::Json);
    }
    for range in &ranges {
        let json = matches!(range.essence, "application/json" | "application/*" | "*/*");
        match range.param("as") {
            Some("Table")
                if json
                    && range.param("g") == Some("meta.k8s.io")
                    && matches!(range.param("v"), Some("v1" | "v1beta1")) =>
            {
                return Ok(Format::Table);
            }
            Some(_) => continue,
            None if json => return Ok(Format::Json),
            None if range.essence == "application/yaml" => return Ok(Format::Yaml),
            None => continue,
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Err(ApiError::not_acceptable(accept))
}

/// Decodes a request body written in JSON (also when no Content-Type is given),
/// YAML or Kubernetes' protobuf.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let value: Value = match essence {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml_value(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}")))?,
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be an object"));
    }
    Ok(value)
}

/// How much a YAML body may expand to, in bytes of the values it decodes to
/// (aliases repeat what they name, so a small body can name far more).
const YAML_EXPANSION: usize = 64 << 20;

/// A YAML document as JSON, refused once it expands past [`YAML_EXPANSION`].
fn yaml_value(body: &[u8]) -> Result<Value, serde_yaml_ng::Error> {
    use serde::de::DeserializeSeed as _;
    let left = std::cell::Cell::new(YAML_EXPANSION);
    Bounded(&left).deserialize(serde_yaml_ng::Deserializer::from_slice(body))
}

/// Builds a JSON value from any self-describing input, charging each node's
/// bytes against what is left.
#[derive(Clone, Copy)]
struct Bounded<'a>(&'a std::cell::Cell<usize>);

impl Bounded<'_> {
    fn charge<E: serde::de::Error>(self, bytes: usize) -> Result<(), E> {
        let cost = bytes + size_of::<Value>();
        match self.0.get().checked_sub(cost) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the document expands to more than {YAML_EXPANSION} bytes"
            ))),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.charge(0)?;
        Ok(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.charge(0)?;
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.charge(0)?;
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("{v} is not a JSON number")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.charge(0)?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(self)? {
            let key = match key {
                Value::String(key) => key,
                other => other.to_string(),
            };
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A response in `format` (JSON or YAML; a table is already JSON).
pub fn respond(format: Format, code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    match format {
        Format::Yaml => match serde_yaml_ng::to_string(body) {
            Ok(yaml) => (code, [(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        },
        Format::Json | Format::Table => (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(body).expect("JSON values serialize"),
        )
            .into_response(),
    }
}

/// A JSON list of objects already serialized: the items are spliced in as they are,
/// not decoded and written again.
pub(crate) fn respond_list(
    kind: &str,
    api_version: &str,
    metadata: &Value,
    items: &[Arc<Cached>],
) -> Response {
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    let mut body = serde_json::to_vec(&head).expect("JSON values serialize");
    body.pop(); // the closing brace: the items go in before it
    let size: usize = items.iter().map(|c| c.json.len() + 1).sum();
    body.reserve(size + 12);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item.json);
    }
    body.extend_from_slice(b"]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn formats_follow_the_accept_order() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            response_format(&with(header::ACCEPT, kubectl)),
            Ok(Format::Table)
        );
        assert_eq!(response_format(&HeaderMap::new()), Ok(Format::Json));
        assert_eq!(
            response_format(&with(header::ACCEPT, "application/yaml")),
            Ok(Format::Yaml)
        );
        assert_eq!(
            response_format(&with(
                header::ACCEPT,
                "application/vnd.kubernetes.protobuf, application/json"
            )),
            Ok(Format::Json)
        );
        assert_eq!(
            response_format(&with(
                header::ACCEPT,
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
            )),
            Ok(Format::Json)
        );
        assert_eq!(
            response_format(&with(header::ACCEPT, "text/html"))
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn bodies_in_json_yaml_or_nothing_said() {
        let json = decode_body(&HeaderMap::new(), br#"{"kind":"Pod"}"#).unwrap();
        assert_eq!(json["kind"], "Pod");
        let yaml = decode_body(
            &with(header::CONTENT_TYPE, "application/yaml"),
            b"kind: Pod\nmetadata:\n  name: a\n",
        )
        .unwrap();
        assert_eq!(yaml["metadata"]["name"], "a");
        let bad = decode_body(&HeaderMap::new(), b"{not json").unwrap_err();
        assert_eq!((bad.code, bad.reason), (400, "BadRequest"));
        assert!(bad.message.contains("not valid JSON"), "{}", bad.message);
        let bad_yaml =
            decode_body(&with(header::CONTENT_TYPE, "application/yaml"), b"a: [").unwrap_err();
        assert!(bad_yaml.message.contains("not valid YAML"));
        let proto = decode_body(
            &with(header::CONTENT_TYPE, "application/vnd.kubernetes.protobuf"),
            b"k8s\0",
        )
        .unwrap_err();
        assert_eq!(proto.code, 415);
        assert_eq!(
            decode_body(&HeaderMap::new(), b"[1]").unwrap_err().code,
            400
        );
    }
}
