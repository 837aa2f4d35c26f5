//! The `wasmkube` command line as a user without kubectl meets it: `run` and
//! `push` through the built-in registry (which skopeo, a second client, pulls
//! from and pushes to), `plugin`, `get`, `describe`, `apply`, `delete`,
//! `logs`, `image`, `store` and `completion`, the cluster found as kubectl
//! finds it, flags from the environment and a config file, and exit codes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use wasmkube_engine::Shipped;
use wasmkube_plugin_host::builtin;
use wasmkube_store_etcd::server::EtcdServer;

use crate::agent::{eventually, http_get, import_examples, jsonpath, kubectl, run_kubectl};
use crate::process::Server;

/// `wasmkube ARGS` in `cwd` with `env`, and nothing of the test's own
/// environment that would point it at a cluster.
fn wasmkube_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .current_dir(cwd)
        .env_remove("KUBECONFIG")
        .env("HOME", cwd)
        .env("WASMKUBE_CONFIG", cwd.join("no-config.yaml"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// What a command printed: stdout, then stderr.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command that must succeed; its stdout.
fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", said(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wasi/target/wasm32-wasip2/release")
}

#[test]
fn a_bundled_program_starts_a_fresh_node_without_compiling_its_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("wasmkube");
    let built_in = builtin::SCHEDULING.len() + builtin::NETWORK.len() + builtin::ADMISSION.len();
    let said = ok(wasmkube_in(
        dir.path(),
        &[],
        &["bundle", "--output", bundle.to_str().unwrap()],
    ));
    assert!(
        said.contains(&format!("ships {built_in} compiled plugins")),
        "{said}"
    );
    assert_eq!(Shipped::in_file(&bundle).unwrap().len(), built_in);

    // `up` on a fresh data dir: its node Ready and a pod placed means every
    // built-in plugin is loaded, and none was compiled.
    let data_dir = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let mut up = Command::new(&bundle)
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "wasmkube_engine=info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), "pod/first created\n", || {
        run_kubectl(&data_dir, &["run", "first", "--image", "examples/sleep:1"])
    });
    eventually(Duration::from_secs(60), "1", || {
        let node = jsonpath(&data_dir, "pod/first", "{.spec.nodeName}");
        node.len().min(1).to_string()
    });
    up.kill().unwrap();
    up.wait().unwrap();
    let logged = std::fs::read_to_string(dir.path().join("up.log")).unwrap();
    assert!(!logged.contains("compiling"), "{logged}");
    let compiled = std::fs::read_dir(data_dir.join("compiled"))
        .unwrap()
        .count();
    assert_eq!(compiled, built_in);
}

#[test]
fn a_user_runs_inspects_and_removes_wasm_workloads_with_wasmkube_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The cluster's data dir is `wasmkube-data` under the user's working
    // directory, where the client verbs find its kubeconfig unasked.
    let data = d.join("wasmkube-data");
    import_examples(&data, &[]);
    let server = Server::start(&data);
    let registry = server.url.trim_start_matches("https://").to_owned();
    let w = |args: &[&str]| wasmkube_in(d, &[], args);

    // run: the file goes to the built-in registry, then a Deployment and a
    // Service; it answers where it says.
    let http = examples().join("http_hello.wasm");
    let http = http.to_str().unwrap();
    let out = ok(w(&[
        "run",
        "web",
        "--wasm",
        http,
        "--port",
        "8080",
        "--replicas",
        "2",
    ]));
    assert!(
        out.contains("deployment.apps/web created\nservice/web created\n"),
        "{out}"
    );
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("web is answering at http://"))
        .unwrap_or_else(|| panic!("no URL in {out:?}"));
    let address = url.trim_end_matches('/');
    assert!(
        address.starts_with("127.") && address.ends_with(":8080"),
        "{address}"
    );
    // The Deployment is ready; the node's proxy takes the Service's address
    // as soon as it sees the Service and its endpoints, a moment later under
    // load.
    eventually(
        Duration::from_secs(10),
        "hello from wasi:http: GET /cli\n",
        || http_get(address, "/cli"),
    );

    // get: the server's table, kubectl's layout; several kinds are prefixed.
    let pods = ok(w(&["get", "pods", "-l", "app=web"]));
    let lines: Vec<&str> = pods.lines().collect();
    assert!(
        lines[0].starts_with("NAME ") && lines[0].contains("   READY   STATUS"),
        "{pods}"
    );
    assert_eq!(lines.len(), 3, "{pods}");
    assert!(lines[1..].iter().all(|l| l.contains("Running")), "{pods}");
    let both = ok(w(&["get", "deploy,svc", "web"]));
    assert!(both.contains("deployment.apps/web   2/2"), "{both}");
    assert!(both.contains("service/web   ClusterIP"), "{both}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(w(&["get", "deployment/web", "-o", "json"]))).unwrap();
    assert_eq!(json["status"]["readyReplicas"], 2);
    let image = json["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        image.starts_with(&format!("{registry}/web:sha256-")),
        "{image}"
    );
    let names = ok(w(&["get", "svc", "-o", "name"]));
    assert!(names.contains("service/web\n"), "{names}");

    // describe: the object's fields, then the events about it.
    let pod = lines[1].split_whitespace().next().unwrap();
    let described = ok(w(&["describe", "pod", pod]));
    assert!(described.starts_with(&format!("Name:         {pod}\nNamespace:    default\n")));
    assert!(described.contains("  Node Name:  "), "{described}");
    assert!(described.contains("Scheduled"), "{described}");
    assert!(
        described.contains("Successfully assigned default/"),
        "{described}"
    );

    // push, by default to the cluster's registry; then apply a Job of it and
    // read its pod's log.
    let hello = examples().join("hello.wasm");
    let out = ok(w(&["push", hello.to_str().unwrap(), "greeter:1"]));
    assert!(
        out.starts_with(&format!("pushed {registry}/greeter:1 (sha256:")),
        "{out}"
    );
    let manifest = d.join("job.yaml");
    let job = |greeting: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{greeting: {greeting}}}\n---\n\
             apiVersion: batch/v1\nkind: Job\nmetadata: {{name: greet}}\nspec:\n  template:\n    spec:\n      \
             restartPolicy: Never\n      containers:\n      - name: greet\n        image: {registry}/greeter:1\n        \
             args: [from-a-job]\n        env:\n        - name: GREETING\n          valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}\n"
        )
    };
    std::fs::write(&manifest, job("hi")).unwrap();
    let file = manifest.to_str().unwrap();
    assert_eq!(
        ok(w(&["apply", "-f", file])),
        "configmap/settings created\njob.batch/greet created\n"
    );
    assert_eq!(
        ok(w(&["apply", "-f", file])),
        "configmap/settings unchanged\njob.batch/greet unchanged\n"
    );
    eventually(Duration::from_secs(60), "1", || {
        let job = ok(w(&["get", "job", "greet", "-o", "json"]));
        let job: serde_json::Value = serde_json::from_str(&job).unwrap();
        job["status"]["succeeded"].to_string()
    });
    // The Job selects its pods by its uid, as Kubernetes makes it.
    let greet: serde_json::Value =
        serde_json::from_str(&ok(w(&["get", "job", "greet", "-o", "json"]))).unwrap();
    let selector = &greet["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"];
    assert_eq!(selector, &greet["metadata"]["uid"]);
    let pod = ok(w(&["get", "pods", "-l", "job-name=greet", "-o", "name"]));
    let pod = pod.trim().trim_start_matches("pod/");
    let log = ok(w(&["logs", pod]));
    assert!(
        log.contains("hello from a wasm pod: args [\"from-a-job\"]\nGREETING=hi\n"),
        "{log}"
    );
    // A changed manifest updates what it changed.
    std::fs::write(&manifest, job("hey")).unwrap();
    let out = ok(w(&["apply", "-f", file]));
    assert!(out.starts_with("configmap/settings configured\n"), "{out}");

    // A bad manifest is refused, naming the file; nothing is applied.
    std::fs::write(d.join("bad.yaml"), "kind: [unclosed").unwrap();
    let out = w(&["apply", "-f", d.join("bad.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("bad.yaml"), "{}", said(&out));

    // plugin: a file pushed and declared; the scheduler loads it.
    let plugin = crate::scheduler::built_plugin("prefer_edge.wasm");
    let out = ok(w(&[
        "plugin",
        "load",
        plugin.to_str().unwrap(),
        "--name",
        "prefer-edge",
        "--extension-points",
        "Score",
        "--weight",
        "5",
        "--args",
        "{\"tier\": \"edge\"}",
    ]));
    assert_eq!(out, "plugin.wasmkube.io/prefer-edge created\n");
    eventually(Duration::from_secs(120), "True", || {
        let listed = ok(w(&["plugin", "ls"]));
        let row = listed.lines().find(|l| l.starts_with("prefer-edge "));
        row.and_then(|r| r.split_whitespace().nth(2))
            .unwrap_or("")
            .to_owned()
    });
    // Without saying where it runs, a scheduler plugin is refused.
    let out = w(&["plugin", "load", plugin.to_str().unwrap(), "--name", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--extension-points"), "{}", said(&out));
    // Loaded again, its spec is replaced whole.
    let spec = || {
        let object = ok(w(&["get", "plugin", "prefer-edge", "-o", "json"]));
        serde_json::from_str::<serde_json::Value>(&object).unwrap()["spec"].clone()
    };
    let first = spec();
    let reference = first["source"]["image"].as_str().unwrap().to_owned();
    assert!(reference.starts_with(&format!("{registry}/plugins/prefer-edge:sha256-")));
    assert_eq!(first["args"], serde_json::json!({"tier": "edge"}));
    let again = [
        "plugin",
        "load",
        &reference,
        "--name",
        "prefer-edge",
        "--extension-points",
        "Score",
        "--weight",
        "7",
    ];
    assert_eq!(ok(w(&again)), "plugin.wasmkube.io/prefer-edge configured\n");
    let second = spec();
    assert_eq!(second["source"], serde_json::json!({"image": reference}));
    assert_eq!(second["scheduler"]["weight"], 7);
    assert!(second.get("args").is_none(), "{second}");
    let out = ok(w(&["plugin", "unload", "prefer-edge"]));
    assert_eq!(out, "plugin \"prefer-edge\" deleted\n");
    let gone = w(&["get", "plugin", "prefer-edge"]);
    assert_eq!(gone.status.code(), Some(3), "{}", said(&gone));

    // delete: by manifest and by name, waiting until the objects are gone.
    let out = ok(w(&["delete", "-f", file]));
    assert_eq!(
        out,
        "configmap \"settings\" deleted\njob \"greet\" deleted\n"
    );
    let out = ok(w(&["delete", "deploy/web", "svc/web"]));
    assert_eq!(out, "deployment \"web\" deleted\nservice \"web\" deleted\n");
    let out = w(&["get", "deploy", "web"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(
        said(&out).contains("Error from server (NotFound): deployments.apps \"web\" not found")
    );
    ok(w(&["delete", "pod", "nobody", "--ignore-not-found"]));

    // Exit codes: not found 3, an unknown kind 2, no cluster 4.
    let out = w(&["delete", "pod", "nobody"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let out = w(&["get", "gizmos"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("doesn't have a resource type \"gizmos\""));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = wasmkube_in(elsewhere.path(), &[], &["get", "pods"]);
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    assert!(
        said(&out).contains("--kubeconfig FILE, set KUBECONFIG"),
        "{}",
        said(&out)
    );
    // KUBECONFIG and --kubeconfig find the cluster from anywhere.
    let kubeconfig = data.join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    let out = wasmkube_in(
        elsewhere.path(),
        &[("KUBECONFIG", kubeconfig)],
        &["get", "ns"],
    );
    assert!(ok(out).contains("kube-system"));
    let out = wasmkube_in(
        elsewhere.path(),
        &[],
        &["get", "ns", "--kubeconfig", kubeconfig],
    );
    assert!(ok(out).contains("kube-system"));

    // skopeo, a second client of the registry: it reads what `push` wrote,
    // and what it pushes runs.
    let copy = format!("dir:{}", d.join("copy").display());
    // The registry speaks TLS with the cluster's CA and wants an identity:
    // a ServiceAccount token as the password. Anyone of the cluster pulls;
    // pushing takes `wasmkube:registry-pusher`.
    let certs = d.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(data.join("pki/ca.crt"), certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();
    let k = |args: &[&str]| kubectl(&data, args);
    k(&["create", "serviceaccount", "pusher"]);
    k(&["create", "serviceaccount", "reader"]);
    k(&[
        "create",
        "clusterrolebinding",
        "pusher",
        "--clusterrole=wasmkube:registry-pusher",
        "--serviceaccount=default:pusher",
    ]);
    let creds = |account: &str| {
        let token = k(&["create", "token", account]);
        format!("{account}:{}", token.trim())
    };
    let (pusher, reader) = (creds("pusher"), creds("reader"));
    let source = format!("docker://{registry}/greeter:1");
    let anonymous = skopeo_says(&["copy", "--src-cert-dir", certs, &source, &copy]);
    assert!(anonymous.contains("authentication required"), "{anonymous}");
    skopeo(&[
        "copy",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &reader,
        &source,
        &copy,
    ]);
    let target = format!("docker://{registry}/copied/greeter:2");
    let refused = skopeo_says(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &reader,
        &copy,
        &target,
    ]);
    assert!(refused.contains("StatusCode: 403"), "{refused}");
    skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &pusher,
        &copy,
        &target,
    ]);
    let tags = skopeo(&[
        "list-tags",
        "--cert-dir",
        certs,
        "--creds",
        &reader,
        &format!("docker://{registry}/copied/greeter"),
    ]);
    assert!(tags.contains("\"2\""), "{tags}");
    // A command ends and starts again: there is no ready pod to wait for.
    let reference = format!("{registry}/copied/greeter:2");
    let run = [
        "run",
        "copied",
        "--wasm",
        &reference,
        "--wait=false",
        "--",
        "copied",
    ];
    assert_eq!(ok(w(&run)), "deployment.apps/copied created\n");
    eventually(Duration::from_secs(60), "true", || {
        let pod = ok(w(&["get", "pods", "-l", "app=copied", "-o", "name"]));
        let pod = pod.trim().trim_start_matches("pod/").to_owned();
        let log = w(&["logs", &pod]);
        said(&log).contains("args [\"copied\"]").to_string()
    });
    assert!(server.stop(), "the cluster stops cleanly on SIGTERM");
}

/// skopeo, which must succeed; its output.
fn skopeo(args: &[&str]) -> String {
    let out = skopeo_run(args);
    assert!(out.status.success(), "skopeo {args:?}: {}", said(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// skopeo, which must fail; what it said.
fn skopeo_says(args: &[&str]) -> String {
    let out = skopeo_run(args);
    assert!(!out.status.success(), "skopeo {args:?} succeeded");
    said(&out)
}

fn skopeo_run(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .expect("skopeo runs (scripts/install-deps.sh installs it)")
}

#[test]
fn local_images_flags_from_the_environment_and_a_config_file_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(&d.join("unused"), &[]);
    let hello = examples().join("hello.wasm");
    let hello = hello.to_str().unwrap();
    // The config file names the data dir; the environment wins over it.
    std::fs::write(d.join("config.yaml"), "data-dir: from-file\n").unwrap();
    let config = d.join("config.yaml");
    let config = config.to_str().unwrap();
    let file = [("WASMKUBE_CONFIG", config)];
    ok(wasmkube_in(
        d,
        &file,
        &["image", "import", hello, "hello:1"],
    ));
    let env = [
        ("WASMKUBE_CONFIG", config),
        ("WASMKUBE_DATA_DIR", "from-env"),
    ];
    ok(wasmkube_in(d, &env, &["image", "import", hello, "hello:2"]));
    ok(wasmkube_in(d, &env, &["image", "import", hello, "other:1"]));
    let listed = ok(wasmkube_in(d, &file, &["image", "ls"]));
    let rows: Vec<&str> = listed.lines().collect();
    assert!(
        rows[0].starts_with("IMAGE ") && rows[0].contains("DIGEST"),
        "{listed}"
    );
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows[1].starts_with("hello:1 "), "{listed}");
    let listed = ok(wasmkube_in(d, &env, &["image", "ls"]));
    assert!(
        listed.contains("hello:2 ") && listed.contains("other:1 "),
        "{listed}"
    );
    // The command line wins over both.
    let out = ok(wasmkube_in(
        d,
        &env,
        &["image", "rm", "--data-dir", "from-file", "hello:1"],
    ));
    assert!(out.starts_with("removed hello:1 (sha256:"), "{out}");
    let out = wasmkube_in(d, &file, &["image", "rm", "hello:1"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(said(&out).contains("wasmkube image ls"), "{}", said(&out));
    // A key no command takes is refused, naming it.
    std::fs::write(d.join("config.yaml"), "data-dri: typo\n").unwrap();
    let out = wasmkube_in(d, &file, &["image", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("no command takes --data-dri"),
        "{}",
        said(&out)
    );

    let bash = ok(wasmkube_in(d, &[], &["completion", "bash"]));
    assert!(
        bash.contains("_wasmkube()") && bash.contains("snapshot"),
        "{bash}"
    );
    let help = ok(wasmkube_in(d, &[], &["run", "--help"]));
    assert!(
        help.contains("Examples:") && help.contains("[env: WASMKUBE_REPLICAS="),
        "{help}"
    );
}

#[test]
fn a_cluster_moves_from_the_embedded_store_to_etcd_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |args: &[&str]| wasmkube_in(d, &[], args);
    let first = d.join("first");
    let server = Server::start(&first);
    let kubeconfig = first.join("kubeconfig");
    let manifest = d.join("objects.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: prices, namespace: shop}\ndata: {apple: \"3\"}\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    let manifest = manifest.to_str().unwrap();
    ok(w(&["apply", "-f", manifest, "--kubeconfig", kubeconfig]));
    let data = first.to_str().unwrap();
    // The embedded store is one process's: a snapshot waits for the stop.
    let snapshot = d.join("cluster.snap");
    let snapshot = snapshot.to_str().unwrap();
    let busy = w(&["store", "snapshot", snapshot, "--data-dir", data]);
    assert!(!busy.status.success());
    assert!(
        said(&busy).contains("in use by another process"),
        "{}",
        said(&busy)
    );
    assert!(server.stop());
    let out = ok(w(&["store", "snapshot", snapshot, "--data-dir", data]));
    assert!(out.contains(" keys at revision "), "{out}");

    let etcd = EtcdServer::start(&{
        let etcd_dir = d.join("etcd");
        std::fs::create_dir_all(&etcd_dir).unwrap();
        etcd_dir
    })
    .unwrap();
    let store = format!("etcd={}", etcd.url());
    ok(w(&["store", "restore", snapshot, "--store", &store]));
    // Once restored, the store is not empty: a second restore is refused.
    let again = w(&["store", "restore", snapshot, "--store", &store]);
    assert_eq!(again.status.code(), Some(1));
    assert!(said(&again).contains("not empty"), "{}", said(&again));

    let on_etcd = Server::start_on_etcd(&d.join("second"), &etcd.url());
    let get = |data_dir: &Path| {
        let kubeconfig = data_dir.join("kubeconfig");
        let kubeconfig = kubeconfig.to_str().unwrap();
        let args = [
            "get",
            "cm",
            "prices",
            "-n",
            "shop",
            "-o",
            "json",
            "--kubeconfig",
            kubeconfig,
        ];
        let object: serde_json::Value = serde_json::from_str(&ok(w(&args))).unwrap();
        object["data"]["apple"].clone()
    };
    assert_eq!(get(&d.join("second")), "3");
    // And back, from etcd into a new data dir.
    let back = d.join("back.snap");
    let back = back.to_str().unwrap();
    ok(w(&["store", "snapshot", back, "--store", &store]));
    drop(on_etcd);
    let third = d.join("third");
    ok(w(&[
        "store",
        "restore",
        back,
        "--data-dir",
        third.to_str().unwrap(),
    ]));
    let _server = Server::start(&third);
    assert_eq!(get(&third), "3");
}
