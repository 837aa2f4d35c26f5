//! The metav1 Status of an API call, as Kubernetes' API server writes it: its
//! fields in Go's order (kind, apiVersion, metadata, status, message, reason,
//! details, code), the empty ones left out, and the body ended by a newline, as
//! Go's JSON encoder ends it. Clients read these bodies, and some compare them as
//! text.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::field::FieldError;

/// A metav1 Status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: Map<String, Value>,
    /// `Success` or `Failure`.
    pub status: &'static str,
    /// What a person reads.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Why, for a program: `NotFound`, `AlreadyExists`, `Invalid`, …
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// What the status is about, when there is more to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl Status {
    /// The Status of a call that failed with HTTP `code`.
    pub fn failure(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<StatusDetails>,
    ) -> Status {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: Map::new(),
            status: "Failure",
            message,
            reason,
            details,
            code,
        }
    }

    /// The Status of a call that succeeded with HTTP `code`.
    pub fn success(code: u16) -> Status {
        Status {
            status: "Success",
            ..Status::failure(code, "", String::new(), None)
        }
    }

    /// The Status as a response body: JSON, in Kubernetes' field order, ended
    /// by a newline.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec(self).expect("a Status serializes");
        body.push(b'\n');
        body
    }
}

/// What a Status is about, in Kubernetes' field order; empty fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusDetails {
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its API group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Its kind, or its plural resource (as Kubernetes has it for most errors).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The causes, one per field when a validation failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One cause of a Status, in Kubernetes' field order; empty fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusCause {
    /// Why, for a program: `FieldValueInvalid`, `FieldManagerConflict`, …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What a person reads.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The field the cause is about: `spec.replicas`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

impl From<&FieldError> for StatusCause {
    fn from(error: &FieldError) -> StatusCause {
        StatusCause {
            reason: error.reason().into(),
            message: error.body(),
            field: error.field.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_written_as_kubernetes_writes_them() {
        let details = StatusDetails {
            name: "web".into(),
            kind: "pods".into(),
            ..StatusDetails::default()
        };
        let exists = Status::failure(
            409,
            "AlreadyExists",
            r#"pods "web" already exists"#.into(),
            Some(details),
        );
        assert_eq!(
            String::from_utf8(exists.to_body()).unwrap(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"pods \"web\" already exists","reason":"AlreadyExists","#,
                r#""details":{"name":"web","kind":"pods"},"code":409}"#,
                "\n"
            )
        );
        assert_eq!(
            String::from_utf8(Status::success(201).to_body()).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\",\"code\":201}\n"
        );
        let cause = StatusCause::from(&FieldError::required("spec.containers", ""));
        assert_eq!(
            serde_json::to_string(&cause).unwrap(),
            r#"{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers"}"#
        );
    }
}
