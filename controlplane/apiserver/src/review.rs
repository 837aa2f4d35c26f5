//! The kinds the server answers rather than stores: a create of one comes back
//! with its status, as Kubernetes answers it. `kubectl auth can-i` asks with a
//! SelfSubjectAccessReview (with `--list`, a SelfSubjectRulesReview), `kubectl
//! auth whoami` with a SelfSubjectReview; other servers ask whether a token is
//! good (TokenReview) or whether a user may do something (SubjectAccessReview,
//! LocalSubjectAccessReview). The server's own authenticators and authorizer
//! answer.

use std::collections::BTreeMap;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use serde_json::{Value, json};
use wasmkube_types::field::FieldError;

use crate::access::{Attributes, Decision, ResourceAttributes, UserInfo};
use crate::error::{ApiError, ApiResult};
use crate::objects::{check_decodes, check_type_meta};
use crate::rest::Request;

impl Request<'_> {
    /// Answers a create of a kind the server answers: the object sent, with its
    /// status.
    pub(crate) async fn answer(&self, mut object: Value) -> ApiResult<Response> {
        let r = self.target.resource;
        check_type_meta(r, &mut object)?;
        check_decodes(r, &object)?;
        let spec = object["spec"].clone();
        let invalid = |errors: &[FieldError]| ApiError::invalid(r, "", errors);
        let status = match r.kind {
            "SelfSubjectReview" => json!({"userInfo": user_info(self.user)}),
            "TokenReview" => self.review_token(&spec).await,
            "SelfSubjectRulesReview" => {
                let namespace = spec["namespace"].as_str().unwrap_or("");
                serde_json::to_value(self.server.access.authorizer.rules(self.user, namespace))
                    .unwrap_or_default()
            }
            "SelfSubjectAccessReview" => {
                let attributes = attributes(self.user.clone(), &spec).map_err(|e| invalid(&e))?;
                self.decide(&attributes).await
            }
            _ => {
                let user = subject(&spec).map_err(|e| invalid(&e))?;
                let attributes = attributes(user, &spec).map_err(|e| invalid(&e))?;
                if let (Some(namespace), Some(resource)) =
                    (&self.target.namespace, &attributes.resource)
                    && namespace != &resource.namespace
                {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {namespace}"
                    )));
                }
                self.decide(&attributes).await
            }
        };
        object["status"] = status;
        object["metadata"]["creationTimestamp"] = Value::Null;
        Ok(self.render(201, &object))
    }

    /// The status of an access review: what the server's authorizer says.
    async fn decide(&self, attributes: &Attributes) -> Value {
        match self.server.access.authorizer.authorize(attributes).await {
            Decision::Allow => json!({"allowed": true}),
            Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
            Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
            Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
        }
    }

    /// The status of a token review: the user the server's authenticators find
    /// for the token, or why there is none.
    async fn review_token(&self, spec: &Value) -> Value {
        let token = spec["token"].as_str().unwrap_or("");
        let mut parts = axum::http::Request::new(()).into_parts().0;
        parts.method = Method::GET;
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            parts.headers.insert(AUTHORIZATION, value);
        }
        match self.server.access.authenticator.user(&parts).await {
            Ok(user) if user != UserInfo::anonymous() => json!({
                "authenticated": true,
                "user": user_info(&user),
                "audiences": spec["audiences"],
            }),
            _ => json!({"authenticated": false, "error": "invalid bearer token"}),
        }
    }
}

/// A user as reviews say it (`authentication/v1.UserInfo`).
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> Result<UserInfo, Vec<FieldError>> {
    let strings = |field: &str| -> Vec<String> {
        spec[field]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let user = UserInfo {
        name: spec["user"].as_str().unwrap_or("").to_owned(),
        uid: spec["uid"].as_str().unwrap_or("").to_owned(),
        groups: strings("groups"),
        extra: serde_json::from_value::<BTreeMap<String, Vec<String>>>(spec["extra"].clone())
            .unwrap_or_default(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(vec![FieldError::invalid(
            "spec.user",
            "null",
            "at least one of user or group must be specified",
        )]);
    }
    Ok(user)
}

/// What an access review asks: its resource attributes or its non-resource
/// ones, exactly one of them.
fn attributes(user: UserInfo, spec: &Value) -> Result<Attributes, Vec<FieldError>> {
    let text = |v: &Value, field: &str| v[field].as_str().unwrap_or("").to_owned();
    match (
        spec.get("resourceAttributes").filter(|v| !v.is_null()),
        spec.get("nonResourceAttributes").filter(|v| !v.is_null()),
    ) {
        (Some(r), None) => Ok(Attributes {
            user,
            verb: text(r, "verb"),
            resource: Some(ResourceAttributes {
                group: text(r, "group"),
                version: text(r, "version"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                namespace: text(r, "namespace"),
                name: text(r, "name"),
            }),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes {
            user,
            verb: text(n, "verb"),
            resource: None,
            path: text(n, "path"),
        }),
        (Some(_), Some(_)) => Err(vec![FieldError::invalid(
            "spec.resourceAttributes",
            "{...}",
            "cannot be specified in combination with nonResourceAttributes",
        )]),
        (None, None) => Err(vec![FieldError::invalid(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )]),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::FutureExt;
    use futures::future::{BoxFuture, ready};
    use serde_json::json;

    use crate::access::{Authorizer, Decision};
    use crate::testing::TestServer;
    use crate::{Access, Config};

    /// Lets everyone get pods, list and create; nothing else.
    struct PodReader;

    impl Authorizer for PodReader {
        fn authorize<'a>(
            &'a self,
            attributes: &'a crate::access::Attributes,
        ) -> BoxFuture<'a, Decision> {
            let allowed = attributes.verb == "get"
                && attributes
                    .resource
                    .as_ref()
                    .is_some_and(|r| r.resource == "pods")
                || attributes.verb == "create"
                || attributes.verb == "list";
            let decision = match allowed {
                true => Decision::Allow,
                false => Decision::NoOpinion(String::new()),
            };
            ready(decision).boxed()
        }
    }

    #[tokio::test]
    async fn reviews_are_answered_by_the_authorizer_and_not_stored() {
        let server = TestServer::start_with(Config {
            access: Access {
                authorizer: Arc::new(PodReader),
                ..Access::default()
            },
            ..Config::default()
        })
        .await;
        let review = |kind: &str, spec| json!({"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec});
        let self_review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
        let pods =
            json!({"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "web"}});
        let (status, _, answer) = server
            .call("POST", self_review, review("SelfSubjectAccessReview", pods))
            .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["status"], json!({"allowed": true}));
        let secrets = json!({"resourceAttributes": {"verb": "get", "resource": "secrets"}});
        let (_, _, answer) = server
            .call(
                "POST",
                self_review,
                review("SelfSubjectAccessReview", secrets),
            )
            .await;
        assert_eq!(answer["status"], json!({"allowed": false}));
        let (status, _, refused) = server
            .call(
                "POST",
                self_review,
                review("SelfSubjectAccessReview", json!({})),
            )
            .await;
        assert_eq!(status, 422, "{refused}");
        let anyone = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
        let (status, _, refused) = server
            .call(
                "POST",
                anyone,
                review(
                    "SubjectAccessReview",
                    json!({"nonResourceAttributes": {"path": "/x", "verb": "get"}}),
                ),
            )
            .await;
        assert_eq!(status, 422, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("at least one of user or group")
        );
        let local = "/apis/authorization.k8s.io/v1/namespaces/web/localsubjectaccessreviews";
        let elsewhere = json!({"user": "jane", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "prod"}});
        let (status, _, _) = server
            .call("POST", local, review("LocalSubjectAccessReview", elsewhere))
            .await;
        assert_eq!(status, 400);
        let (status, _, _) = server.call("GET", anyone, serde_json::Value::Null).await;
        assert_eq!(status, 405, "reviews are not stored, so not listed");
        let (_, _, me) = server
            .call(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
            )
            .await;
        assert_eq!(me["status"]["userInfo"]["username"], "system:anonymous");
        let (_, _, rules) = server
            .call(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                review("SelfSubjectRulesReview", json!({"namespace": "web"})),
            )
            .await;
        assert_eq!(rules["status"]["incomplete"], true, "{rules}");
    }
}
