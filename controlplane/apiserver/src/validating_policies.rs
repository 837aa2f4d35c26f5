//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (admissionregistration.k8s.io/v1): checks of writes written in CEL, with
//! no Wasm and no webhook, as Kubernetes runs them.
//!
//! A policy says which writes it is about (`matchConstraints`: resource rules
//! as a webhook's, namespace and object selectors, excluded rules), which of
//! them it looks at (`matchConditions`), what it checks (`validations`: an
//! expression, a `message` or `messageExpression`, a `reason`), `variables`
//! its expressions share, an optional `paramKind`, and its `failurePolicy`.
//! A binding puts it in force for the writes its own `matchResources` name,
//! with its params (`paramRef`: by name or selector, and what to do when none
//! is found) and `validationActions`: `Deny` refuses (422 Invalid unless the
//! validation says another reason: `… is forbidden: ValidatingAdmissionPolicy
//! 'p' with binding 'b' denied request: failed expression: …`), `Warn`
//! answers with a warning, `Audit` is accepted and has no audit log to go to.
//!
//! Expressions see `object`, `oldObject`, `request`, `params`,
//! `namespaceObject` and `variables`; they are compiled when a policy is
//! written, and one that does not compile fails its calls by the policy's
//! failure policy.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cel::{Context, Program, Value as Cel};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_types::k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use wasmkube_types::registry::{ResourceType, by_kind};
use wasmkube_types::selector::labels::Selector;

use crate::admission::{AdmissionRequest, ValidatingAdmission};
use crate::cache::WatchCache;
use crate::error::{ApiError, ApiResult, StatusCause, StatusDetails, qualified};

/// The group-version of the admission kinds.
pub(crate) const ADMISSION_API: &str = "admissionregistration.k8s.io/v1";

/// An expression, compiled (or why it does not compile).
struct Expression {
    text: String,
    program: Result<Program, String>,
}

impl Expression {
    fn new(text: &str) -> Expression {
        Expression {
            text: text.trim().to_owned(),
            program: Program::compile(text).map_err(|e| e.to_string()),
        }
    }

    /// Its value in `context`, or why it has none.
    fn eval(&self, context: &Context) -> Result<Cel, String> {
        let program = self.program.as_ref().map_err(Clone::clone)?;
        program.execute(context).map_err(|e| e.to_string())
    }

    /// Its value as a bool, or why it is not one.
    fn holds(&self, context: &Context) -> Result<bool, String> {
        match self.eval(context)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {other:?}")),
        }
    }
}

/// One validation of a policy.
struct Validation {
    check: Expression,
    message: Option<String>,
    message_expression: Option<Expression>,
    reason: Option<String>,
}

/// A policy, compiled.
struct Policy {
    constraints: Option<MatchResources>,
    conditions: Vec<Expression>,
    validations: Vec<Validation>,
    variables: Vec<(String, Expression)>,
    /// The kind of its params (apiVersion, kind), if it takes any.
    params: Option<(String, String)>,
    ignore_failures: bool,
}

impl Policy {
    fn of(policy: &ValidatingAdmissionPolicy) -> Policy {
        let spec = policy.spec.clone().unwrap_or_default();
        Policy {
            constraints: spec.match_constraints,
            conditions: spec
                .match_conditions
                .unwrap_or_default()
                .iter()
                .map(|c| Expression::new(&c.expression))
                .collect(),
            validations: spec
                .validations
                .unwrap_or_default()
                .into_iter()
                .map(|v| Validation {
                    check: Expression::new(&v.expression),
                    message: v.message.filter(|m| !m.is_empty()),
                    message_expression: v.message_expression.as_deref().map(Expression::new),
                    reason: v.reason,
                })
                .collect(),
            variables: spec
                .variables
                .unwrap_or_default()
                .into_iter()
                .map(|v| (v.name, Expression::new(&v.expression)))
                .collect(),
            params: spec.param_kind.map(|k| {
                (
                    k.api_version.unwrap_or_default(),
                    k.kind.unwrap_or_default(),
                )
            }),
            ignore_failures: spec.failure_policy.as_deref() == Some("Ignore"),
        }
    }
}

/// The policies and bindings in force.
#[derive(Default)]
struct Known {
    policies: BTreeMap<String, Arc<Policy>>,
    bindings: BTreeMap<String, Arc<ValidatingAdmissionPolicyBinding>>,
}

/// The validating admission policies of a server.
pub(crate) struct ValidatingPolicies {
    known: RwLock<Known>,
    cache: Arc<WatchCache>,
}

impl std::fmt::Debug for ValidatingPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.known.read().expect("policies lock");
        f.debug_struct("ValidatingPolicies")
            .field("policies", &known.policies.len())
            .field("bindings", &known.bindings.len())
            .finish()
    }
}

impl ValidatingPolicies {
    /// The policies and bindings the cache holds, kept current until
    /// `closing`.
    pub(crate) async fn start(
        cache: Arc<WatchCache>,
        closing: CancellationToken,
    ) -> ApiResult<Arc<ValidatingPolicies>> {
        let policies = Arc::new(ValidatingPolicies {
            known: RwLock::default(),
            cache: cache.clone(),
        });
        let following = policies.clone();
        let kinds = [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ];
        cache
            .follow_kinds(ADMISSION_API, &kinds, &closing, move |object, deleted| {
                following.learn(object, deleted)
            })
            .await?;
        Ok(policies)
    }

    /// Takes in a policy or binding written (or deleted).
    fn learn(&self, object: &Value, deleted: bool) {
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let mut known = self.known.write().expect("policies lock");
        match object["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") if deleted => {
                known.policies.remove(&name);
            }
            Some("ValidatingAdmissionPolicy") => {
                if let Ok(policy) = serde_json::from_value(object.clone()) {
                    known.policies.insert(name, Arc::new(Policy::of(&policy)));
                }
            }
            Some("ValidatingAdmissionPolicyBinding") if deleted => {
                known.bindings.remove(&name);
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                if let Ok(binding) = serde_json::from_value(object.clone()) {
                    known.bindings.insert(name, Arc::new(binding));
                }
            }
            _ => {}
        }
    }

    /// The objects of kind (`api_version`, `kind`) in `namespace` whose
    /// labels `selector` matches.
    fn objects(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let Some(prefix) =
            by_kind(group, version, kind).and_then(|r| r.storage_collection(namespace))
        else {
            return Vec::new();
        };
        let found = self
            .cache
            .list_now(&prefix, selector, 1000, crate::MAX_LISTED_BYTES);
        found
            .unwrap_or_default()
            .iter()
            .filter_map(|json| serde_json::from_slice(json).ok())
            .collect()
    }

    /// Whether `resources` names the write of `request`. A binding's
    /// resources without rules (`narrowing`) narrow the policy's by their
    /// selectors alone.
    fn matches(
        &self,
        resources: &MatchResources,
        narrowing: bool,
        request: &AdmissionRequest<'_>,
    ) -> bool {
        let named = |rules: &Option<Vec<NamedRuleWithOperations>>| {
            rules.iter().flatten().any(|rule| {
                let names = rule.resource_names.clone().unwrap_or_default();
                (names.is_empty() || names.iter().any(|n| n == request.name))
                    && crate::policies::rule_matches(
                        &rule.operations,
                        &rule.api_groups,
                        &rule.api_versions,
                        &rule.resources,
                        rule.scope.as_deref(),
                        request,
                    )
            })
        };
        let unruled = narrowing && resources.resource_rules.as_ref().is_none_or(Vec::is_empty);
        if !(unruled || named(&resources.resource_rules))
            || named(&resources.exclude_resource_rules)
        {
            return false;
        }
        let selector = |s: &Option<_>| {
            s.as_ref()
                .map(Selector::from_label_selector)
                .transpose()
                .ok()
                .flatten()
        };
        let (namespaces, objects) = (
            selector(&resources.namespace_selector),
            selector(&resources.object_selector),
        );
        crate::policies::selected(&self.cache, namespaces.as_ref(), objects.as_ref(), request)
    }

    /// The params a binding gives a policy that takes some: none (the policy
    /// takes none), each object found, or why there are none.
    fn params(
        &self,
        policy: &Policy,
        binding: &ValidatingAdmissionPolicyBinding,
        request: &AdmissionRequest<'_>,
    ) -> Result<Vec<Value>, Option<String>> {
        let Some((api_version, kind)) = &policy.params else {
            return Ok(vec![Value::Null]);
        };
        let Some(reference) = binding.spec.as_ref().and_then(|s| s.param_ref.as_ref()) else {
            return Err(Some(
                "policy takes params, and its binding gives none".into(),
            ));
        };
        let namespace = reference
            .namespace
            .as_deref()
            .or(request.namespace)
            .filter(|_| by_kind_of(api_version, kind).is_some_and(|r| r.namespaced));
        let found = match (&reference.name, &reference.selector) {
            (Some(name), _) => self
                .cache
                .object_now(api_version, kind, namespace, name)
                .into_iter()
                .collect(),
            (None, Some(selector)) => match Selector::from_label_selector(selector) {
                Ok(selector) => self.objects(api_version, kind, namespace, &selector),
                Err(e) => return Err(Some(e.to_string())),
            },
            (None, None) => Vec::new(),
        };
        if !found.is_empty() {
            return Ok(found);
        }
        match reference.parameter_not_found_action.as_deref() {
            Some("Allow") => Err(None),
            _ => Err(Some(
                "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            )),
        }
    }
}

fn by_kind_of(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    by_kind(group, version, kind)
}

/// A CEL value of a JSON value.
fn cel(value: &Value) -> Cel {
    cel::to_value(value).unwrap_or(Cel::Null)
}

/// The `request` variable: the write as an AdmissionRequest has it.
fn request_variable(request: &AdmissionRequest<'_>) -> Value {
    let r = request.resource;
    json!({
        "kind": {"group": request.group, "version": request.version, "kind": request.kind},
        "resource": {"group": r.group, "version": r.version, "resource": r.plural},
        "subResource": request.subresource.unwrap_or(""),
        "name": request.name,
        "namespace": request.namespace.unwrap_or(""),
        "operation": request.operation.as_str(),
        "userInfo": {"username": request.user.name, "uid": request.user.uid,
            "groups": request.user.groups},
        "dryRun": request.dry_run,
    })
}

/// What one policy, under one binding, decided.
enum Decision {
    /// Nothing to say.
    Allow,
    /// Refused with this reason and message.
    Refuse(String, String),
    /// An expression could not be evaluated: why.
    Failed(String),
}

impl ValidatingPolicies {
    /// What `policy` decides of `request` with `params`.
    fn decide(&self, policy: &Policy, request: &AdmissionRequest<'_>, params: &Value) -> Decision {
        let mut context = Context::default();
        let null = Value::Null;
        let namespace = request
            .namespace
            .and_then(|n| self.cache.object_now("v1", "Namespace", None, n));
        let bound = [
            ("object", request.object.as_ref().unwrap_or(&null)),
            ("oldObject", request.old_object.unwrap_or(&null)),
            ("params", params),
            ("namespaceObject", namespace.as_ref().unwrap_or(&null)),
            ("request", &request_variable(request)),
        ];
        for (name, value) in bound {
            context.add_variable_from_value(name, cel(value));
        }
        let failed = |e: String, text: &str| {
            Decision::Failed(format!("expression '{text}' resulted in error: {e}"))
        };
        // Each variable sees those before it, in the one context.
        let mut variables = std::collections::HashMap::new();
        for (name, expression) in &policy.variables {
            context.add_variable_from_value("variables", Cel::from(variables.clone()));
            match expression.eval(&context) {
                Ok(value) => {
                    variables.insert(name.clone(), value);
                }
                Err(e) => return failed(e, &expression.text),
            }
        }
        context.add_variable_from_value("variables", Cel::from(variables));
        for condition in &policy.conditions {
            match condition.holds(&context) {
                Ok(true) => {}
                Ok(false) => return Decision::Allow,
                Err(e) => return failed(e, &condition.text),
            }
        }
        for validation in &policy.validations {
            match validation.check.holds(&context) {
                Ok(true) => {}
                Ok(false) => {
                    let said = validation.message_expression.as_ref().and_then(|m| {
                        match m.eval(&context) {
                            Ok(Cel::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                            _ => None,
                        }
                    });
                    let message = said
                        .or_else(|| validation.message.clone())
                        .unwrap_or_else(|| format!("failed expression: {}", validation.check.text));
                    let reason = validation
                        .reason
                        .clone()
                        .unwrap_or_else(|| "Invalid".into());
                    return Decision::Refuse(reason, message);
                }
                Err(e) => return failed(e, &validation.check.text),
            }
        }
        Decision::Allow
    }
}

/// The code of a Status reason a validation may give.
fn code_of(reason: &str) -> (u16, &'static str) {
    match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    }
}

impl ValidatingAdmission for ValidatingPolicies {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            let in_force: Vec<(String, Arc<ValidatingAdmissionPolicyBinding>, Arc<Policy>)> = {
                let known = self.known.read().expect("policies lock");
                known
                    .bindings
                    .iter()
                    .filter_map(|(name, binding)| {
                        let spec = binding.spec.as_ref()?;
                        let policy = known.policies.get(spec.policy_name.as_deref()?)?;
                        Some((name.clone(), binding.clone(), policy.clone()))
                    })
                    .collect()
            };
            let mut warnings = Vec::new();
            for (binding_name, binding, policy) in in_force {
                let spec = binding.spec.clone().unwrap_or_default();
                let policy_name = spec.policy_name.clone().unwrap_or_default();
                let constraints = policy.constraints.clone().unwrap_or_default();
                if !self.matches(&constraints, false, request)
                    || spec
                        .match_resources
                        .as_ref()
                        .is_some_and(|m| !self.matches(m, true, request))
                {
                    continue;
                }
                let decisions = match self.params(&policy, &binding, request) {
                    Ok(all) => all.iter().map(|p| self.decide(&policy, request, p)).collect(),
                    Err(None) => Vec::new(),
                    Err(Some(why)) => vec![Decision::Refuse("Invalid".into(), why)],
                };
                for decision in decisions {
                    let (reason, message) = match decision {
                        Decision::Allow => continue,
                        Decision::Failed(_) if policy.ignore_failures => continue,
                        Decision::Failed(message) => ("Invalid".to_owned(), message),
                        Decision::Refuse(reason, message) => (reason, message),
                    };
                    let said = format!(
                        "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}"
                    );
                    let actions = spec.validation_actions.clone().unwrap_or_default();
                    if actions.iter().any(|a| a == "Warn") {
                        warnings.push(format!(
                            "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"
                        ));
                    }
                    if actions.iter().any(|a| a == "Deny") {
                        request.warn(warnings);
                        let r = request.resource;
                        let (code, reason) = code_of(&reason);
                        let message = format!("{} {:?} is forbidden: {said}", qualified(r), request.name);
                        return Err(ApiError::new(code, reason, message).with_details(StatusDetails {
                            name: request.name.into(),
                            group: r.group.into(),
                            kind: r.plural.into(),
                            causes: vec![StatusCause {
                                reason: String::new(),
                                message: said,
                                field: String::new(),
                            }],
                        }));
                    }
                }
            }
            request.warn(warnings);
            Ok(())
        }
        .boxed()
    }
}
