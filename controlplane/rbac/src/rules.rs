//! What one policy rule allows, and how Kubernetes writes a rule in messages.
//!
//! The matching is Kubernetes' (`pkg/apis/rbac/v1/evaluation_helpers.go`): a
//! rule allows a request on a resource when its verbs, API groups, resources
//! and resource names all match, and a request on a path when its verbs and
//! non-resource URLs match.

use k8s_openapi::api::rbac::v1::PolicyRule;
use wasmkube_apiserver::access::Attributes;

/// What a rule's `verbs`, `apiGroups`, `resources` or `nonResourceURLs`
/// holds to mean every value.
pub const ALL: &str = "*";

/// Whether `rule` allows the request `attributes` describe.
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attributes.verb) {
        return false;
    }
    let Some(r) = &attributes.resource else {
        return non_resource_url_matches(rule, &attributes.path);
    };
    let combined;
    let resource = if r.subresource.is_empty() {
        r.resource.as_str()
    } else {
        combined = format!("{}/{}", r.resource, r.subresource);
        combined.as_str()
    };
    api_group_matches(rule, &r.group)
        && resource_matches(rule, resource, &r.subresource)
        && resource_name_matches(rule, &r.name)
}

fn list(values: &Option<Vec<String>>) -> &[String] {
    values.as_deref().unwrap_or_default()
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// `resource` is the resource with its subresource (`pods/log`); a rule's
/// `*/log` matches any resource's `log`.
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        r == ALL
            || r == resource
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

/// A rule without names allows every name; one with names only those, and so
/// never a request that names no object (a list, a create).
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Exact paths, or prefixes when the rule's path ends in `*`.
fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    list(&rule.non_resource_urls)
        .iter()
        .any(|u| u == ALL || u == path || url_prefix_matches(u, path))
}

/// Whether `pattern`, ending in `*`, is a prefix of `path` once its stars are
/// trimmed.
pub(crate) fn url_prefix_matches(pattern: &str, path: &str) -> bool {
    pattern.ends_with('*') && path.starts_with(pattern.trim_end_matches('*'))
}

/// A rule as Kubernetes writes it in escalation messages (`CompactString`):
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`, with only
/// the fields the rule has.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    let fields = [
        ("APIGroups", list(&rule.api_groups)),
        ("Resources", list(&rule.resources)),
        ("NonResourceURLs", list(&rule.non_resource_urls)),
        ("ResourceNames", list(&rule.resource_names)),
        ("Verbs", rule.verbs.as_slice()),
    ];
    for (field, values) in fields {
        if !values.is_empty() {
            parts.push(format!("{field}:{}", go_quote_list(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// `s` quoted as Go's `%q` quotes it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as Go's `%q` writes a slice: `["a" "b"]`.
pub(crate) fn go_quote_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_apiserver::access::{ResourceAttributes, UserInfo};

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| v.to_string()).collect())
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: strings(verbs).unwrap(),
            api_groups: strings(groups),
            resources: strings(resources),
            ..PolicyRule::default()
        }
    }

    fn on(verb: &str, group: &str, resource: &str, name: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: UserInfo::default(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: "default".into(),
                name: name.into(),
            }),
            path: String::new(),
        }
    }

    fn path(verb: &str, path: &str) -> Attributes {
        Attributes {
            user: UserInfo::default(),
            verb: verb.into(),
            resource: None,
            path: path.into(),
        }
    }

    #[test]
    fn verbs_groups_and_resources_match_exactly_or_by_star() {
        let pods = rule(&["get", "list"], &[""], &["pods"]);
        assert!(rule_allows(&on("get", "", "pods", "a"), &pods));
        assert!(rule_allows(&on("list", "", "pods", ""), &pods));
        assert!(!rule_allows(&on("delete", "", "pods", "a"), &pods));
        assert!(!rule_allows(&on("get", "apps", "pods", "a"), &pods));
        assert!(!rule_allows(&on("get", "", "services", "a"), &pods));
        let all = rule(&["*"], &["*"], &["*"]);
        assert!(rule_allows(
            &on("escalate", "rbac.authorization.k8s.io", "roles", "x"),
            &all
        ));
        assert!(rule_allows(&on("get", "", "pods/log", "x"), &all));
        // A rule without groups matches no resource request.
        let no_groups = PolicyRule {
            api_groups: None,
            ..pods.clone()
        };
        assert!(!rule_allows(&on("get", "", "pods", "a"), &no_groups));
    }

    #[test]
    fn subresources_match_by_full_name_or_star_slash() {
        let logs = rule(&["get"], &[""], &["pods/log"]);
        assert!(rule_allows(&on("get", "", "pods/log", "a"), &logs));
        assert!(!rule_allows(&on("get", "", "pods", "a"), &logs));
        assert!(!rule_allows(&on("get", "", "pods/status", "a"), &logs));
        let pods = rule(&["get"], &[""], &["pods"]);
        assert!(!rule_allows(&on("get", "", "pods/log", "a"), &pods));
        let scales = rule(&["get"], &["*"], &["*/scale"]);
        assert!(rule_allows(
            &on("get", "apps", "deployments/scale", "d"),
            &scales
        ));
        assert!(!rule_allows(
            &on("get", "apps", "deployments", "d"),
            &scales
        ));
        assert!(!rule_allows(
            &on("get", "apps", "deployments/status", "d"),
            &scales
        ));
        // `*/scale` is not a prefix match on the subresource.
        assert!(!rule_allows(
            &on("get", "apps", "deployments/scaled", "d"),
            &scales
        ));
    }

    #[test]
    fn resource_names_limit_requests_that_name_an_object() {
        let named = PolicyRule {
            resource_names: strings(&["a"]),
            ..rule(&["get", "list"], &[""], &["pods"])
        };
        assert!(rule_allows(&on("get", "", "pods", "a"), &named));
        assert!(!rule_allows(&on("get", "", "pods", "b"), &named));
        assert!(!rule_allows(&on("list", "", "pods", ""), &named));
        let empty = PolicyRule {
            resource_names: Some(Vec::new()),
            ..named
        };
        assert!(rule_allows(&on("list", "", "pods", ""), &empty));
    }

    #[test]
    fn paths_match_exactly_or_by_prefix() {
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: strings(&["/healthz", "/apis/*", "/logs**"]),
            ..PolicyRule::default()
        };
        assert!(rule_allows(&path("get", "/healthz"), &urls));
        assert!(!rule_allows(&path("get", "/healthz/etcd"), &urls));
        assert!(rule_allows(&path("get", "/apis/"), &urls));
        assert!(rule_allows(&path("get", "/apis/apps/v1"), &urls));
        assert!(!rule_allows(&path("get", "/apis"), &urls));
        assert!(rule_allows(&path("get", "/logsx"), &urls));
        assert!(!rule_allows(&path("post", "/healthz"), &urls));
        // Resource rules never match paths, path rules never resources.
        let pods = rule(&["get"], &["*"], &["*"]);
        assert!(!rule_allows(&path("get", "/healthz"), &pods));
        assert!(!rule_allows(&on("get", "", "pods", "a"), &urls));
        let everything = PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: strings(&["*"]),
            ..PolicyRule::default()
        };
        assert!(rule_allows(&path("delete", "/anything"), &everything));
    }

    #[test]
    fn rules_are_written_as_kubernetes_writes_them() {
        let r = PolicyRule {
            resource_names: strings(&["a\"b"]),
            ..rule(&["get", "list"], &["", "apps"], &["pods"])
        };
        assert_eq!(
            compact_string(&r),
            r#"{APIGroups:["" "apps"], Resources:["pods"], ResourceNames:["a\"b"], Verbs:["get" "list"]}"#
        );
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: strings(&["/healthz"]),
            ..PolicyRule::default()
        };
        assert_eq!(
            compact_string(&urls),
            r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#
        );
        assert_eq!(go_quote("tab\there\u{1}é"), r#""tab\there\x01é""#);
    }
}
