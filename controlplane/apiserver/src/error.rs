//! Errors as the Kubernetes API reports them: a metav1 Status with a reason and an
//! HTTP code, and for validation failures the fields that failed. Status bodies
//! are written as Kubernetes writes them ([`Status`]): its field order, no empty
//! fields, a newline at the end.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use wasmkube_types::ResourceType;
pub use wasmkube_types::field::FieldError;
pub use wasmkube_types::status::{Status, StatusCause, StatusDetails};

/// A failed API call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// The Status reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// What a person reads.
    pub message: String,
    /// The Status details, when there are any.
    pub details: Option<Box<StatusDetails>>,
}

/// The result of an API call.
pub type ApiResult<T> = Result<T, ApiError>;

/// `pods`, or `deployments.apps` for a kind in a group: how messages name a resource.
pub fn qualified(resource: &ResourceType) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// The details of a Status about the object `name` of `resource`: its name, its
/// group and its plural, as Kubernetes gives them.
pub fn details(resource: &ResourceType, name: &str) -> StatusDetails {
    StatusDetails {
        name: name.into(),
        group: resource.group.into(),
        kind: resource.plural.into(),
        causes: Vec::new(),
    }
}

impl ApiError {
    /// An error with a code, a reason and a message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// The error with `details`.
    pub fn with_details(self, details: StatusDetails) -> ApiError {
        ApiError {
            details: Some(Box::new(details)),
            ..self
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401: the request's credentials are missing or refused.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 404 for a path that names nothing served.
    pub fn no_such_path() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for an object.
    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified(resource)),
        )
        .with_details(details(resource, name))
    }

    /// 409 for a create of an object that exists.
    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified(resource)),
        )
        .with_details(details(resource, name))
    }

    /// 409 for a write that lost a race or failed a precondition.
    pub fn conflict(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified(resource)
            ),
        )
        .with_details(details(resource, name))
    }

    /// 409 for a write with a stale resourceVersion.
    pub fn modified(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with the fields of an object of kind `resource` that failed validation.
    pub fn invalid(resource: &ResourceType, name: &str, errors: &[FieldError]) -> ApiError {
        ApiError::invalid_of(resource.group, resource.kind, name, errors)
    }

    /// 422 with the fields of an object of `kind` in `group` that failed
    /// validation, as Kubernetes words it: `Deployment.apps "web" is invalid: …`.
    pub fn invalid_of(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> ApiError {
        let list = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let message = format!("{qualified} {name:?} is invalid: {list}");
        ApiError::new(422, "Invalid", message).with_details(StatusDetails {
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
            causes: errors.iter().map(StatusCause::from).collect(),
        })
    }

    /// 405: the verb is not supported here.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 406: no response format the client accepts.
    pub fn not_acceptable(accept: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (asked for {accept})"
            ),
        )
    }

    /// 415: a body in a format not understood.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            ),
        )
    }

    /// 410: a resourceVersion too old to serve.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 500: a failure of the server.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// 503: a part the server needs is not answering.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The error as a metav1 Status object.
    pub fn status(&self) -> Status {
        Status::failure(
            self.code,
            self.reason,
            self.message.clone(),
            self.details.as_deref().cloned(),
        )
    }
}

/// A request or object over a size limit: 413, as Kubernetes answers it.
pub(crate) fn too_large(message: String) -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: {message}"),
    )
}

impl From<wasmkube_store::Error> for ApiError {
    /// Store failures that no handler turned into something more precise.
    fn from(error: wasmkube_store::Error) -> ApiError {
        use wasmkube_store::Error as E;
        match error {
            E::Expired { requested } => ApiError::expired(format!(
                "The resourceVersion for the provided list is too old: {requested} has been compacted"
            )),
            E::FutureRevision { requested } => ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}"),
            ),
            E::InvalidContinue(why) => {
                ApiError::bad_request(format!("invalid continue token: {why}"))
            }
            E::Unavailable(why) => ApiError::unavailable(why),
            E::TooLarge { limit, .. } => too_large(format!(
                "the object is too large to store: limit is {limit} bytes"
            )),
            E::WatcherTooSlow(behind) => ApiError::expired(format!(
                "the watch fell more than {behind} changes behind and was closed; list again"
            )),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        respond_status(&self.status())
    }
}

/// A Status as the response, with its code.
pub fn respond_status(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = status.to_body();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_types::registry::by_kind;

    #[test]
    fn messages_read_like_kubernetes() {
        let pods = by_kind("", "v1", "Pod").unwrap();
        let deployments = by_kind("apps", "v1", "Deployment").unwrap();
        assert_eq!(
            ApiError::not_found(pods, "web").message,
            r#"pods "web" not found"#
        );
        assert_eq!(
            ApiError::already_exists(deployments, "d").message,
            r#"deployments.apps "d" already exists"#
        );
        assert_eq!(
            ApiError::modified(pods, "web").message,
            r#"Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again"#
        );
        let invalid = ApiError::invalid(
            pods,
            "Web",
            &[FieldError::invalid(
                "metadata.name",
                "Web",
                "must be lower case",
            )],
        );
        assert_eq!(invalid.code, 422);
        assert_eq!(
            invalid.message,
            r#"Pod "Web" is invalid: metadata.name: Invalid value: "Web": must be lower case"#
        );
        let details = invalid.details.unwrap();
        assert_eq!(details.causes[0].field, "metadata.name");
        assert_eq!(details.causes[0].reason, "FieldValueInvalid");
        let two = ApiError::invalid(
            pods,
            "x",
            &[
                FieldError::required("spec.containers", ""),
                FieldError::forbidden("spec", "may not change"),
            ],
        );
        assert_eq!(
            two.message,
            r#"Pod "x" is invalid: [spec.containers: Required value, spec: Forbidden: may not change]"#
        );
        let replicas = FieldError::invalid("spec.replicas", "-1", "must not be negative");
        assert_eq!(
            ApiError::invalid(deployments, "d", &[replicas]).message,
            r#"Deployment.apps "d" is invalid: spec.replicas: Invalid value: "-1": must not be negative"#
        );
    }

    #[test]
    fn status_bodies_are_written_as_kubernetes_writes_them() {
        let pods = by_kind("", "v1", "Pod").unwrap();
        let body = ApiError::already_exists(pods, "web").status().to_body();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"pods \"web\" already exists","reason":"AlreadyExists","#,
                r#""details":{"name":"web","kind":"pods"},"code":409}"#,
                "\n"
            )
        );
    }
}
