//! Field selectors.
//!
//! The syntax, matching and error messages are those of Kubernetes
//! (`k8s.io/apimachinery/pkg/fields`): comma separated terms `field=value`,
//! `field==value` or `field!=value`, all of which must hold. In a value, `\\`, `\,` and
//! `\=` stand for `\`, `,` and `=`; any other backslash, and any bare `=`, is an error.
//! The empty selector selects everything.
//!
//! Which fields a kind supports is the registry's business
//! ([`ResourceType::supports_field_label`](crate::ResourceType::supports_field_label));
//! [`FieldSelector::check_fields`] turns an unsupported one into the error Kubernetes
//! answers with.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Why a field selector could not be parsed or used. The message is the one
/// Kubernetes gives.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Term {
        /// The whole selector.
        selector: String,
        /// The term that is not understood.
        term: String,
    },
    /// A value has a backslash that is not followed by `\`, `,` or `=` (the sequence,
    /// or a lone `\` at the end of the value).
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A value has an unescaped `=`. Kubernetes prints the character's code point.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
    /// A term names a field the kind cannot be selected by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// How a term compares a field with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`: the field has the value.
    Equals,
    /// `!=`: the field does not have the value.
    NotEquals,
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The field, as a dotted path (`status.phase`).
    pub field: String,
    /// The comparison.
    pub operator: Operator,
    /// The value, unescaped.
    pub value: String,
}

impl Requirement {
    /// Whether `object` satisfies the term (see [`field_values`] for what a field of an
    /// object reads as).
    pub fn matches(&self, object: &Value) -> bool {
        self.holds(&field_values(object, &self.field))
    }

    /// Whether the term holds for a field that reads as `values`.
    pub fn holds(&self, values: &[String]) -> bool {
        let any_equal = values.contains(&self.value);
        match self.operator {
            Operator::Equals => any_equal,
            Operator::NotEquals => !any_equal,
        }
    }
}

impl fmt::Display for Requirement {
    /// `field=value` or `field!=value`, the value escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: the conjunction of its terms, in the order of their text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

impl FieldSelector {
    /// The selector that selects everything.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses `field=value,field!=value,…`. As in Kubernetes, the terms are sorted by
    /// their text, empty terms are skipped, and so are terms with neither field nor
    /// value (`=`). Fields are taken as written, spaces included.
    pub fn parse(selector: &str) -> Result<FieldSelector, Error> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(Error::Term {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            let value = unescape_value(raw)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(Requirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector has no term, and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `object` (an API object as JSON) satisfies every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }

    /// Whether every term holds, a field reading as `values(field)`: for callers that
    /// keep the fields of an object rather than the object.
    pub fn matches_by<'a>(&self, values: impl Fn(&str) -> &'a [String]) -> bool {
        self.requirements.iter().all(|r| r.holds(values(&r.field)))
    }

    /// The value `field` must have for the selector to match, when a term pins it.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == Operator::Equals)
            .map(|r| r.value.as_str())
    }

    /// The first field `supported` rejects, as the error Kubernetes answers with
    /// (`field label not supported: spec.foo`).
    pub fn check_fields(&self, supported: impl Fn(&str) -> bool) -> Result<(), Error> {
        match self.requirements.iter().find(|r| !supported(&r.field)) {
            Some(r) => Err(Error::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }
}

impl fmt::Display for FieldSelector {
    /// The terms joined by commas, values escaped: parsing it gives the selector back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_joined(f, &self.requirements)
    }
}

impl FromStr for FieldSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<FieldSelector, Error> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a literal value for use in a field selector.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The literal value of an escaped field selector value.
pub fn unescape_value(value: &str) -> Result<String, Error> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => return Err(Error::InvalidEscape(format!("\\{other}"))),
                None => return Err(Error::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(Error::UnescapedCharacter(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The terms of a selector: split at commas not escaped by a backslash, escapes kept.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// A term split at the first operator: field, operator, raw value.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        let (operator, len) = if rest.starts_with("!=") {
            (Operator::NotEquals, 2)
        } else if rest.starts_with("==") {
            (Operator::Equals, 2)
        } else if rest.starts_with('=') {
            (Operator::Equals, 1)
        } else {
            continue;
        };
        return Some((&term[..i], operator, &term[i + len..]));
    }
    None
}

/// The value at a dotted path of `object`; `null` counts as absent.
fn lookup<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(object, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

/// A scalar as field selectors compare it: strings as they are, booleans and numbers
/// as their JSON text. Objects and arrays have no such form.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `ip` of every entry of the list at `path`.
fn ips(object: &Value, path: &str) -> Vec<String> {
    lookup(object, path)
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry.get("ip").and_then(scalar_text))
                .collect()
        })
        .unwrap_or_default()
}

/// What `field` of `object` reads as for a field selector: usually the scalar at the
/// dotted path, `""` when it is missing (or not a scalar). Some fields Kubernetes
/// computes rather than reads, and they read as Kubernetes computes them:
///
/// - `status.podIPs` (pods): every `status.podIPs[*].ip`, a term holding if it holds
///   for one of them; `""` when the pod has none;
/// - `status.podIP` (pods): the first of `status.podIPs`, else `status.podIP`;
/// - `spec.hostNetwork` (pods), `spec.unschedulable` (nodes): `"false"` when unset;
/// - `status.successful` (jobs): `status.succeeded`, `"0"` when unset;
/// - `status.replicas` (replica sets, replication controllers): `"0"` when unset;
/// - `source` (events): `source.component`, else `reportingComponent`.
pub fn field_values(object: &Value, field: &str) -> Vec<String> {
    let direct = lookup(object, field);
    let computed = match field {
        "status.podIPs" => {
            let all = ips(object, field);
            return if all.is_empty() {
                vec![String::new()]
            } else {
                all
            };
        }
        "status.podIP" => ips(object, "status.podIPs").into_iter().next(),
        "spec.hostNetwork" | "spec.unschedulable" if direct.is_none() => Some("false".to_owned()),
        "status.successful" if direct.is_none() => Some(
            lookup(object, "status.succeeded")
                .and_then(scalar_text)
                .unwrap_or_else(|| "0".to_owned()),
        ),
        "status.replicas" if direct.is_none() => Some("0".to_owned()),
        "source" if direct.is_none_or(Value::is_object) => lookup(object, "source.component")
            .and_then(scalar_text)
            .filter(|s| !s.is_empty())
            .or_else(|| lookup(object, "reportingComponent").and_then(scalar_text)),
        _ => None,
    };
    let value = computed
        .or_else(|| direct.and_then(scalar_text))
        .unwrap_or_default();
    vec![value]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Ok(selector) => panic!("{s:?} should not parse, got {selector:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn req(field: &str, operator: Operator, value: &str) -> Requirement {
        Requirement {
            field: field.to_owned(),
            operator,
            value: value.to_owned(),
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always", "priority": 5},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]
            }
        })
    }

    #[test]
    fn empty_selectors_select_everything() {
        for s in ["", ",", ",,", "=", "==", "!=", "=,!="] {
            let selector = parse(s);
            assert!(selector.is_empty(), "{s:?}");
            assert_eq!(selector, FieldSelector::everything());
            assert!(selector.matches(&pod()));
            assert_eq!(selector.to_string(), "");
        }
    }

    #[test]
    fn parses_the_three_operators() {
        assert_eq!(
            parse("a=1").requirements(),
            [req("a", Operator::Equals, "1")]
        );
        assert_eq!(
            parse("a==1").requirements(),
            [req("a", Operator::Equals, "1")]
        );
        assert_eq!(
            parse("a!=1").requirements(),
            [req("a", Operator::NotEquals, "1")]
        );
        assert_eq!(parse("a=").requirements(), [req("a", Operator::Equals, "")]);
        assert_eq!(parse("=x").requirements(), [req("", Operator::Equals, "x")]);
    }

    #[test]
    fn terms_are_sorted_by_text_and_kept_verbatim() {
        let selector = parse("b=2,a!=1, c=3");
        assert_eq!(
            selector.requirements(),
            [
                req(" c", Operator::Equals, "3"),
                req("a", Operator::NotEquals, "1"),
                req("b", Operator::Equals, "2"),
            ]
        );
        assert_eq!(selector.to_string(), " c=3,a!=1,b=2");
    }

    #[test]
    fn the_first_operator_splits_a_term() {
        // "a!==b" splits at "!=", leaving a bare '=' in the value.
        assert_eq!(
            parse_err("a!==b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            parse(r"a!=\=b").requirements(),
            [req("a", Operator::NotEquals, "=b")]
        );
        assert_eq!(
            parse("a==\\=").requirements(),
            [req("a", Operator::Equals, "=")]
        );
        assert_eq!(parse("x.y!=z").requirements()[0].field, "x.y");
    }

    #[test]
    fn escapes_in_values() {
        assert_eq!(
            parse(r"a=x\,y\=z\\w").requirements(),
            [req("a", Operator::Equals, r"x,y=z\w")]
        );
        // An escaped comma does not split terms.
        assert_eq!(
            parse(r"a=1\,b").requirements(),
            [req("a", Operator::Equals, "1,b")]
        );
        assert_eq!(parse(r"a=\\,b=2").requirements().len(), 2);
    }

    #[test]
    fn display_escapes_and_reparses() {
        for s in [r"a=x\,y\=z\\w", "a!=1,b=2", "a=", "metadata.name=web-1"] {
            let selector = parse(s);
            assert_eq!(selector.to_string(), s);
            assert_eq!(parse(&selector.to_string()), selector);
        }
        assert_eq!(parse("a==1").to_string(), "a=1");
    }

    #[test]
    fn escape_and_unescape_round_trip() {
        for value in ["", "plain", r"a\b", "a,b", "a=b", r"\,=\\", "ünï"] {
            assert_eq!(unescape_value(&escape_value(value)), Ok(value.to_owned()));
        }
        assert_eq!(escape_value(r"a\b,c=d"), r"a\\b\,c\=d");
    }

    #[test]
    fn terms_without_operator_are_rejected() {
        assert_eq!(
            parse_err("a"),
            "invalid selector: 'a'; can't understand 'a'"
        );
        assert_eq!(
            parse_err("b=1,a"),
            "invalid selector: 'b=1,a'; can't understand 'a'"
        );
        assert_eq!(
            parse_err("a!1"),
            "invalid selector: 'a!1'; can't understand 'a!1'"
        );
        assert_eq!(
            parse_err(r"a\,b"),
            r"invalid selector: 'a\,b'; can't understand 'a\,b'"
        );
    }

    #[test]
    fn bad_escapes_are_rejected() {
        assert_eq!(
            parse_err(r"a=x\y"),
            r"invalid field selector: invalid escape sequence: \y"
        );
        assert_eq!(
            parse_err(r"a=x\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            parse_err(r"a=\é"),
            r"invalid field selector: invalid escape sequence: \é"
        );
        assert_eq!(
            parse_err("a=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(unescape_value("a,b"), Err(Error::UnescapedCharacter(',')));
    }

    #[test]
    fn errors_follow_the_sorted_term_order() {
        // "a" sorts before "b=x=y": its error is the one reported.
        assert_eq!(
            parse_err("b=x=y,a"),
            "invalid selector: 'b=x=y,a'; can't understand 'a'"
        );
        assert_eq!(
            parse_err("b,a=x=y"),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn matches_scalars_by_dotted_path() {
        let pod = pod();
        let cases = [
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("metadata.name!=web-1", false),
            ("metadata.namespace=default,spec.nodeName=node-a", true),
            ("metadata.namespace=default,spec.nodeName=node-b", false),
            ("spec.priority=5", true),
            ("status.phase!=Pending", true),
            ("spec.missing=", true),
            ("spec.missing!=", false),
            ("spec.missing=x", false),
            ("spec.missing!=x", true),
            ("metadata=", true),
            ("status.phase.deeper=", true),
        ];
        for (s, expected) in cases {
            assert_eq!(parse(s).matches(&pod), expected, "{s:?}");
        }
    }

    #[test]
    fn booleans_numbers_and_nulls_read_as_text() {
        let object = json!({"a": true, "b": false, "n": 3, "f": 1.5, "z": null, "l": [1]});
        assert_eq!(field_values(&object, "a"), ["true"]);
        assert_eq!(field_values(&object, "b"), ["false"]);
        assert_eq!(field_values(&object, "n"), ["3"]);
        assert_eq!(field_values(&object, "f"), ["1.5"]);
        assert_eq!(field_values(&object, "z"), [""]);
        assert_eq!(field_values(&object, "l"), [""]);
        assert!(parse("a=true,n=3,n!=4").matches(&object));
    }

    #[test]
    fn pod_ips_match_any_entry() {
        let pod = pod();
        assert_eq!(field_values(&pod, "status.podIPs"), ["10.0.0.7", "fd00::7"]);
        assert!(parse("status.podIPs=10.0.0.7").matches(&pod));
        assert!(parse("status.podIPs=fd00::7").matches(&pod));
        assert!(!parse("status.podIPs=10.0.0.8").matches(&pod));
        assert!(!parse("status.podIPs!=fd00::7").matches(&pod));
        assert!(parse("status.podIPs!=10.0.0.8").matches(&pod));
        let pending = json!({"status": {"phase": "Pending"}});
        assert_eq!(field_values(&pending, "status.podIPs"), [""]);
        assert!(parse("status.podIPs=").matches(&pending));
        assert!(parse("status.podIPs!=10.0.0.7").matches(&pending));
    }

    #[test]
    fn pod_ip_is_the_first_of_pod_ips() {
        let pod = json!({"status": {"podIPs": [{"ip": "10.1.1.1"}, {"ip": "fd00::1"}]}});
        assert_eq!(field_values(&pod, "status.podIP"), ["10.1.1.1"]);
        let legacy = json!({"status": {"podIP": "10.2.2.2"}});
        assert_eq!(field_values(&legacy, "status.podIP"), ["10.2.2.2"]);
    }

    #[test]
    fn unset_flags_and_counters_read_as_kubernetes_defaults() {
        let empty = json!({"spec": {}, "status": {}});
        assert_eq!(field_values(&empty, "spec.hostNetwork"), ["false"]);
        assert_eq!(field_values(&empty, "spec.unschedulable"), ["false"]);
        assert_eq!(field_values(&empty, "status.successful"), ["0"]);
        assert_eq!(field_values(&empty, "status.replicas"), ["0"]);
        let set = json!({
            "spec": {"hostNetwork": true, "unschedulable": true},
            "status": {"succeeded": 2, "replicas": 3}
        });
        assert_eq!(field_values(&set, "spec.hostNetwork"), ["true"]);
        assert_eq!(field_values(&set, "spec.unschedulable"), ["true"]);
        assert_eq!(field_values(&set, "status.successful"), ["2"]);
        assert_eq!(field_values(&set, "status.replicas"), ["3"]);
        assert!(parse("spec.hostNetwork=false").matches(&empty));
        assert!(!parse("spec.hostNetwork=false").matches(&set));
    }

    #[test]
    fn event_source_is_the_component_or_the_reporting_component() {
        let classic = json!({"source": {"component": "kubelet", "host": "n1"}});
        assert_eq!(field_values(&classic, "source"), ["kubelet"]);
        let reported = json!({"source": {}, "reportingComponent": "scheduler"});
        assert_eq!(field_values(&reported, "source"), ["scheduler"]);
        let bare = json!({"reportingComponent": "controller"});
        assert_eq!(field_values(&bare, "source"), ["controller"]);
        let plain = json!({"source": "git"});
        assert_eq!(field_values(&plain, "source"), ["git"]);
        assert_eq!(field_values(&json!({}), "source"), [""]);
    }

    #[test]
    fn requires_exact_match_finds_equality_terms() {
        let selector = parse("metadata.name=web-1,spec.nodeName!=n1");
        assert_eq!(
            selector.requires_exact_match("metadata.name"),
            Some("web-1")
        );
        assert_eq!(selector.requires_exact_match("spec.nodeName"), None);
        assert_eq!(selector.requires_exact_match("status.phase"), None);
    }

    #[test]
    fn check_fields_reports_the_first_unsupported_field() {
        let supported = |f: &str| matches!(f, "metadata.name" | "status.phase");
        assert_eq!(
            parse("metadata.name=a,status.phase=b").check_fields(supported),
            Ok(())
        );
        let err = parse("metadata.name=a,spec.x=1,spec.a=2")
            .check_fields(supported)
            .unwrap_err();
        assert_eq!(err, Error::UnsupportedField("spec.a".to_owned()));
        assert_eq!(err.to_string(), "field label not supported: spec.a");
        assert_eq!(
            parse("=x").check_fields(supported).unwrap_err().to_string(),
            "field label not supported: "
        );
        assert_eq!(FieldSelector::everything().check_fields(|_| false), Ok(()));
    }

    #[test]
    fn from_str_parses() {
        let selector: FieldSelector = "a=1".parse().unwrap();
        assert_eq!(selector, parse("a=1"));
        assert!("a".parse::<FieldSelector>().is_err());
    }

    #[test]
    fn split_helpers() {
        assert_eq!(split_terms(""), Vec::<&str>::new());
        assert_eq!(split_terms("a,b"), ["a", "b"]);
        assert_eq!(split_terms(r"a\,b,c"), [r"a\,b", "c"]);
        assert_eq!(split_terms(r"a\\,b"), [r"a\\", "b"]);
        assert_eq!(split_terms("a,"), ["a", ""]);
        assert_eq!(split_term("é=1"), Some(("é", Operator::Equals, "1")));
        assert_eq!(split_term("a!=b"), Some(("a", Operator::NotEquals, "b")));
        assert_eq!(split_term("a==b"), Some(("a", Operator::Equals, "b")));
        assert_eq!(split_term("ab"), None);
    }
}
