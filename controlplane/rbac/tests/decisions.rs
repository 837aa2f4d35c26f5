//! Decisions of the index against a reference evaluator that reads every
//! binding of the cluster for every request, on generated policies; and a
//! cluster of ten thousand bindings.

use serde_json::{Value, json};
use wasmkube_apiserver::access::{Attributes, Decision, ResourceAttributes, UserInfo};
use wasmkube_rbac::Index;

/// A small deterministic generator (xorshift), so that a failing case can be
/// found again.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// One to `most` distinct values of `from`.
    fn some(&mut self, from: &[&str], most: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for _ in 0..=self.below(most) {
            let v = self.pick(from).to_owned();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
struct Rule {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

#[derive(Clone, Debug)]
struct Role {
    namespace: Option<String>,
    name: String,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Subject {
    kind: String,
    name: String,
    namespace: Option<String>,
}

#[derive(Clone, Debug)]
struct Binding {
    namespace: Option<String>,
    name: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

#[derive(Clone, Debug)]
struct Request {
    user: String,
    groups: Vec<String>,
    verb: String,
    /// Group, resource, subresource, namespace, name; none for a path.
    resource: Option<(String, String, String, String, String)>,
    path: String,
}

/// The reference: every binding, every rule, read plainly.
fn reference(roles: &[Role], bindings: &[Binding], request: &Request) -> bool {
    let namespace = request
        .resource
        .as_ref()
        .map(|r| r.3.clone())
        .unwrap_or_default();
    for binding in bindings {
        // A RoleBinding counts only for requests in its own namespace.
        if let Some(bns) = &binding.namespace
            && (namespace.is_empty() || *bns != namespace)
        {
            continue;
        }
        let binding_ns = binding.namespace.clone().unwrap_or_default();
        let applies = binding.subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == request.user,
            "Group" => request.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_ns.clone());
                !ns.is_empty() && request.user == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        });
        if !applies {
            continue;
        }
        let role = roles.iter().find(|r| {
            r.name == binding.role_name
                && match binding.role_kind.as_str() {
                    "ClusterRole" => r.namespace.is_none(),
                    "Role" => binding.namespace.is_some() && r.namespace == binding.namespace,
                    _ => false,
                }
        });
        let Some(role) = role else { continue };
        if role.rules.iter().any(|rule| allows(rule, request)) {
            return true;
        }
    }
    false
}

fn allows(rule: &Rule, request: &Request) -> bool {
    let any = |values: &[String], f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
    if !any(&rule.verbs, &|v| v == "*" || v == request.verb) {
        return false;
    }
    match &request.resource {
        None => any(&rule.urls, &|u| {
            u == "*"
                || u == request.path
                || (u.ends_with('*') && request.path.starts_with(u.trim_end_matches('*')))
        }),
        Some((group, resource, subresource, _, name)) => {
            let full = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            any(&rule.groups, &|g| g == "*" || g == group)
                && any(&rule.resources, &|r| {
                    r == "*"
                        || r == full
                        || (!subresource.is_empty() && r == format!("*/{subresource}"))
                })
                && (rule.names.is_empty() || rule.names.contains(name))
        }
    }
}

fn to_json(rule: &Rule) -> Value {
    let mut r = json!({"verbs": rule.verbs});
    for (field, values) in [
        ("apiGroups", &rule.groups),
        ("resources", &rule.resources),
        ("resourceNames", &rule.names),
        ("nonResourceURLs", &rule.urls),
    ] {
        if !values.is_empty() {
            r[field] = json!(values);
        }
    }
    r
}

fn objects(roles: &[Role], bindings: &[Binding]) -> Vec<Value> {
    let mut out = Vec::new();
    for role in roles {
        let kind = if role.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        };
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": role.name, "namespace": role.namespace},
            "rules": role.rules.iter().map(to_json).collect::<Vec<_>>(),
        }));
    }
    for b in bindings {
        let kind = if b.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        let subjects: Vec<Value> = b
            .subjects
            .iter()
            .map(|s| json!({"kind": s.kind, "name": s.name, "namespace": s.namespace}))
            .collect();
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": b.name, "namespace": b.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": b.role_kind, "name": b.role_name},
            "subjects": subjects,
        }));
    }
    out
}

const VERBS: &[&str] = &["get", "list", "create", "delete", "escalate", "*"];
const GROUPS: &[&str] = &["", "apps", "rbac.authorization.k8s.io", "*"];
const RESOURCES: &[&str] = &[
    "pods",
    "pods/log",
    "pods/status",
    "*/status",
    "deployments",
    "deployments/scale",
    "*/scale",
    "secrets",
    "roles",
    "*",
];
const NAMES: &[&str] = &["a", "b"];
const URLS: &[&str] = &["/healthz", "/apis/*", "/api", "/metrics*", "*"];
const NAMESPACES: &[&str] = &["web", "db"];
const ROLE_NAMES: &[&str] = &["r0", "r1", "r2", "r3", "r4", "r5", "missing"];

fn generate(dice: &mut Dice) -> (Vec<Role>, Vec<Binding>) {
    let mut roles = Vec::new();
    for (i, name) in ROLE_NAMES[..6].iter().enumerate() {
        // Cluster roles r0..r5; Roles of the same names in some namespaces.
        let scopes: Vec<Option<String>> = match i % 3 {
            0 => vec![None],
            1 => vec![None, Some(dice.pick(NAMESPACES).to_owned())],
            _ => vec![Some(dice.pick(NAMESPACES).to_owned())],
        };
        for namespace in scopes {
            let mut rules = Vec::new();
            for _ in 0..=dice.below(3) {
                let rule = if dice.below(6) == 0 {
                    Rule {
                        verbs: dice.some(&["get", "post", "*"], 2),
                        urls: dice.some(URLS, 2),
                        ..Rule::default()
                    }
                } else {
                    Rule {
                        verbs: dice.some(VERBS, 2),
                        groups: dice.some(GROUPS, 2),
                        resources: dice.some(RESOURCES, 3),
                        names: if dice.below(3) == 0 {
                            dice.some(NAMES, 1)
                        } else {
                            Vec::new()
                        },
                        urls: Vec::new(),
                    }
                };
                rules.push(rule);
            }
            roles.push(Role {
                namespace,
                name: name.to_string(),
                rules,
            });
        }
    }
    let mut bindings = Vec::new();
    for i in 0..24 {
        let namespace = match dice.below(3) {
            0 => None,
            _ => Some(dice.pick(NAMESPACES).to_owned()),
        };
        let mut subjects = Vec::new();
        for _ in 0..=dice.below(2) {
            let subject = match dice.below(6) {
                0 | 1 => Subject {
                    kind: "User".into(),
                    name: dice.pick(&["alice", "bob", "dev", "carol"]).into(),
                    namespace: None,
                },
                2 | 3 => Subject {
                    kind: "Group".into(),
                    name: dice
                        .pick(&["dev", "ops", "system:serviceaccounts:web", "alice"])
                        .into(),
                    namespace: None,
                },
                4 => Subject {
                    kind: "ServiceAccount".into(),
                    name: dice.pick(&["builder", "x"]).into(),
                    namespace: match dice.below(3) {
                        0 => None,
                        1 => Some(String::new()),
                        _ => Some(dice.pick(NAMESPACES).to_owned()),
                    },
                },
                _ => Subject {
                    kind: "Robot".into(),
                    name: "alice".into(),
                    namespace: None,
                },
            };
            subjects.push(subject);
        }
        bindings.push(Binding {
            namespace,
            name: format!("b{i}"),
            role_kind: dice
                .pick(&["ClusterRole", "ClusterRole", "Role", "Thing"])
                .into(),
            role_name: dice.pick(ROLE_NAMES).into(),
            subjects,
        });
    }
    (roles, bindings)
}

fn users() -> Vec<(String, Vec<String>)> {
    let authenticated = "system:authenticated".to_owned();
    vec![
        ("alice".into(), vec!["dev".into(), authenticated.clone()]),
        ("bob".into(), vec!["ops".into(), authenticated.clone()]),
        ("dev".into(), vec![]),
        ("carol".into(), vec![]),
        (
            "system:serviceaccount:web:builder".into(),
            vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:web".into(),
                authenticated.clone(),
            ],
        ),
        (
            "system:serviceaccount:db:x".into(),
            vec!["system:serviceaccounts".into(), authenticated],
        ),
    ]
}

fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    let targets: &[(&str, &str)] = &[
        ("", "pods"),
        ("", "pods/log"),
        ("", "pods/status"),
        ("apps", "deployments"),
        ("apps", "deployments/scale"),
        ("", "secrets"),
        ("rbac.authorization.k8s.io", "roles"),
    ];
    for (user, groups) in users() {
        for verb in ["get", "list", "create", "delete", "escalate", "watch"] {
            for (group, target) in targets {
                let (resource, subresource) = target.split_once('/').unwrap_or((target, ""));
                for namespace in ["", "web", "db"] {
                    for name in ["", "a", "b"] {
                        out.push(Request {
                            user: user.clone(),
                            groups: groups.clone(),
                            verb: verb.into(),
                            resource: Some((
                                group.to_string(),
                                resource.into(),
                                subresource.into(),
                                namespace.into(),
                                name.into(),
                            )),
                            path: String::new(),
                        });
                    }
                }
            }
        }
        for verb in ["get", "post"] {
            for path in [
                "/healthz",
                "/healthz/x",
                "/apis",
                "/apis/apps",
                "/api",
                "/metrics/slis",
            ] {
                out.push(Request {
                    user: user.clone(),
                    groups: groups.clone(),
                    verb: verb.into(),
                    resource: None,
                    path: path.into(),
                });
            }
        }
    }
    out
}

fn attributes(request: &Request) -> Attributes {
    Attributes {
        user: UserInfo {
            name: request.user.clone(),
            groups: request.groups.clone(),
            ..UserInfo::default()
        },
        verb: request.verb.clone(),
        resource: request.resource.as_ref().map(
            |(group, resource, subresource, namespace, name)| ResourceAttributes {
                group: group.clone(),
                version: "v1".into(),
                resource: resource.clone(),
                subresource: subresource.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            },
        ),
        path: request.path.clone(),
    }
}

#[test]
fn decisions_match_a_brute_force_reference() {
    let requests = requests();
    assert!(requests.len() > 2000);
    let (mut escapes, mut denials, mut allowed, mut checked) = (0, 0, 0, 0);
    for seed in 1..=20u64 {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (roles, bindings) = generate(&mut dice);
        let index = Index::load(&objects(&roles, &bindings)).unwrap();
        for request in &requests {
            let expected = reference(&roles, &bindings, request);
            let got = index.authorize(&attributes(request)) == Decision::Allow;
            checked += 1;
            allowed += usize::from(expected);
            match (got, expected) {
                (true, false) => {
                    escapes += 1;
                    eprintln!("escape (seed {seed}): {request:?}");
                }
                (false, true) => {
                    denials += 1;
                    eprintln!("wrongful denial (seed {seed}): {request:?}");
                }
                _ => {}
            }
        }
    }
    assert_eq!((escapes, denials), (0, 0), "of {checked} decisions");
    // The generated policies allow a fair share of the requests, not none or all.
    assert!(
        allowed > checked / 20 && allowed < checked * 19 / 20,
        "{allowed} of {checked}"
    );
}

#[test]
fn ten_thousand_bindings_are_looked_up_by_subject() {
    let mut objects = Vec::new();
    for r in 0..10 {
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("reader-{r}")},
            "rules": [{"apiGroups": [""], "resources": [format!("kind{r}")], "verbs": ["get"]}],
        }));
    }
    for i in 0..10_000 {
        let (kind, namespace) = if i % 2 == 0 {
            ("ClusterRoleBinding", Value::Null)
        } else {
            ("RoleBinding", json!(format!("ns{}", i % 7)))
        };
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": format!("b{i}"), "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("reader-{}", i % 10)},
            "subjects": [
                {"kind": "User", "name": format!("user-{i}")},
                {"kind": "Group", "name": format!("group-{}", i % 100)},
            ],
        }));
    }
    let index = Index::load(&objects).unwrap();
    let ask = |user: &str, groups: &[&str], resource: &str, namespace: &str| {
        let request = Request {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            verb: "get".into(),
            resource: Some((
                String::new(),
                resource.into(),
                String::new(),
                namespace.into(),
                "x".into(),
            )),
            path: String::new(),
        };
        index.authorize(&attributes(&request)) == Decision::Allow
    };
    // user-4242: a ClusterRoleBinding to reader-2.
    assert!(ask("user-4242", &[], "kind2", ""));
    assert!(ask("user-4242", &[], "kind2", "ns3"));
    assert!(!ask("user-4242", &[], "kind3", ""));
    // user-4243: a RoleBinding in ns{4243 % 7} = ns1 to reader-3.
    assert!(ask("user-4243", &[], "kind3", "ns1"));
    assert!(!ask("user-4243", &[], "kind3", "ns2"));
    assert!(!ask("user-4243", &[], "kind3", ""));
    // group-7 is in bindings 7, 107, …: reader-7 everywhere (odd bindings in
    // namespaces; 7 % 2 = 1 always), so only in their namespaces.
    assert!(ask("someone", &["group-7"], "kind7", "ns0"));
    assert!(!ask("someone", &["group-7"], "kind7", ""));
    // group-8: even bindings, cluster-wide.
    assert!(ask("someone", &["group-8"], "kind8", ""));
    assert!(!ask("someone", &["group-8"], "kind7", ""));
    assert!(!ask("nobody", &[], "kind0", ""));
    for i in (0..10_000).step_by(997) {
        let namespace = if i % 2 == 0 { "" } else { "ns-any" };
        let expected = i % 2 == 0;
        assert_eq!(
            ask(
                &format!("user-{i}"),
                &[],
                &format!("kind{}", i % 10),
                namespace
            ),
            expected
        );
    }
}
