//! RBAC against a real server: roles and bindings applied with kubectl, then
//! every case of users × verbs × resources (subresources too) × namespaces ×
//! names asked with a SubjectAccessReview and compared with a plain
//! evaluation of the same rules written here; every case asked again with
//! `kubectl auth can-i --as`.

use std::process::Command;

use serde_json::json;

use crate::process::{Server, send};
use crate::security::ok;

/// A rule: verbs on resources (`pods/log` for a subresource), limited to
/// names when any are given.
struct Rule {
    verbs: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
}

/// A ClusterRole's name and its rules.
const ROLES: &[(&str, &[Rule])] = &[
    (
        "m-read",
        &[Rule {
            verbs: &["get", "list", "watch"],
            resources: &["pods", "configmaps"],
            names: &[],
        }],
    ),
    (
        "m-named",
        &[Rule {
            verbs: &["get", "update", "delete"],
            resources: &["configmaps"],
            names: &["x"],
        }],
    ),
    (
        "m-logs",
        &[Rule {
            verbs: &["get"],
            resources: &["pods", "pods/log"],
            names: &[],
        }],
    ),
];

/// Who holds a role where: a user or a group (`group:NAME`), the role, the
/// namespace of a RoleBinding or `None` for a ClusterRoleBinding.
const BINDINGS: &[(&str, &str, Option<&str>)] = &[
    ("u0", "m-read", None),
    ("u1", "m-read", Some("a")),
    ("u1", "m-named", Some("b")),
    ("group:g1", "m-logs", Some("b")),
    ("group:g2", "m-named", None),
];

/// Each user and their groups.
const USERS: &[(&str, &[&str])] = &[
    ("u0", &[]),
    ("u1", &[]),
    ("u2", &["g1"]),
    ("u3", &["g2"]),
    ("u4", &[]),
];

/// Whether the rules above allow `user` (in `groups`) `verb` on `resource`
/// in `namespace`, on the object `name` ("" for a collection).
fn expected(
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    BINDINGS.iter().any(|(subject, role, scope)| {
        let holds = match subject.strip_prefix("group:") {
            Some(group) => groups.contains(&group),
            None => *subject == user,
        };
        let here = scope.is_none_or(|ns| ns == namespace);
        let rules = ROLES
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, rules)| *rules)
            .unwrap_or(&[]);
        holds
            && here
            && rules.iter().any(|rule| {
                rule.verbs.contains(&verb)
                    && rule.resources.contains(&resource)
                    && (rule.names.is_empty() || (!name.is_empty() && rule.names.contains(&name)))
            })
    })
}

/// The manifest of the roles and bindings.
fn manifest() -> String {
    let mut objects = Vec::new();
    for (name, rules) in ROLES {
        let rules: Vec<_> = rules
            .iter()
            .map(|r| {
                let mut rule =
                    json!({"apiGroups": [""], "verbs": r.verbs, "resources": r.resources});
                if !r.names.is_empty() {
                    rule["resourceNames"] = json!(r.names);
                }
                rule
            })
            .collect();
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules}),
        );
    }
    for (n, (subject, role, scope)) in BINDINGS.iter().enumerate() {
        let subject = match subject.strip_prefix("group:") {
            Some(group) => {
                json!({"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"})
            }
            None => {
                json!({"kind": "User", "name": subject, "apiGroup": "rbac.authorization.k8s.io"})
            }
        };
        let role_ref =
            json!({"kind": "ClusterRole", "name": role, "apiGroup": "rbac.authorization.k8s.io"});
        let binding = match scope {
            Some(ns) => json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("m-{n}"), "namespace": ns}, "subjects": [subject], "roleRef": role_ref}),
            None => {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("m-{n}")}, "subjects": [subject], "roleRef": role_ref})
            }
        };
        objects.push(binding);
    }
    json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
}

#[test]
fn rbac_decisions_match_kubernetes_semantics_case_by_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_server(&dir.path().join("data"), &[]);
    let admin = server.kubeconfig.clone();
    for ns in ["a", "b"] {
        ok(&admin, &["create", "namespace", ns]);
    }
    let file = dir.path().join("rbac.json");
    std::fs::write(&file, manifest()).unwrap();
    ok(&admin, &["apply", "-f", file.to_str().unwrap()]);

    let mut cases = Vec::new();
    for (user, groups) in USERS {
        for verb in ["get", "list", "watch", "create", "update", "delete"] {
            for resource in ["pods", "configmaps", "pods/log", "secrets"] {
                for namespace in ["a", "b"] {
                    for name in ["", "x", "y"] {
                        cases.push((*user, *groups, verb, resource, namespace, name));
                    }
                }
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut escapes, mut denials) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        let client = server.client().await;
        for &(user, groups, verb, resource, namespace, name) in &cases {
            let (plural, sub) = resource.split_once('/').unwrap_or((resource, ""));
            let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, "resourceAttributes": {
                    "verb": verb, "resource": plural, "subresource": sub, "namespace": namespace, "name": name}}});
            let (code, answer) = send(
                &client,
                "POST",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                Some("application/json"),
                &review.to_string(),
            )
            .await;
            assert_eq!(code, 201, "{answer}");
            let allowed = answer["status"]["allowed"] == true;
            let case = format!("{user} {verb} {resource} in {namespace} named {name:?}");
            match (allowed, expected(user, groups, verb, resource, namespace, name)) {
                (true, false) => escapes.push(case),
                (false, true) => denials.push(case),
                _ => {}
            }
        }
    });
    assert!(cases.len() >= 700, "{} cases", cases.len());
    assert!(
        escapes.is_empty(),
        "allowed but should not be: {escapes:#?}"
    );
    assert!(
        denials.is_empty(),
        "refused but should not be: {denials:#?}"
    );

    // kubectl auth can-i agrees on every case (four kubectls at a time).
    let disagreements = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for share in cases.chunks(cases.len().div_ceil(4)) {
            let (admin, disagreements) = (&admin, &disagreements);
            scope.spawn(move || {
                for &case in share {
                    let (user, groups, verb, resource, namespace, name) = case;
                    let said = can_i(admin, case);
                    let want = expected(user, groups, verb, resource, namespace, name);
                    if said != want {
                        let case = format!(
                            "{user} {groups:?} {verb} {resource} in {namespace} named {name:?}"
                        );
                        disagreements.lock().unwrap().push(case);
                    }
                }
            });
        }
    });
    let disagreements = disagreements.into_inner().unwrap();
    assert!(
        disagreements.is_empty(),
        "kubectl auth can-i disagrees: {disagreements:#?}"
    );
    assert!(server.stop());
}

/// One case: user, groups, verb, resource (with its subresource), namespace
/// and name ("" for a collection).
type Case<'a> = (&'a str, &'a [&'a str], &'a str, &'a str, &'a str, &'a str);

/// What `kubectl auth can-i` says of `case`, the admin asking as its user.
fn can_i(admin: &std::path::Path, case: Case) -> bool {
    let (user, groups, verb, resource, namespace, name) = case;
    let (plural, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let target = match name {
        "" => plural.to_owned(),
        name => format!("{plural}/{name}"),
    };
    let mut args = vec![
        "auth", "can-i", verb, &target, "-n", namespace, "--as", user,
    ];
    let sub = format!("--subresource={sub}");
    if resource.contains('/') {
        args.push(&sub);
    }
    for group in groups {
        args.extend(["--as-group", group]);
    }
    let out = Command::new(crate::kubectl::which("kubectl"))
        .arg("--kubeconfig")
        .arg(admin)
        .args(&args)
        .output()
        .unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl {args:?} said {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
