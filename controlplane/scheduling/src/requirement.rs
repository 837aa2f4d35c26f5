//! One requirement on one label or field, checked as apimachinery's
//! `labels.NewRequirement` checks it and matched as `Requirement.Matches`
//! matches it. Node selector requirements and label selector expressions
//! differ only in the operators they may use.

use std::fmt;

/// Why a requirement is invalid; the details are the ones Kubernetes gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The operator is not one this kind of requirement has (a label
    /// selector has no `Gt`, a node's fields only `In` and `NotIn`).
    UnsupportedOperator {
        /// The label or field the requirement is on.
        key: String,
        /// The operator given.
        operator: String,
    },
    /// The values do not fit the operator: none for `In`, some for
    /// `Exists`, not one integer for `Gt`.
    InvalidValues {
        /// The label or field the requirement is on.
        key: String,
        /// What is wrong with them.
        detail: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnsupportedOperator { key, operator } => {
                write!(
                    f,
                    "requirement on {key:?}: unsupported operator {operator:?}"
                )
            }
            Error::InvalidValues { key, detail } => {
                write!(f, "requirement on {key:?}: {detail}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// How a requirement relates a label (or field) to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// The label has one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label is an integer greater than the value.
    Gt,
    /// The label is an integer less than the value.
    Lt,
}

impl Operator {
    /// The operators of label selectors.
    pub(crate) const LABEL_SELECTOR: &[Operator] = &[
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
    ];
    /// The operators of node selector requirements on labels.
    pub(crate) const NODE_LABELS: &[Operator] = &[
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
        Operator::Gt,
        Operator::Lt,
    ];
    /// The operators of node selector requirements on fields.
    const NODE_FIELDS: &[Operator] = &[Operator::In, Operator::NotIn];

    /// The operator the API calls `name`.
    fn named(name: &str) -> Option<Operator> {
        Some(match name {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => return None,
        })
    }
}

/// `operator` when it is one of `supported`.
fn supported_operator(
    key: &str,
    operator: &str,
    supported: &[Operator],
) -> Result<Operator, Error> {
    Operator::named(operator)
        .filter(|o| supported.contains(o))
        .ok_or_else(|| Error::UnsupportedOperator {
            key: key.to_owned(),
            operator: operator.to_owned(),
        })
}

/// The requirement on `key` has values that do not fit its operator.
fn invalid(key: &str, detail: &'static str) -> Error {
    Error::InvalidValues {
        key: key.to_owned(),
        detail,
    }
}

/// A valid requirement, borrowing its values.
#[derive(Debug)]
pub(crate) struct Requirement<'a> {
    operator: Operator,
    values: &'a [String],
    /// The bound of `Gt` and `Lt`.
    bound: i64,
}

impl<'a> Requirement<'a> {
    /// The requirement on label `key` with `operator` (one of `supported`)
    /// over `values`, checked: `In` and `NotIn` need values, `Exists` and
    /// `DoesNotExist` none, `Gt` and `Lt` one integer. Whether the key and
    /// values are well-formed label names and values is the API's to check.
    pub(crate) fn label(
        key: &str,
        operator: &str,
        supported: &[Operator],
        values: Option<&'a [String]>,
    ) -> Result<Requirement<'a>, Error> {
        let values = values.unwrap_or_default();
        let invalid = |detail| invalid(key, detail);
        let op = supported_operator(key, operator, supported)?;
        let mut bound = 0;
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::Gt | Operator::Lt => {
                let [value] = values else {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                };
                bound = value.parse().map_err(|_| {
                    invalid("for 'Gt', 'Lt' operators, the value must be an integer")
                })?;
            }
            _ => {}
        }
        Ok(Requirement {
            operator: op,
            values,
            bound,
        })
    }

    /// The requirement on field `key` with `operator` over `values`, checked
    /// as a node selector's `matchFields` are: `In` or `NotIn`, one value.
    pub(crate) fn field(
        key: &str,
        operator: &str,
        values: Option<&'a [String]>,
    ) -> Result<Requirement<'a>, Error> {
        let operator = supported_operator(key, operator, Operator::NODE_FIELDS)?;
        match values {
            Some(values @ [_]) => Ok(Requirement {
                operator,
                values,
                bound: 0,
            }),
            _ => Err(invalid(key, "must have one element")),
        }
    }

    /// Whether a label (or field) with `value` (`None`: absent) meets the
    /// requirement. `NotIn` holds for an absent label; `Gt` and `Lt` need it
    /// present and a 64-bit integer.
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In => value.is_some_and(listed),
            Operator::NotIn => value.is_none_or(|v| !listed(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let Some(Ok(value)) = value.map(str::parse::<i64>) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    value > self.bound
                } else {
                    value < self.bound
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn holds(operator: &str, values: &[&str], value: Option<&str>) -> bool {
        let values = strings(values);
        Requirement::label("k", operator, Operator::NODE_LABELS, Some(&values))
            .unwrap()
            .matches(value)
    }

    #[test]
    fn operators_match_as_the_api_says() {
        assert!(holds("In", &["a", "b"], Some("b")));
        assert!(!holds("In", &["a"], None));
        assert!(holds("In", &[""], Some("")), "an empty value is a value");
        assert!(holds("NotIn", &["a"], None));
        assert!(!holds("NotIn", &["a"], Some("a")));
        assert!(holds("NotIn", &["a"], Some("b")));
        assert!(holds("Exists", &[], Some("")));
        assert!(!holds("Exists", &[], None));
        assert!(holds("DoesNotExist", &[], None));
        assert!(!holds("DoesNotExist", &[], Some("x")));
        assert!(holds("Gt", &["3"], Some("4")));
        assert!(!holds("Gt", &["3"], Some("3")));
        assert!(!holds("Gt", &["3"], None));
        assert!(
            !holds("Gt", &["3"], Some("four")),
            "a label that is no integer"
        );
        assert!(holds("Gt", &["-1"], Some("+0")));
        assert!(holds("Lt", &["3"], Some("-1")));
        assert!(!holds("Lt", &["3"], Some("3")));
    }

    #[test]
    fn invalid_requirements_are_refused() {
        let check = |operator: &str, values: &[&str], supported| {
            let values = strings(values);
            Requirement::label("k", operator, supported, Some(&values)).map(|_| ())
        };
        let field = |operator: &str, values: &[&str]| {
            let values = strings(values);
            Requirement::field("k", operator, Some(&values)).map(|_| ())
        };
        let invalid = |detail| Err(invalid("k", detail));
        assert_eq!(
            check("In", &[], Operator::NODE_LABELS),
            invalid("for 'in', 'notin' operators, values set can't be empty")
        );
        assert_eq!(
            check("Exists", &["a"], Operator::NODE_LABELS),
            invalid("values set must be empty for exists and does not exist")
        );
        assert_eq!(
            check("Gt", &["1", "2"], Operator::NODE_LABELS),
            invalid("for 'Gt', 'Lt' operators, exactly one value is required")
        );
        assert_eq!(
            check("Lt", &["x"], Operator::NODE_LABELS),
            invalid("for 'Gt', 'Lt' operators, the value must be an integer")
        );
        let unsupported = |operator: &str| {
            Err(Error::UnsupportedOperator {
                key: "k".into(),
                operator: operator.into(),
            })
        };
        assert_eq!(
            check("Gt", &["1"], Operator::LABEL_SELECTOR),
            unsupported("Gt")
        );
        assert_eq!(
            check("in", &["a"], Operator::NODE_LABELS),
            unsupported("in")
        );
        assert_eq!(field("Exists", &[]), unsupported("Exists"));
        assert_eq!(field("In", &["a", "b"]), invalid("must have one element"));
        assert_eq!(field("NotIn", &[]), invalid("must have one element"));
        assert_eq!(field("NotIn", &["a"]), Ok(()));
        assert_eq!(
            unsupported("Bogus").unwrap_err().to_string(),
            r#"requirement on "k": unsupported operator "Bogus""#
        );
    }
}
