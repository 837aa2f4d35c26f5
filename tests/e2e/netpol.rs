//! NetworkPolicy, after Kubernetes' own network policy scenarios: default deny
//! of ingress, allow by pod label (on a named port), allow by namespace, and
//! egress to an ipBlock with an exception; directly and through a Service, with
//! the node itself always let in, and each refusal an Event naming the policy.

use std::time::Duration;

use crate::agent::{apply, eventually, http_get, import_examples, kubectl, ready_node};
use crate::process::Server;

/// A wasi:http pod `name` in `namespace` labelled `app: <app>`, greeting with
/// its name, serving the port named `http`.
fn web(node: &str, namespace: &str, name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: examples/http-hello:1\n    imagePullPolicy: Never\n    ports: [{{containerPort: 8080, name: http}}]\n    env: [{{name: GREETING, value: {name}}}]\n"
    )
}

#[test]
fn network_policies_isolate_pods_as_kubernetes_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    import_examples(data, &["http-hello"]);
    let server = Server::start(data);
    let node = ready_node(data);
    let manifest = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n".to_owned(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: zed}\n".to_owned(),
        web(&node, "x", "server", "server"),
        web(&node, "x", "client", "client"),
        web(&node, "zed", "other", "client"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: server, namespace: x}\nspec:\n  selector: {app: server}\n  ports: [{name: http, port: 80, targetPort: http}]\n".to_owned(),
    ]
    .join("---\n");
    apply(data, &manifest);
    let ip = |namespace: &str, pod: &str| {
        let field = |template: &str| {
            let template = format!("jsonpath={template}");
            kubectl(data, &["get", "pod", "-n", namespace, pod, "-o", &template])
        };
        eventually(Duration::from_secs(60), "Running", || {
            field("{.status.phase}")
        });
        field("{.status.podIP}")
    };
    let server_ip = ip("x", "server");
    let (client, other) = (ip("x", "client"), ip("zed", "other"));
    // What a pod at `from` gets when it fetches `what`.
    let fetch =
        |from: &str, what: &str| http_get(&format!("{from}:8080"), &format!("/fetch/{what}/"));
    let reaches =
        |from: &str, what: &str| fetch(from, what).contains("fetched: server from wasi:http");
    let direct = format!("{server_ip}:8080");
    let service = "server.x.svc.cluster.local".to_owned();
    eventually(Duration::from_secs(30), "true true", || {
        format!(
            "{} {}",
            reaches(&client, &service),
            reaches(&other, &service)
        )
    });
    assert!(reaches(&client, &direct) && reaches(&other, &direct));

    // Default deny of ingress in x: neither reaches the server, directly or
    // through its Service; the node itself still does.
    let policy = |name: &str, spec: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: x}}\nspec: {spec}\n"
        )
    };
    apply(data, &policy("default-deny", "{podSelector: {}}"));
    eventually(Duration::from_secs(30), "false false", || {
        format!("{} {}", reaches(&client, &direct), reaches(&other, &direct))
    });
    assert!(!reaches(&client, &service) && !reaches(&other, &service));
    assert!(
        http_get(&direct, "/").starts_with("server from wasi:http"),
        "the node is let in"
    );
    // A peer that is neither the node nor a pod (an address of the pod range
    // no pod has) is refused by the server's own listener.
    let stranger = server_ip
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.250"))
        .unwrap();
    let curl = |from: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "3", "--interface", from])
            .arg(format!("http://{direct}/"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&stranger), "", "a stranger was answered");
    assert!(curl("127.0.0.1").starts_with("server from wasi:http"));
    eventually(Duration::from_secs(30), "told", || {
        let messages = kubectl(
            data,
            &[
                "get",
                "events",
                "-n",
                "x",
                "--field-selector",
                "reason=NetworkPolicyDenied,involvedObject.name=server",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        if messages.contains("NetworkPolicy x/default-deny") {
            "told".into()
        } else {
            messages
        }
    });

    // Allowed by pod label, on the named port: the client in x, not the pod of
    // zed with the same label.
    apply(
        data,
        &policy(
            "allow-client",
            "{podSelector: {matchLabels: {app: server}}, ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]}",
        ),
    );
    eventually(Duration::from_secs(30), "true false", || {
        format!("{} {}", reaches(&client, &direct), reaches(&other, &direct))
    });
    assert!(reaches(&client, &service) && !reaches(&other, &service));

    // Allowed by namespace: zed's pods too.
    apply(
        data,
        &policy(
            "allow-zed",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: zed}}}]}]}",
        ),
    );
    eventually(Duration::from_secs(30), "true", || {
        reaches(&other, &direct).to_string()
    });
    assert!(reaches(&other, &service));

    // Egress of the client to an ipBlock of the pod range but the server's
    // address: refused at the client, before any connection.
    let range = "127.64.0.0/10";
    apply(
        data,
        &policy(
            "client-egress",
            &format!(
                "{{podSelector: {{matchLabels: {{app: client}}}}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: \"{range}\", except: [\"{server_ip}/32\"]}}}}]}}]}}"
            ),
        ),
    );
    eventually(Duration::from_secs(30), "refused", || {
        let said = fetch(&client, &direct);
        if said.contains("DestinationIpProhibited") {
            "refused".into()
        } else {
            said
        }
    });
    // The client's egress still lets it reach the pod of zed.
    assert!(fetch(&client, &format!("{other}:8080")).contains("fetched: other from wasi:http"));
    assert!(server.stop());
}
