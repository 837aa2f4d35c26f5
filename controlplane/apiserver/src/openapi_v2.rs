//! OpenAPI v2: `/openapi/v2` as the protobuf `openapi_v2.Document` (gnostic's
//! messages), which kubectl 1.27 reads to validate, to explain and to learn that
//! the server validates fields itself. It holds the same schemas and paths as the
//! v3 documents, in v2's shapes: `#/definitions/` references, vendor extensions as
//! YAML, parameters with their type inline.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use prost::Message as _;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::negotiate::accepted;

/// The messages of gnostic's `OpenAPIv2.proto`, compiled by the build script.
#[allow(
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    missing_docs,
    dead_code
)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/openapi.v2.rs"));
}

use proto::{
    AdditionalPropertiesItem, Definitions, Document, Info, ItemsItem, NamedAny, NamedPathItem,
    NamedResponseValue, NamedSchema, NonBodyParameter, Operation, Parameter, ParametersItem,
    PathItem, PathParameterSubSchema, Paths, Properties, QueryParameterSubSchema,
    Response as V2Response, ResponseValue, Responses, Schema, SchemaItem, TypeItem,
};

/// The media type of the protobuf document.
const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let (schemas, paths) = crate::openapi::everything();
    let document = Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: "Kubernetes".into(),
            version: format!(
                "v{}.{}.0",
                wasmkube_types::KUBERNETES_VERSION.0,
                wasmkube_types::KUBERNETES_VERSION.1
            ),
            ..Default::default()
        }),
        paths: Some(Paths {
            path: paths
                .iter()
                .map(|(name, item)| NamedPathItem {
                    name: name.clone(),
                    value: Some(path_item(item)),
                })
                .collect(),
            ..Default::default()
        }),
        definitions: Some(Definitions {
            additional_properties: named_schemas(&schemas),
        }),
        ..Default::default()
    };
    Bytes::from(document.encode_to_vec())
});

/// `GET /openapi/v2`, for clients that ask for protobuf.
pub(crate) async fn serve(headers: HeaderMap) -> Response {
    if !accepted(&headers).iter().any(|m| m.essence == PROTOBUF) {
        return ApiError::new(
            406,
            "NotAcceptable",
            format!("/openapi/v2 is served as {PROTOBUF}; JSON clients read /openapi/v3"),
        )
        .into_response();
    }
    // The media type's `@` does not parse as a Content-Type in Go clients.
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        DOCUMENT.clone(),
    )
        .into_response()
}

fn named_schemas(schemas: &Map<String, Value>) -> Vec<NamedSchema> {
    schemas
        .iter()
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_owned()
}

/// The `x-` fields of a JSON object, as v2 vendor extensions.
fn extensions(object: &Map<String, Value>) -> Vec<NamedAny> {
    object
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(proto::Any {
                value: None,
                yaml: serde_yaml_ng::to_string(v).expect("JSON values are YAML"),
            }),
        })
        .collect()
}

fn schema(value: &Value) -> Schema {
    let Some(object) = value.as_object() else {
        return Schema::default();
    };
    // v3's `allOf: [{$ref}]` next to a description is v2's `$ref` with one.
    let reference = match object
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([only]) => &only["$ref"],
        _ => &value["$ref"],
    };
    Schema {
        r#ref: text(reference).replace("#/components/schemas/", "#/definitions/"),
        format: text(&value["format"]),
        description: text(&value["description"]),
        required: value["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
        r#type: value["type"].as_str().map(|t| TypeItem {
            value: vec![t.to_owned()],
        }),
        items: object.get("items").map(|i| ItemsItem {
            schema: vec![schema(i)],
        }),
        properties: value["properties"].as_object().map(|p| Properties {
            additional_properties: named_schemas(p),
        }),
        additional_properties: object.get("additionalProperties").map(|a| {
            Box::new(AdditionalPropertiesItem {
                oneof: Some(match a {
                    Value::Bool(b) => proto::additional_properties_item::Oneof::Boolean(*b),
                    other => {
                        proto::additional_properties_item::Oneof::Schema(Box::new(schema(other)))
                    }
                }),
            })
        }),
        vendor_extension: extensions(object),
        ..Default::default()
    }
}

fn parameters(list: &Value) -> Vec<ParametersItem> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let (name, kind) = (text(&p["name"]), text(&p["schema"]["type"]));
            let parameter = if p["in"] == "path" {
                proto::non_body_parameter::Oneof::PathParameterSubSchema(PathParameterSubSchema {
                    required: true,
                    r#in: "path".into(),
                    name,
                    r#type: kind,
                    unique_items: true,
                    ..Default::default()
                })
            } else {
                proto::non_body_parameter::Oneof::QueryParameterSubSchema(QueryParameterSubSchema {
                    r#in: "query".into(),
                    name,
                    r#type: kind,
                    unique_items: true,
                    ..Default::default()
                })
            };
            ParametersItem {
                oneof: Some(proto::parameters_item::Oneof::Parameter(Parameter {
                    oneof: Some(proto::parameter::Oneof::NonBodyParameter(
                        NonBodyParameter {
                            oneof: Some(parameter),
                        },
                    )),
                })),
            }
        })
        .collect()
}

fn operation(value: &Value) -> Option<Operation> {
    let object = value.as_object()?;
    let result = &value["responses"]["200"]["content"]["application/json"]["schema"];
    let response = V2Response {
        description: "OK".into(),
        schema: Some(SchemaItem {
            oneof: Some(proto::schema_item::Oneof::Schema(schema(result))),
        }),
        ..Default::default()
    };
    Some(Operation {
        operation_id: text(&value["operationId"]),
        parameters: parameters(&value["parameters"]),
        responses: Some(Responses {
            response_code: vec![NamedResponseValue {
                name: "200".into(),
                value: Some(ResponseValue {
                    oneof: Some(proto::response_value::Oneof::Response(response)),
                }),
            }],
            ..Default::default()
        }),
        vendor_extension: extensions(object),
        ..Default::default()
    })
}

fn path_item(item: &Value) -> PathItem {
    PathItem {
        get: operation(&item["get"]),
        put: operation(&item["put"]),
        post: operation(&item["post"]),
        patch: operation(&item["patch"]),
        delete: operation(&item["delete"]),
        parameters: parameters(&item["parameters"]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_decodes_with_kinds_patch_metadata_and_field_validation() {
        let document = Document::decode(DOCUMENT.as_ref()).unwrap();
        assert_eq!(document.swagger, "2.0");
        let definitions = document.definitions.unwrap().additional_properties;
        let spec = definitions
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.PodSpec")
            .and_then(|d| d.value.clone())
            .unwrap();
        let containers = spec
            .properties
            .unwrap()
            .additional_properties
            .into_iter()
            .find(|p| p.name == "containers")
            .and_then(|p| p.value)
            .unwrap();
        let merge_key = containers
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-patch-merge-key")
            .unwrap();
        assert_eq!(merge_key.value.as_ref().unwrap().yaml.trim(), "name");
        let paths = document.paths.unwrap().path;
        let deployment = paths
            .iter()
            .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .and_then(|p| p.value.clone())
            .unwrap();
        let patch = deployment.patch.unwrap();
        assert!(
            patch
                .vendor_extension
                .iter()
                .any(|e| e.name == "x-kubernetes-group-version-kind"
                    && e.value.as_ref().unwrap().yaml.contains("kind: Deployment"))
        );
        let names: Vec<String> = patch
            .parameters
            .iter()
            .filter_map(|p| match &p.oneof {
                Some(proto::parameters_item::Oneof::Parameter(Parameter {
                    oneof:
                        Some(proto::parameter::Oneof::NonBodyParameter(NonBodyParameter {
                            oneof:
                                Some(proto::non_body_parameter::Oneof::QueryParameterSubSchema(q)),
                        })),
                })) => Some(q.name.clone()),
                _ => None,
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_owned()), "{names:?}");
    }
}
