//! Property tests of everything that reads a request: bodies (JSON, YAML,
//! protobuf), patches of every type, and selectors. Whatever the input, the
//! answer is a value or an error, never a panic, and the work stays bounded.
//!
//! `PROPTEST_CASES` sets how many inputs each property gets (256 by default; the
//! longer runs are `PROPTEST_CASES=200000 cargo nextest run -p wasmkube-apiserver fuzz`).

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wasmkube_types::patch::{definition_of, strategic};
use wasmkube_types::selector::fields::FieldSelector;
use wasmkube_types::selector::labels::Selector;

use crate::negotiate::decode_body;
use crate::protobuf;

/// Keys that reach the interesting paths: fields with patch metadata, and the
/// strategic merge patch directives.
const KEYS: &[&str] = &[
    "metadata",
    "labels",
    "finalizers",
    "spec",
    "template",
    "containers",
    "name",
    "image",
    "env",
    "value",
    "ports",
    "containerPort",
    "volumes",
    "strategy",
    "type",
    "selector",
    "matchLabels",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "replace",
    "delete",
    "merge",
    "x",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(KEYS).prop_map(|k| json!(k)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<String, Value>>(),
                )
            }),
        ]
    })
}

/// One JSON patch operation on paths of a deployment-like document.
fn json_operation() -> impl Strategy<Value = Value> {
    let paths = prop::sample::select(
        &[
            "",
            "/spec",
            "/spec/template/spec/containers/0",
            "/spec/template/spec/containers/-",
            "/metadata/labels/x",
            "/x/0/y",
            "/~1/~0",
            "/spec/replicas",
        ][..],
    );
    let ops = prop::sample::select(&["add", "remove", "replace", "move", "copy", "test"][..]);
    (ops, paths.clone(), paths, json_value()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    )
}

fn headers(content_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers
}

/// A protobuf body of a Deployment, to mutate.
fn deployment_body() -> Vec<u8> {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message as _;
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            ..Default::default()
        }),
        status: None,
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
        }),
        raw: Some(deployment.encode_to_vec()),
        content_encoding: None,
        content_type: None,
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

proptest! {
    #[test]
    fn bodies_decode_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for content_type in ["application/json", "application/yaml", protobuf::MEDIA_TYPE] {
            let _ = decode_body(&headers(content_type), &bytes);
        }
        let mut with_magic = b"k8s\0".to_vec();
        with_magic.extend(&bytes);
        let _ = protobuf::decode(&with_magic);
    }

    #[test]
    fn mutated_protobuf_bodies_decode_or_fail(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = deployment_body();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = protobuf::decode(&body);
        let _ = protobuf::decode(&body[..cut.index(body.len())]);
    }

    #[test]
    fn yaml_text_decodes_or_fails(text in "[a-z:&*\\[\\]{}, \n-]{0,200}") {
        let _ = decode_body(&headers("application/yaml"), text.as_bytes());
    }

    #[test]
    fn strategic_patches_apply_or_fail(original in json_value(), patch in json_value()) {
        let deployment = definition_of("apps", "v1", "Deployment");
        if let Ok(patched) = strategic::apply(&original, &patch, deployment) {
            prop_assert!(patched.is_object());
        }
        let _ = strategic::apply(&original, &patch, None);
    }

    #[test]
    fn json_patches_apply_or_fail(original in json_value(), ops in prop::collection::vec(json_operation(), 0..6)) {
        let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("well-formed operations");
        let _ = crate::rest::json_patch(&original, &ops);
    }

    #[test]
    fn selectors_parse_or_fail(text in "[a-z0-9=!,()<> .\\-/\\\\]{0,64}") {
        let _ = Selector::parse(&text);
        let _ = FieldSelector::parse(&text);
    }
}

/// Found by `json_patches_apply_or_fail`: the json-patch crate's rollback panics
/// when a failed `move` follows an `add`.
#[test]
fn a_failed_json_patch_leaves_an_error() {
    let ops = json!([
        {"op": "add", "path": "/spec", "value": null},
        {"op": "move", "from": "/spec", "path": "/metadata/labels/x"},
    ]);
    let ops: json_patch::Patch = serde_json::from_value(ops).unwrap();
    let error = crate::rest::json_patch(&json!({}), &ops).unwrap_err();
    assert!(error.contains("/metadata/labels/x"), "{error}");
}

#[test]
fn a_yaml_alias_bomb_is_refused() {
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..10 {
        let prev = (b'a' + level - 1) as char;
        let this = (b'a' + level) as char;
        bomb.push_str(&format!("{this}: &{this} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let error = decode_body(&headers("application/yaml"), bomb.as_bytes()).unwrap_err();
    assert_eq!(error.code, 400, "{}", error.message);
}

#[test]
fn a_large_anchored_scalar_repeated_by_aliases_is_refused() {
    let mut yaml = format!("a: &big \"{}\"\nb:\n", "x".repeat(1 << 20));
    for _ in 0..100 {
        yaml.push_str("- *big\n");
    }
    let error = decode_body(&headers("application/yaml"), yaml.as_bytes()).unwrap_err();
    assert_eq!(error.code, 400, "{}", error.message);
    assert!(
        error.message.contains("expands to more than"),
        "{}",
        error.message
    );
    // A few aliases of it are fine.
    let few = format!("a: &big \"{}\"\nb: [*big, *big]\n", "x".repeat(1 << 20));
    let value = decode_body(&headers("application/yaml"), few.as_bytes()).unwrap();
    assert_eq!(value["b"][1].as_str().unwrap().len(), 1 << 20);
}

#[tokio::test]
async fn bodies_and_objects_over_their_limits_are_refused_with_413() {
    let server = crate::testing::TestServer::start().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let config_map = |name: &str, bytes: usize| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"blob": "x".repeat(bytes)},
        })
    };
    // Under the body limit but over what the store takes in one write.
    let (status, _, body) = server.call("POST", path, config_map("big", 2 << 20)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limit is 1572864"),
        "{body}"
    );
    // Over the body limit: refused before it is read whole.
    let (status, _, body) = server.call("POST", path, config_map("huge", 4 << 20)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["kind"], "Status");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limit is 3145728"),
        "{body}"
    );
    // Just under both limits is stored.
    let (status, _, body) = server.call("POST", path, config_map("fits", 1 << 20)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_watch_timeout_near_the_largest_integer_is_clamped_not_a_panic() {
    use tower::ServiceExt as _;
    let server = crate::testing::TestServer::start().await;
    let watch = |timeout: &str| {
        axum::http::Request::get(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds={timeout}"
        ))
        .body(axum::body::Body::empty())
        .unwrap()
    };
    let response = server
        .server
        .router()
        .oneshot(watch(&i64::MAX.to_string()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _, body) = server
        .call(
            "GET",
            &format!(
                "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds={}",
                u64::MAX
            ),
            Value::Null,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
