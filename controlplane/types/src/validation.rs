//! Validation of names, label keys and values.
//!
//! Each check returns the list of problems with its input, worded exactly as the
//! Kubernetes API server words them (`k8s.io/apimachinery/pkg/util/validation`), so
//! that clients see the messages they know. An empty list means the input is valid.
//!
//! The rules are the regular expressions Kubernetes quotes in its messages, checked
//! character by character. Lengths are counted in bytes, as Kubernetes counts them.

/// The longest DNS label (RFC 1123), in bytes.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

/// The longest DNS subdomain (RFC 1123), in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// The longest name part of a qualified name (a label or annotation key), in bytes.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

/// The longest label value, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character";

const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower \
    case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
    character";

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or \
    '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of \
    alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
    character";

/// The message for a value longer than `length` bytes.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// The message for a value that does not match the regular expression `fmt`:
/// `msg`, then the examples and the expression in parentheses.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if examples.is_empty() {
        out.push_str(" (regex used for validation is '");
    } else {
        out.push_str(" (e.g. ");
        for (i, example) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push('\'');
            out.push_str(example);
            out.push_str("', ");
        }
        out.push_str("regex used for validation is '");
    }
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// The message for a value that must not be empty.
pub fn empty_error() -> String {
    "must be non-empty".to_owned()
}

/// Whether `value` matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn matches_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `value` is one or more DNS labels joined by dots.
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// Whether `value` matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn matches_qualified_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Checks a DNS label (RFC 1123): at most 63 lower case alphanumeric characters or
/// '-', starting and ending with an alphanumeric character. Namespace names are
/// labels.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain but not a label: the length was checked, so it is the dots.
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Checks a DNS subdomain (RFC 1123): at most 253 characters, DNS labels joined by
/// dots. Most object names are subdomains.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks a qualified name, the form of label and annotation keys: an optional DNS
/// subdomain prefix and '/', then a name part of at most 63 alphanumeric characters,
/// '-', '_' or '.', starting and ending with an alphanumeric character.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|msg| format!("prefix part {msg}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    QUALIFIED_NAME_EXAMPLES
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                QUALIFIED_NAME_EXAMPLES
            )
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 alphanumeric characters, '-', '_' or
/// '.', starting and ending with an alphanumeric character.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
        characters or '-', and must start and end with an alphanumeric character (e.g. \
        'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
        alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
        character (e.g. 'example.com', regex used for validation is \
        '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' \
        or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
        'my.name',  or '123-abc', regex used for validation is \
        '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const QUALIFIED_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', \
        '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
        'my.name',  or '123-abc', regex used for validation is \
        '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and \
        '/' (e.g. 'example.com/MyName')";
    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of \
        alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
        character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn regex_error_formats_examples_like_kubernetes() {
        assert_eq!(
            regex_error("bad", "x+", &[]),
            "bad (regex used for validation is 'x+')"
        );
        assert_eq!(
            regex_error("bad", "x+", &["x", "xx"]),
            "bad (e.g. 'x',  or 'xx', regex used for validation is 'x+')"
        );
    }

    #[test]
    fn dns1123_label_accepts_valid_labels() {
        for value in [
            "a",
            "0",
            "ab",
            "a-b",
            "a--b",
            "1-2",
            "abc-123",
            &"a".repeat(63),
        ] {
            assert!(is_dns1123_label(value).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn dns1123_label_rejects_bad_characters_and_edges() {
        for value in [
            "", "A", "-a", "a-", "a_b", "a b", "ä", "a/b", "-", "a.", ".a",
        ] {
            assert_eq!(is_dns1123_label(value), vec![LABEL_MSG], "{value:?}");
        }
    }

    #[test]
    fn dns1123_label_says_dots_for_subdomains() {
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("example.com"),
            vec!["must not contain dots"]
        );
    }

    #[test]
    fn dns1123_label_reports_length_and_pattern() {
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(
            is_dns1123_label(&format!("{}-", "a".repeat(64))),
            vec![
                "must be no more than 63 characters".to_owned(),
                LABEL_MSG.to_owned()
            ]
        );
    }

    #[test]
    fn dns1123_subdomain_accepts_valid_subdomains() {
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        for value in ["a", "a.b", "example.com", "a-b.c-d.e", "0.1", long.as_str()] {
            assert!(is_dns1123_subdomain(value).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn dns1123_subdomain_rejects_bad_subdomains() {
        for value in [
            "", ".", "a.", ".a", "a..b", "A.b", "a.-b", "a-.b", "a_b.c", "a b",
        ] {
            assert_eq!(
                is_dns1123_subdomain(value),
                vec![SUBDOMAIN_MSG],
                "{value:?}"
            );
        }
    }

    #[test]
    fn dns1123_subdomain_reports_length() {
        let too_long = "a".repeat(254);
        assert_eq!(
            is_dns1123_subdomain(&too_long),
            vec!["must be no more than 253 characters"]
        );
        assert_eq!(
            is_dns1123_subdomain(&format!("{too_long}-")),
            vec![
                "must be no more than 253 characters".to_owned(),
                SUBDOMAIN_MSG.to_owned()
            ]
        );
    }

    #[test]
    fn qualified_name_accepts_valid_keys() {
        for value in [
            "a",
            "A",
            "app",
            "my.name",
            "My_Name-1",
            "1.2",
            "example.com/MyName",
            "kubernetes.io/hostname",
            "a/b",
            &"x".repeat(63),
            &format!("{}/{}", "p".repeat(253), "n".repeat(63)),
        ] {
            assert!(is_qualified_name(value).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn qualified_name_rejects_bad_name_parts() {
        for value in ["-a", "a-", "_a", "a.", "a b", "a:b", "é", "example.com/-a"] {
            assert_eq!(is_qualified_name(value), vec![NAME_PART_MSG], "{value:?}");
        }
    }

    #[test]
    fn qualified_name_reports_empty_name_part() {
        assert_eq!(
            is_qualified_name(""),
            vec!["name part must be non-empty", NAME_PART_MSG]
        );
        assert_eq!(
            is_qualified_name("example.com/"),
            vec!["name part must be non-empty", NAME_PART_MSG]
        );
    }

    #[test]
    fn qualified_name_reports_long_name_part() {
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn qualified_name_reports_prefix_problems() {
        assert_eq!(
            is_qualified_name("/name"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/name"),
            vec![format!("prefix part {SUBDOMAIN_MSG}")]
        );
        assert_eq!(
            is_qualified_name(&format!("{}/name", "a".repeat(254))),
            vec!["prefix part must be no more than 253 characters"]
        );
        assert_eq!(
            is_qualified_name("/"),
            vec![
                "prefix part must be non-empty".to_owned(),
                "name part must be non-empty".to_owned(),
                NAME_PART_MSG.to_owned()
            ]
        );
    }

    #[test]
    fn qualified_name_rejects_more_than_one_slash() {
        assert_eq!(is_qualified_name("a/b/c"), vec![QUALIFIED_MSG]);
        assert_eq!(is_qualified_name("//"), vec![QUALIFIED_MSG]);
    }

    #[test]
    fn label_value_accepts_valid_values() {
        for value in [
            "",
            "a",
            "MyValue",
            "my_value",
            "12345",
            "a.b-c_d",
            &"v".repeat(63),
        ] {
            assert!(is_valid_label_value(value).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn label_value_rejects_bad_values() {
        for value in ["-a", "a-", ".", "_", "a b", "a/b", "a=b", "ü"] {
            assert_eq!(
                is_valid_label_value(value),
                vec![LABEL_VALUE_MSG],
                "{value:?}"
            );
        }
    }

    #[test]
    fn label_value_reports_length() {
        assert_eq!(
            is_valid_label_value(&"v".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(
            is_valid_label_value(&format!("{}.", "v".repeat(63))),
            vec![
                "must be no more than 63 characters".to_owned(),
                LABEL_VALUE_MSG.to_owned()
            ]
        );
    }

    #[test]
    fn lengths_are_counted_in_bytes() {
        // 32 two-byte characters: 32 characters, 64 bytes.
        let value = "é".repeat(32);
        assert_eq!(
            is_valid_label_value(&value)[0],
            "must be no more than 63 characters"
        );
    }
}
