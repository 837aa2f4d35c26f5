//! Field errors: what is wrong with one field of an object, as Kubernetes'
//! validation reports it (`k8s.io/apimachinery/pkg/util/validation/field`). The API
//! server turns a list of them into a 422 Invalid Status, one cause per error.

use std::fmt;

/// Why one field of an object is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's path, `metadata.name`.
    pub field: String,
    /// What is wrong with it.
    pub kind: FieldErrorKind,
    /// Why, for a person.
    pub detail: String,
}

/// The kinds of field errors of Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// The value given is not allowed; holds the value as text.
    Invalid(String),
    /// A value is needed and missing.
    Required,
    /// The field may not be set or changed.
    Forbidden,
    /// The value is not one of a fixed set; holds the value and the set.
    NotSupported(String, Vec<String>),
    /// The value is already used by another item of the list; holds the value.
    Duplicate(String),
    /// The value names something that does not exist; holds the value.
    NotFound(String),
}

impl FieldError {
    /// An invalid value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value.into()),
            detail: detail.into(),
        }
    }

    /// A missing value.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }

    /// A value that may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }

    /// A value outside the `supported` set.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<String>,
        supported: &[&str],
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(
                value.into(),
                supported.iter().map(|s| (*s).to_owned()).collect(),
            ),
            detail: String::new(),
        }
    }

    /// A value another item of the list already has.
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate(value.into()),
            detail: String::new(),
        }
    }

    /// A reference to something that does not exist.
    pub fn not_found(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotFound(value.into()),
            detail: String::new(),
        }
    }

    /// The reason of the Status cause: `FieldValueInvalid`, `FieldValueRequired`, …
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
        }
    }

    /// The message without the field: `Invalid value: "x": why`.
    pub fn body(&self) -> String {
        let (what, value) = match &self.kind {
            FieldErrorKind::Invalid(v) => ("Invalid value", Some(v)),
            FieldErrorKind::Required => ("Required value", None),
            FieldErrorKind::Forbidden => ("Forbidden", None),
            FieldErrorKind::NotSupported(v, _) => ("Unsupported value", Some(v)),
            FieldErrorKind::Duplicate(v) => ("Duplicate value", Some(v)),
            FieldErrorKind::NotFound(v) => ("Not found", Some(v)),
        };
        let mut s = what.to_owned();
        if let Some(v) = value {
            s.push_str(&format!(": {v:?}"));
        }
        if let FieldErrorKind::NotSupported(_, supported) = &self.kind {
            let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
            s.push_str(": supported values: ");
            s.push_str(&quoted.join(", "));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}
