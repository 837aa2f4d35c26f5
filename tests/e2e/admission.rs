//! Admission policies in Wasm, through kubectl: the built-in ones refuse,
//! default and warn as Kubernetes' admission plugins do, in their words; a
//! policy a Plugin object declares is called for the writes its rules match,
//! and one that traps, spins or hogs memory fails its own calls by its
//! failure policy while the API goes on serving; the example policy answers
//! alike in Rust, Python and JavaScript.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{
    AdmissionPolicy, Limits, Lookup, Operation, Phase, PluginHost, Request, User,
};

use crate::agent::{
    eventually, import_examples, jsonpath, kubectl, kubectl_command, ready_node, run_kubectl,
};
use crate::process::Server;
use crate::scheduler::built_plugin;

/// kubectl on the cluster of `dir` with `stdin`: whether it succeeded, and
/// what it wrote on stdout and on stderr (warnings, errors).
fn kubectl_with(dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = kubectl_command(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// `kubectl apply -f -` of `manifest`.
fn apply(dir: &Path, manifest: &str) -> (bool, String, String) {
    kubectl_with(dir, &["apply", "-f", "-"], manifest)
}

/// A pod `name` in `namespace` of `image`, with `extra` lines of its spec.
fn pod(namespace: &str, name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  containers: [{{name: app, image: {image}}}]\n{extra}"
    )
}

const HOST_PATH: &str = "  volumes: [{name: h, hostPath: {path: /}}]\n";

#[test]
fn built_in_policies_refuse_default_and_warn_as_kubernetes_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Namespaces without labels are warned of baseline violations.
    let config = d.join("admission.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults: {enforce: privileged, warn: baseline}\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_server(
        d,
        &[
            "--admission-control-config-file",
            &config,
            "--control-plane",
        ],
    );

    // PodSecurity: a restricted namespace refuses a hostPath pod with every
    // reason; the cluster's default warns and lets it in.
    kubectl(d, &["create", "namespace", "locked"]);
    kubectl(
        d,
        &[
            "label",
            "namespace",
            "locked",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let (ok, _, err) = apply(d, &pod("locked", "h", "x", HOST_PATH));
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"h\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")"
        ),
        "{err}"
    );
    let (ok, _, err) = apply(d, &pod("default", "h", "x", HOST_PATH));
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": hostPath volumes (volume \"h\")"
        ),
        "{err}"
    );

    // LimitRanger: defaults set (and said in an annotation), a limit above
    // the maximum refused.
    let range = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits, namespace: default}\nspec:\n  limits: [{type: Container, max: {memory: 256Mi}, defaultRequest: {cpu: 100m}}]\n";
    assert!(apply(d, range).0);
    assert!(apply(d, &pod("default", "small", "x", "")).0);
    assert_eq!(
        jsonpath(d, "pod/small", "{.spec.containers[0].resources}"),
        r#"{"limits":{"memory":"256Mi"},"requests":{"cpu":"100m","memory":"256Mi"}}"#
    );
    assert_eq!(
        jsonpath(
            d,
            "pod/small",
            "{.metadata.annotations.kubernetes\\.io/limit-ranger}"
        ),
        "LimitRanger plugin set: cpu, memory request for container app; memory limit for container app"
    );
    let big = pod("default", "big", "x", "")
        .replace("image: x}", "image: x, resources: {limits: {memory: 1Gi}}}");
    let (ok, _, err) = apply(d, &big);
    assert!(!ok);
    assert!(
        err.contains("pods \"big\" is forbidden: maximum memory usage per Container is 256Mi, but limit is 1Gi"),
        "{err}"
    );

    // ResourceQuota: the controller counts what the namespace uses, and a
    // pod that would take it past the quota is refused.
    kubectl(d, &["create", "namespace", "quota"]);
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute, namespace: quota}\nspec:\n  hard: {pods: '2', requests.cpu: '1'}\n";
    assert!(apply(d, quota).0);
    let used = |resource: &str| {
        let path = format!("{{.status.used.{}}}", resource.replace('.', "\\."));
        kubectl(
            d,
            &[
                "get",
                "resourcequota",
                "compute",
                "-n",
                "quota",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    eventually(Duration::from_secs(30), "0", || used("pods"));
    let asking = |name: &str, cpu: &str| {
        pod("quota", name, "x", "").replace(
            "image: x}",
            &format!("image: x, resources: {{requests: {{cpu: {cpu}}}}}}}"),
        )
    };
    assert!(apply(d, &asking("a", "500m")).0);
    eventually(Duration::from_secs(30), "500m", || used("requests.cpu"));
    let (ok, _, err) = apply(d, &asking("b", "600m"));
    assert!(!ok);
    assert!(
        err.contains("pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"),
        "{err}"
    );
    let described = kubectl(d, &["describe", "quota", "compute", "-n", "quota"]);
    let row = described
        .lines()
        .find(|l| l.starts_with("requests.cpu"))
        .unwrap_or("");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["requests.cpu", "500m", "1"],
        "{described}"
    );
    assert!(apply(d, &asking("c", "500m")).0);

    // NamespaceLifecycle: a namespace held in Terminating by a finalizer
    // takes nothing new; the system namespaces are never deleted.
    kubectl(d, &["create", "namespace", "going"]);
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: going, finalizers: [example.com/hold]}\n";
    assert!(apply(d, held).0);
    kubectl(d, &["delete", "namespace", "going", "--wait=false"]);
    eventually(Duration::from_secs(20), "Terminating", || {
        jsonpath(d, "namespace/going", "{.status.phase}")
    });
    let refused = run_kubectl(d, &["create", "configmap", "late", "-n", "going"]);
    assert!(
        refused.contains(
            "configmaps \"late\" is forbidden: unable to create new content in namespace going because it is being terminated"
        ),
        "{refused}"
    );
    let refused = run_kubectl(d, &["delete", "namespace", "kube-system"]);
    assert!(
        refused
            .contains("namespaces \"kube-system\" is forbidden: this namespace may not be deleted"),
        "{refused}"
    );
    kubectl(
        d,
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "going",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    assert!(server.stop());
}

/// Declares the admission policy `name` of the component `file` (in the
/// plugin directory of `dir`), with `args` and its `admission` placement.
#[test]
fn a_pod_runs_as_its_service_account_with_a_token_that_speaks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(d);
    import_examples(d, &["hello"]);
    let node = ready_node(d);
    kubectl(d, &["create", "namespace", "shop"]);
    // Every namespace gets its default account and the cluster's CA.
    let ca = std::fs::read_to_string(d.join("pki/ca.crt")).unwrap();
    eventually(Duration::from_secs(20), "default", || {
        run_kubectl(
            d,
            &[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "shop",
                "-o",
                "jsonpath={.metadata.name}",
            ],
        )
    });
    eventually(Duration::from_secs(20), ca.trim(), || {
        run_kubectl(
            d,
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        )
        .trim()
        .to_owned()
    });
    let hello = |name: &str, extra: &str| {
        let spec = format!(
            "  nodeName: {node}\n  restartPolicy: Never\n  containers: [{{name: app, image: 'examples/hello:1', imagePullPolicy: Never}}]\n{extra}"
        );
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}"
        )
    };
    let (ok, _, err) = apply(d, &hello("p", ""));
    assert!(ok, "{err}");
    let shown = |path: &str| {
        let mut args = vec!["get", "pod", "p", "-n", "shop", "-o"];
        let template = format!("jsonpath={path}");
        args.push(&template);
        kubectl(d, &args)
    };
    assert_eq!(shown("{.spec.serviceAccountName}"), "default");
    let volume = shown("{.spec.volumes[0].name}");
    assert!(
        volume.starts_with("kube-api-access-") && volume.len() == 21,
        "{volume}"
    );
    assert_eq!(
        shown("{.spec.containers[0].volumeMounts[0]}"),
        format!(
            r#"{{"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","name":"{volume}","readOnly":true}}"#
        )
    );
    assert_eq!(
        shown("{.spec.volumes[0].projected.sources[*].serviceAccountToken.expirationSeconds}"),
        "3607"
    );
    // The pod reads its token, the CA and its namespace where clients look.
    eventually(Duration::from_secs(30), "Succeeded", || {
        shown("{.status.phase}")
    });
    let log = kubectl(d, &["logs", "p", "-n", "shop"]);
    assert!(
        log.contains(
            r#"/var/run/secrets/kubernetes.io/serviceaccount: ["ca.crt", "namespace", "token"]"#
        ) && log.contains("namespace: shop\n"),
        "{log}"
    );
    // The token speaks for the account, bound to the pod.
    let uid = shown("{.metadata.uid}");
    let files = d.join("pods").join(&uid).join("volumes").join(&volume);
    assert_eq!(std::fs::read_to_string(files.join("ca.crt")).unwrap(), ca);
    let token = std::fs::read_to_string(files.join("token")).unwrap();
    let review = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nmetadata: {{name: review}}\nspec: {{token: {token}}}\n"
    );
    let (ok, out, err) = kubectl_with(
        d,
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.user.username} {.status.user.extra.authentication\\.kubernetes\\.io/pod-name}",
        ],
        &review,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "system:serviceaccount:shop:default [\"p\"]");

    // A pod may decline the token; one naming an account that is not there is
    // refused in Kubernetes' words.
    let (ok, _, err) = apply(
        d,
        &hello("quiet", "  automountServiceAccountToken: false\n"),
    );
    assert!(ok, "{err}");
    let volumes = [
        "get",
        "pod",
        "quiet",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.volumes}",
    ];
    assert_eq!(kubectl(d, &volumes), "");
    let (ok, _, err) = apply(d, &hello("robot", "  serviceAccountName: robot\n"));
    assert!(!ok);
    assert!(
        err.contains("pods \"robot\" is forbidden: error looking up service account shop/robot: serviceaccount \"robot\" not found"),
        "{err}"
    );
    assert!(server.stop());
}

fn declare(dir: &Path, name: &str, file: &Path, args: &str, admission: &str) {
    let manifest = format!(
        "apiVersion: wasmkube.io/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}}}\nspec:\n  extension: Admission\n  source: {{path: {}}}\n  args: {args}\n  admission: {admission}\n",
        file.display()
    );
    let (ok, _, err) = apply(dir, &manifest);
    assert!(ok, "{err}");
    eventually(Duration::from_secs(60), "True", || {
        jsonpath(
            dir,
            &format!("plugin/{name}"),
            "{.status.conditions[?(@.type==\"Loaded\")].status}",
        )
    });
}

/// A copy of the built plugin `file` in the plugin directory of `dir`.
fn in_plugin_dir(dir: &Path, file: &str) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let copy = plugins.join(file);
    std::fs::copy(built_plugin(file), &copy).unwrap();
    copy
}

#[test]
fn declared_policies_are_called_by_their_rules_and_fail_by_their_failure_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start_server(d, &[]);
    let allowed = in_plugin_dir(d, "allowed_registries.wasm");
    declare(
        d,
        "allowed-registries",
        &allowed,
        "{registries: [registry.example:5000], defaultLabels: {team: unassigned}}",
        "{mutating: true, rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}], namespaceSelector: {matchLabels: {policy: 'on'}}}",
    );
    kubectl(d, &["create", "namespace", "guarded"]);
    kubectl(d, &["label", "namespace", "guarded", "policy=on"]);
    let (ok, _, err) = apply(d, &pod("guarded", "bad", "nginx:1.27", ""));
    assert!(!ok);
    assert!(
        err.contains("pods \"bad\" is forbidden: image \"nginx:1.27\" of container \"app\" is not from an allowed registry (registry.example:5000)"),
        "{err}"
    );
    // A dry run is mutated and checked, and stores nothing.
    let good = pod("guarded", "good", "registry.example:5000/web:1", "");
    let (ok, out, err) = kubectl_with(
        d,
        &[
            "apply",
            "--dry-run=server",
            "-o",
            "jsonpath={.metadata.labels.team}",
            "-f",
            "-",
        ],
        &good,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "unassigned");
    assert!(run_kubectl(d, &["get", "pod", "good", "-n", "guarded"]).contains("NotFound"));
    assert!(apply(d, &good).0);
    let team = [
        "get",
        "pod",
        "good",
        "-n",
        "guarded",
        "-o",
        "jsonpath={.metadata.labels.team}",
    ];
    assert_eq!(kubectl(d, &team), "unassigned");
    // Namespaces the selector does not match are not its business.
    assert!(apply(d, &pod("default", "free", "nginx:1.27", "")).0);

    // Policies that trap, spin and hog memory: each fails its own calls,
    // refusing (Fail) or letting the write go on with a warning (Ignore).
    let misbehaving = in_plugin_dir(d, "misbehaving_policy.wasm");
    let bad = [
        (
            "trap",
            "configmaps",
            "Fail",
            "wasm trap: wasm `unreachable` instruction executed",
        ),
        ("spin", "secrets", "Ignore", "ran longer than 100ms"),
        (
            "hog",
            "serviceaccounts",
            "Fail",
            "wanted more than 268435456 bytes of memory",
        ),
    ];
    for (how, resource, failure, _) in bad {
        declare(
            d,
            how,
            &misbehaving,
            &format!("{{misbehave: {how}}}"),
            &format!(
                "{{failurePolicy: {failure}, rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [{resource}]}}]}}"
            ),
        );
    }
    let (ok, _, err) = kubectl_with(d, &["create", "configmap", "c"], "");
    assert!(!ok);
    assert!(
        err.contains("Internal error occurred: failed calling admission policy \"trap\": plugin trap: validate failed: wasm trap"),
        "{err}"
    );
    let (ok, _, err) = kubectl_with(d, &["create", "secret", "generic", "s"], "");
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: admission policy \"spin\" failed and was ignored: plugin spin: validate failed: ran longer than 100ms"),
        "{err}"
    );
    let (ok, _, err) = kubectl_with(d, &["create", "serviceaccount", "a"], "");
    assert!(!ok);
    assert!(
        err.contains("wanted more than 268435456 bytes of memory"),
        "{err}"
    );
    // The API serves on, and each Plugin counts its failures and says so in
    // an Event.
    assert!(apply(d, &pod("default", "after", "x", "")).0);
    for (how, _, _, said) in bad {
        eventually(Duration::from_secs(10), "1", || {
            jsonpath(d, &format!("plugin/{how}"), "{.status.failures}")
        });
        let last = jsonpath(d, &format!("plugin/{how}"), "{.status.lastFailure}");
        assert!(last.contains(said), "{how}: {last}");
        let events = kubectl(
            d,
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={how}"),
                "-o",
                "jsonpath={.items[*].reason}",
            ],
        );
        assert_eq!(events, "PolicyFailed", "{how}");
    }
    // Deleted, a policy is called no more.
    kubectl(d, &["delete", "plugin", "trap"]);
    eventually(Duration::from_secs(10), "configmap/again", || {
        run_kubectl(d, &["create", "configmap", "again", "-o", "name"])
            .trim()
            .to_owned()
    });
    assert!(server.stop());
}

/// A create of `object` (of `plural`, `kind`) in `default`, as a policy gets it.
fn create(plural: &str, kind: &str, object: serde_json::Value) -> Request {
    Request {
        uid: "u".into(),
        kind: (String::new(), "v1".into(), kind.into()),
        resource: (String::new(), "v1".into(), plural.into()),
        sub_resource: String::new(),
        name: object["metadata"]["name"].as_str().unwrap_or("").into(),
        namespace: "default".into(),
        operation: Operation::Create,
        user: User {
            name: "jane".into(),
            ..User::default()
        },
        object: Some(Arc::new(object)),
        old_object: None,
        dry_run: false,
        options: "{}".into(),
    }
}

/// Runs `future` to its end.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(future)
}

/// A policy's answer: allowed, the Status, the warnings, the patch as JSON.
type Answer = (
    bool,
    Option<(u16, String, String)>,
    Vec<String>,
    serde_json::Value,
);

/// What `policy` answers `request` in `phase`.
fn answer(policy: &AdmissionPolicy, phase: Phase, request: Request) -> Answer {
    let verdict = block_on(policy.call(phase, request)).unwrap();
    let patch = verdict.patch.map_or(serde_json::Value::Null, |p| {
        serde_json::from_str(&p).unwrap()
    });
    (verdict.allowed, verdict.status, verdict.warnings, patch)
}

/// No lookups: the example needs none.
struct Nothing;

impl Lookup for Nothing {
    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn list(&self, _: &str, _: &str, _: &str, _: &str, _: usize) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

#[test]
fn the_example_policy_behaves_alike_in_rust_python_and_javascript() {
    use serde_json::json;
    let guests = crate::scheduler::built_guests();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-admission/compiled");
    let host = PluginHost::new(Arc::new(Engine::start(&Settings::at(&cache)).unwrap()));
    let settings = json!({"registries": ["registry.example:5000", "localhost"],
        "defaultLabels": {"team": "unassigned", "example.com/owner": "ops"}});
    let pod = |labels: serde_json::Value, image: &str, init: Option<&str>| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "app", "image": image}]}});
        if let Some(init) = init {
            pod["spec"]["initContainers"] = json!([{"name": "setup", "image": init}]);
        }
        if labels.is_null() {
            pod["metadata"].as_object_mut().unwrap().remove("labels");
        }
        pod
    };
    let mut answers = Vec::new();
    for file in [
        "allowed_registries.wasm",
        "allowed_registries_python.wasm",
        "allowed_registries_js.wasm",
    ] {
        let component = host
            .compile(file, &std::fs::read(guests.join(file)).unwrap())
            .unwrap();
        let load = |settings: &str| {
            let lookup = Arc::new(Nothing);
            block_on(AdmissionPolicy::new(
                &host,
                file,
                &component,
                settings,
                Limits::default(),
                lookup,
            ))
        };
        for (bad, said) in [
            ("{}", "registries: a list of registries is required"),
            (r#"{"registries": [1]}"#, "registries: each is a string"),
        ] {
            let refused = load(bad).expect_err(file).to_string();
            assert!(
                refused.contains("refused its args") && refused.contains(said),
                "{file}: {refused}"
            );
        }
        let policy = load(&settings.to_string()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mine = vec![
            answer(
                &policy,
                Phase::Mutate,
                create(
                    "pods",
                    "Pod",
                    pod(json!({"app": "web"}), "registry.example:5000/web:1", None),
                ),
            ),
            answer(
                &policy,
                Phase::Mutate,
                create(
                    "pods",
                    "Pod",
                    pod(serde_json::Value::Null, "localhost/web:1", None),
                ),
            ),
            answer(
                &policy,
                Phase::Validate,
                create(
                    "pods",
                    "Pod",
                    pod(json!({}), "registry.example:5000/web:1", None),
                ),
            ),
            answer(
                &policy,
                Phase::Validate,
                create("pods", "Pod", pod(json!({}), "nginx:1.27", None)),
            ),
            answer(
                &policy,
                Phase::Validate,
                create(
                    "pods",
                    "Pod",
                    pod(json!({}), "localhost/web:1", Some("docker.io/busybox")),
                ),
            ),
            answer(
                &policy,
                Phase::Mutate,
                create(
                    "configmaps",
                    "ConfigMap",
                    json!({"metadata": {"name": "c"}}),
                ),
            ),
        ];
        answers.push((file, mine));
    }
    let (_, rust) = &answers[0];
    assert_eq!(
        rust[0].3,
        json!([{"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "ops"},
            {"op": "add", "path": "/metadata/labels/team", "value": "unassigned"}])
    );
    assert_eq!(
        rust[1].3,
        json!([{"op": "add", "path": "/metadata/labels", "value": {"team": "unassigned", "example.com/owner": "ops"}}])
    );
    assert!(rust[2].0);
    assert_eq!(
        rust[3].1,
        Some((403, "Forbidden".into(), "pods \"web\" is forbidden: image \"nginx:1.27\" of container \"app\" is not from an allowed registry (registry.example:5000, localhost)".into()))
    );
    assert_eq!(
        rust[4].1.as_ref().map(|s| s.2.as_str()),
        Some(
            "pods \"web\" is forbidden: image \"docker.io/busybox\" of container \"setup\" is not from an allowed registry (registry.example:5000, localhost)"
        )
    );
    assert_eq!(rust[5], (true, None, Vec::new(), serde_json::Value::Null));
    for (file, theirs) in &answers[1..] {
        assert_eq!(theirs, rust, "{file} answers as the Rust policy does");
    }
}

#[test]
fn validating_admission_policies_in_cel_deny_and_warn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start_server(d, &[]);
    let policies = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: demo-policy.example.com}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  variables:
  - {name: most, expression: int(params.data.maxReplicas)}
  validations:
  - expression: object.spec.replicas <= variables.most
    messageExpression: \"'replicas ' + string(object.spec.replicas) + ' is more than ' + string(variables.most)\"
  - expression: object.metadata.name != 'forbidden'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: demo-binding-test.example.com}
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  paramRef: {name: limits, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector: {matchLabels: {environment: test}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: demo-binding-dev.example.com}
spec:
  policyName: demo-policy.example.com
  validationActions: [Warn]
  paramRef: {name: limits, parameterNotFoundAction: Allow}
  matchResources:
    namespaceSelector: {matchLabels: {environment: dev}}
";
    let (ok, _, err) = apply(d, policies);
    assert!(ok, "{err}");
    for (namespace, environment) in [("test", "test"), ("dev", "dev"), ("unset", "test")] {
        kubectl(d, &["create", "namespace", namespace]);
        kubectl(
            d,
            &[
                "label",
                "namespace",
                namespace,
                &format!("environment={environment}"),
            ],
        );
    }
    for (namespace, most) in [("test", 3), ("dev", 5)] {
        let limits = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: limits, namespace: {namespace}}}\ndata: {{maxReplicas: '{most}'}}\n"
        );
        assert!(apply(d, &limits).0);
    }
    let deployment = |namespace: &str, name: &str, replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: x}}]}}\n"
        )
    };
    // Deny, with the params' limit, worded as Kubernetes words it.
    eventually(Duration::from_secs(10), "refused", || {
        let (ok, _, _) = apply(d, &deployment("test", "big", 4));
        if ok {
            kubectl(d, &["delete", "deployment", "big", "-n", "test"]);
            "let in".into()
        } else {
            "refused".into()
        }
    });
    let (ok, _, err) = apply(d, &deployment("test", "big", 4));
    assert!(!ok);
    assert!(
        err.contains("The deployments \"big\" is invalid: : ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: replicas 4 is more than 3"),
        "{err}"
    );
    let (ok, _, err) = apply(d, &deployment("test", "forbidden", 1));
    assert!(!ok);
    assert!(
        err.contains("denied request: failed expression: object.metadata.name != 'forbidden'"),
        "{err}"
    );
    assert!(apply(d, &deployment("test", "small", 3)).0);
    // Params a binding names must be there, unless it allows them missing.
    let (ok, _, err) = apply(d, &deployment("unset", "any", 1));
    assert!(!ok);
    assert!(
        err.contains("no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{err}"
    );
    // Warn: the write goes on, and the client hears why.
    let (ok, _, err) = apply(d, &deployment("dev", "big", 6));
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-dev.example.com': replicas 6 is more than 5"),
        "{err}"
    );
    // Namespaces no binding names are not the policy's business.
    kubectl(d, &["create", "namespace", "free"]);
    assert!(apply(d, &deployment("free", "big", 9)).0);
    assert!(server.stop());
}

/// A webhook's answer to `review`: allowed unless the object is labelled
/// `deny: "yes"`; for `/mutate`, a patch labelling it `mutated: "yes"`.
fn webhook_answer(mutate: bool, review: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    use serde_json::json;
    let request = &review["request"];
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if mutate {
        let patch = json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    } else if request["object"]["metadata"]["labels"]["deny"] == "yes" {
        response["allowed"] = json!(false);
        response["status"] =
            json!({"code": 403, "message": "configmaps labelled deny=yes are refused"});
    } else {
        response["warnings"] = json!(["checked by the test's webhook"]);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

#[test]
fn webhooks_get_admission_reviews_over_https_and_their_patches_are_applied() {
    use base64::Engine as _;
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start_server(d, &[]);
    // The webhook: HTTPS with a certificate of a CA of its own, kept apart
    // from the cluster's.
    let ca = wasmkube_pki::Ca::load_or_create(&d.join("webhook-ca")).unwrap();
    let profile = wasmkube_pki::Profile::server("webhook", &[], &["127.0.0.1".parse().unwrap()]);
    let issued = ca.issue(&profile).unwrap();
    let tls = wasmkube_pki::server_config(&issued.cert_pem, &issued.key_pem, None).unwrap();
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = seen.clone();
    let answer = move |mutate: bool| {
        let heard = heard.clone();
        move |axum::Json(review): axum::Json<serde_json::Value>| async move {
            heard.lock().unwrap().push(review.clone());
            axum::Json(webhook_answer(mutate, &review))
        }
    };
    let router = axum::Router::new()
        .route("/mutate", axum::routing::post(answer(true)))
        .route("/validate", axum::routing::post(answer(false)));
    runtime.spawn(wasmkube_pki::serve(
        listener,
        router,
        tls,
        std::future::pending(),
    ));
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let configurations = format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: label.example.com}}
webhooks:
- name: label.example.com
  clientConfig: {{url: 'https://127.0.0.1:{port}/mutate', caBundle: {bundle}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [configmaps]}}]
  objectSelector: {{matchLabels: {{app: checked}}}}
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: deny.example.com}}
webhooks:
- name: deny.example.com
  clientConfig: {{url: 'https://127.0.0.1:{port}/validate', caBundle: {bundle}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [configmaps]}}]
  objectSelector: {{matchLabels: {{app: checked}}}}
  sideEffects: None
  admissionReviewVersions: [v1]
- name: gone.example.com
  clientConfig: {{url: 'https://127.0.0.1:1/nowhere', caBundle: {bundle}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [secrets]}}]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
"
    );
    let (ok, _, err) = apply(d, &configurations);
    assert!(ok, "{err}");
    let map = |name: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {labels}}}\ndata: {{a: b}}\n"
        )
    };
    // Patched by the mutating webhook, warned of by the validating one.
    eventually(Duration::from_secs(10), "yes", || {
        let name = format!("m{}", seen.lock().unwrap().len());
        apply(d, &map(&name, "{app: checked}"));
        run_kubectl(
            d,
            &[
                "get",
                "configmap",
                &name,
                "-o",
                "jsonpath={.metadata.labels.mutated}",
            ],
        )
    });
    let (ok, _, err) = apply(d, &map("plain", "{app: checked}"));
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: checked by the test's webhook"),
        "{err}"
    );
    assert_eq!(
        jsonpath(d, "configmap/plain", "{.metadata.labels.mutated}"),
        "yes"
    );
    // What the webhooks were sent: AdmissionReview v1, the object as it
    // would be stored (the mutation applied before validation).
    let reviews = seen.lock().unwrap().clone();
    let sent = reviews
        .iter()
        .rev()
        .find(|r| r["request"]["object"]["metadata"]["name"] == "plain")
        .unwrap();
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(sent["kind"], "AdmissionReview");
    let request = &sent["request"];
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["resource"]["resource"], "configmaps");
    assert_eq!(request["kind"]["kind"], "ConfigMap");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["userInfo"]["username"], "wasmkube-admin");
    assert_eq!(request["object"]["metadata"]["labels"]["mutated"], "yes");
    // Refused, in Kubernetes' words.
    let (ok, _, err) = apply(d, &map("denied", "{app: checked, deny: 'yes'}"));
    assert!(!ok);
    assert!(
        err.contains("admission webhook \"deny.example.com\" denied the request: configmaps labelled deny=yes are refused"),
        "{err}"
    );
    // Objects the selector does not name are not sent.
    let before = seen.lock().unwrap().len();
    assert!(apply(d, &map("other", "{app: free}")).0);
    assert_eq!(seen.lock().unwrap().len(), before);
    // A webhook that cannot be called refuses what it is for (Fail).
    let refused = run_kubectl(
        d,
        &["create", "secret", "generic", "s", "--from-literal=a=b"],
    );
    assert!(
        refused.contains("failed calling webhook \"gone.example.com\""),
        "{refused}"
    );
    assert!(server.stop());
}
