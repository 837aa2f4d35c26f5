//! Bad requests get the right HTTP code and a metav1 Status a person can act on.

use serde_json::Value;

use crate::process::Server;

/// One request as the cluster's admin; returns the status code and the body
/// as JSON.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    server.call(method, path, content_type, body)
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}"#;

#[test]
fn bad_requests_get_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let pods = "/api/v1/namespaces/default/pods";
    let json = Some("application/json");
    let yaml = Some("application/yaml");
    let check = |(code, status): (u16, Value), want: u16, reason: &str, words: &str| {
        assert_eq!(code, want, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], want);
        assert_eq!(status["reason"], reason, "{status}");
        let message = status["message"].as_str().unwrap();
        assert!(message.contains(words), "{message:?} lacks {words:?}");
        status
    };
    check(
        call(&server, "POST", pods, json, r#"{"metadata": "#),
        400,
        "BadRequest",
        "not valid JSON",
    );
    check(
        call(&server, "POST", pods, yaml, "metadata: [unclosed"),
        400,
        "BadRequest",
        "not valid YAML",
    );
    check(
        call(&server, "GET", "/api/v1/widgets", None, ""),
        404,
        "NotFound",
        "could not find the requested resource",
    );
    check(
        call(
            &server,
            "POST",
            "/apis/nope.example.com/v1/things",
            json,
            "{}",
        ),
        404,
        "NotFound",
        "could not find",
    );
    let wrong_version = POD.replace(r#""apiVersion":"v1""#, r#""apiVersion":"apps/v1""#);
    check(
        call(&server, "POST", pods, json, &wrong_version),
        400,
        "BadRequest",
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    );
    let wrong_kind = POD.replace(r#""kind":"Pod""#, r#""kind":"Service""#);
    check(
        call(&server, "POST", pods, json, &wrong_kind),
        400,
        "BadRequest",
        "kind in the data (Service)",
    );
    let bad_name = POD.replace(r#""name":"p""#, r#""name":"Not_Valid""#);
    let status = check(
        call(&server, "POST", pods, json, &bad_name),
        422,
        "Invalid",
        "metadata.name: Invalid value: \"Not_Valid\"",
    );
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let no_containers = POD.replace(r#""containers":[{"name":"c","image":"x"}]"#, "");
    let status = check(
        call(&server, "POST", pods, json, &no_containers),
        422,
        "Invalid",
        "spec.containers: Required value",
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.containers");
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"db"}},
        "spec":{"containers":[{"name":"c","image":"x"}]}}}}"#;
    check(
        call(
            &server,
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            json,
            deployment,
        ),
        422,
        "Invalid",
        "`selector` does not match template `labels`",
    );
    let bad_field = POD.replace(
        r#""image":"x""#,
        r#""image":"x","ports":[{"containerPort":"eighty"}]"#,
    );
    check(
        call(&server, "POST", pods, json, &bad_field),
        400,
        "BadRequest",
        "spec.containers[0].ports[0].containerPort",
    );
    check(
        call(&server, "POST", pods, Some("application/cbor"), "k8s"),
        415,
        "UnsupportedMediaType",
        "application/json",
    );
    check(
        call(
            &server,
            "POST",
            pods,
            Some("application/vnd.kubernetes.protobuf"),
            "k8s",
        ),
        400,
        "BadRequest",
        "does not start with the k8s\\0 magic",
    );
    check(
        call(
            &server,
            "POST",
            "/api/v1/namespaces/missing/pods",
            json,
            POD,
        ),
        404,
        "NotFound",
        r#"namespaces "missing" not found"#,
    );
    check(
        call(&server, "PUT", "/api/v1/namespaces/default/pods", json, POD),
        405,
        "MethodNotAllowed",
        "does not allow",
    );

    let (code, created) = call(&server, "POST", pods, json, POD);
    assert_eq!(code, 201);
    check(
        call(&server, "POST", pods, json, POD),
        409,
        "AlreadyExists",
        r#"pods "p" already exists"#,
    );
    let version: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stale = POD.replace(
        r#""name":"p""#,
        &format!(r#""name":"p","resourceVersion":"{}""#, version - 1),
    );
    check(
        call(&server, "PUT", &format!("{pods}/p"), json, &stale),
        409,
        "Conflict",
        "the object has been modified",
    );
    check(
        call(&server, "GET", &format!("{pods}/nope"), None, ""),
        404,
        "NotFound",
        r#"pods "nope" not found"#,
    );
    check(
        call(
            &server,
            "GET",
            &format!("{pods}?labelSelector=a%20in%20("),
            None,
            "",
        ),
        400,
        "BadRequest",
        "unable to parse requirement",
    );
    assert!(server.stop());
}
