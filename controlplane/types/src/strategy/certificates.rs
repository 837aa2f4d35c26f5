//! CertificateSigningRequests (certificates.k8s.io/v1), as Kubernetes'
//! `pkg/registry/certificates` and `pkg/apis/certificates/validation` have
//! them. A request is immutable once created but through its subresources:
//! `approval` adds the Approved or Denied condition, `status` (a signer's)
//! the certificate and other conditions. A new request starts with an empty
//! status; who asked (`spec.username`, `uid`, `groups`, `extra`) is filled
//! in by the API server from the request's user, not by the client.
//!
//! The request itself must be a PEM `CERTIFICATE REQUEST`; its signature is
//! checked where the certificates are known (admission in the API server),
//! this crate doing no cryptography.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::{Strategy, text};
use crate::field::FieldError;
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};

/// CertificateSigningRequests.
#[derive(Debug)]
pub(crate) struct CertificateSigningRequests;

/// The strategy of CertificateSigningRequests.
pub(crate) static CERTIFICATE_SIGNING_REQUESTS: CertificateSigningRequests =
    CertificateSigningRequests;

/// The key usages a request may ask for, as Kubernetes spells them.
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The condition types that may only be `True`.
const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];
/// The values of a condition's status.
const STATUSES: &[&str] = &["True", "False", "Unknown"];

/// The shortest validity a request may ask for: ten minutes.
const MIN_EXPIRATION_SECONDS: i64 = 600;

impl Strategy for CertificateSigningRequests {
    /// Any name will do, as long as it fits in a path.
    fn validate_name(&self, name: &str) -> Vec<String> {
        if name == "." || name == ".." {
            return vec![format!("may not be '{name}'")];
        }
        ["/", "%"]
            .iter()
            .filter(|c| name.contains(**c))
            .map(|c| format!("may not contain '{c}'"))
            .collect()
    }

    /// The spec never changes once created.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        new["spec"] = old["spec"].clone();
    }

    fn validate(&self, csr: &Value) -> Vec<FieldError> {
        let spec = &csr["spec"];
        let mut errors = Vec::new();
        if let Err(why) = request_pem(&spec["request"]) {
            let value = spec["request"].as_str().unwrap_or_default();
            errors.push(FieldError::invalid("spec.request", value, why));
        }
        let usages = spec["usages"].as_array().map_or(&[][..], Vec::as_slice);
        if usages.is_empty() {
            errors.push(FieldError::required("spec.usages", ""));
        }
        for (i, usage) in usages.iter().enumerate() {
            let usage = text(usage);
            let field = format!("spec.usages[{i}]");
            if !USAGES.contains(&usage.as_str()) {
                errors.push(FieldError::not_supported(&field, &usage, USAGES));
            }
            if usages[..i].iter().any(|u| text(u) == usage) {
                errors.push(FieldError::duplicate(field, usage));
            }
        }
        errors.extend(signer_name(spec["signerName"].as_str().unwrap_or("")));
        if let Some(seconds) = spec["expirationSeconds"].as_i64()
            && seconds < MIN_EXPIRATION_SECONDS
        {
            errors.push(FieldError::invalid(
                "spec.expirationSeconds",
                seconds.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        errors.extend(conditions(csr));
        if let Err(why) = certificate_pem(&csr["status"]["certificate"]) {
            errors.push(FieldError::invalid(
                "status.certificate",
                "<certificate data>",
                why,
            ));
        }
        errors
    }

    fn validate_update_via(
        &self,
        subresource: Option<&str>,
        new: &Value,
        old: &Value,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for kind in TRUE_ONLY {
            let (before, after) = (of_type(old, kind), of_type(new, kind));
            if after.len() < before.len() {
                errors.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not remove a condition of type {kind:?}"),
                ));
                continue;
            }
            let approval = *kind == "Approved" || *kind == "Denied";
            if !approval || subresource == Some("approval") {
                continue;
            }
            if after.len() > before.len() {
                errors.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not add a condition of type {kind:?}"),
                ));
            } else if after != before {
                errors.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not modify a condition of type {kind:?}"),
                ));
            }
        }
        let (before, after) = (certificate(old), certificate(new));
        if before != after {
            if subresource != Some("status") {
                errors.push(FieldError::forbidden(
                    "status.certificate",
                    "updates may not set certificate content",
                ));
            } else if !before.is_empty() {
                errors.push(FieldError::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            }
        }
        errors
    }
}

/// The certificate of `csr` (base64), empty when it has none.
fn certificate(csr: &Value) -> &str {
    csr["status"]["certificate"].as_str().unwrap_or_default()
}

/// The conditions of `csr` of type `kind`.
fn of_type<'a>(csr: &'a Value, kind: &str) -> Vec<&'a Value> {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == kind)
        .collect()
}

/// What is wrong with the conditions of `csr`: types missing or given twice,
/// statuses not allowed, both Approved and Denied.
fn conditions(csr: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let conditions = csr["status"]["conditions"].as_array().into_iter().flatten();
    for (i, condition) in conditions.enumerate() {
        let at = format!("status.conditions[{i}]");
        let kind = text(&condition["type"]);
        if kind.is_empty() || condition["type"].is_null() {
            errors.push(FieldError::required(format!("{at}.type"), ""));
        }
        let allowed = if TRUE_ONLY.contains(&kind.as_str()) {
            &["True"][..]
        } else {
            STATUSES
        };
        match condition["status"].as_str() {
            None | Some("") => errors.push(FieldError::required(format!("{at}.status"), "")),
            Some(status) if !allowed.contains(&status) => errors.push(FieldError::not_supported(
                format!("{at}.status"),
                status,
                allowed,
            )),
            Some(_) => {}
        }
        let other = match kind.as_str() {
            "Approved" => "Denied",
            "Denied" => "Approved",
            _ => "",
        };
        if !other.is_empty() && seen.iter().any(|s| s == other) {
            errors.push(FieldError::invalid(
                "status.conditions",
                &kind,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if seen.contains(&kind) {
            errors.push(FieldError::duplicate(format!("{at}.type"), &kind));
        }
        seen.push(kind);
    }
    errors
}

/// What is wrong with a signer's name: it must be `<domain>/<path>`, a domain
/// of at least two DNS labels and a path of DNS subdomains.
fn signer_name(name: &str) -> Vec<FieldError> {
    const FIELD: &str = "spec.signerName";
    if name.is_empty() {
        return vec![FieldError::required(FIELD, "")];
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        return vec![FieldError::invalid(
            FIELD,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut errors = Vec::new();
    if domain.len() > 253 {
        errors.push(FieldError::invalid(
            FIELD,
            domain,
            "must be no more than 253 characters",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((label, why)) = labels
        .iter()
        .find_map(|l| is_dns1123_label(l).into_iter().next().map(|why| (l, why)))
    {
        errors.push(FieldError::invalid(
            FIELD,
            domain,
            format!("validating label {label:?}: {why}"),
        ));
    }
    if labels.len() < 2 {
        errors.push(FieldError::invalid(
            FIELD,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if let Some((label, why)) = path.split('.').find_map(|l| {
        is_dns1123_subdomain(l)
            .into_iter()
            .next()
            .map(|why| (l, why))
    }) {
        errors.push(FieldError::invalid(
            FIELD,
            path,
            format!("validating label {label:?}: {why}"),
        ));
    }
    if name.len() > 253 + 253 + 63 + 2 {
        errors.push(FieldError::invalid(
            FIELD,
            name,
            "must be no more than 571 characters",
        ));
    }
    errors
}

/// The PEM blocks of a base64 field (how JSON carries bytes), as
/// `(label, base64 body)`; an error when the field is not base64 or its text
/// has a malformed block.
fn pem_blocks(field: &Value) -> Result<Vec<(String, String)>, String> {
    let bytes = STANDARD
        .decode(field.as_str().unwrap_or_default())
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not PEM text".to_owned())?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        loop {
            match lines.next() {
                Some(line) if line == end => break,
                Some(line) if line.contains(':') => {
                    return Err("no PEM block headers are permitted".into());
                }
                Some(line) => body.push_str(line),
                None => return Err(format!("the {label} block has no end")),
            }
        }
        if STANDARD.decode(&body).is_err() {
            return Err(format!("the {label} block is not base64"));
        }
        blocks.push((label.to_owned(), body));
    }
    Ok(blocks)
}

/// Checks that a request field holds a PEM `CERTIFICATE REQUEST` first.
fn request_pem(field: &Value) -> Result<(), String> {
    match pem_blocks(field)?.first() {
        Some((label, _)) if label == "CERTIFICATE REQUEST" => Ok(()),
        _ => Err("PEM block type must be CERTIFICATE REQUEST".into()),
    }
}

/// Checks that a certificate field is empty or holds PEM certificates only.
fn certificate_pem(field: &Value) -> Result<(), String> {
    if field.as_str().unwrap_or_default().is_empty() {
        return Ok(());
    }
    let blocks = pem_blocks(field)?;
    if let Some((label, _)) = blocks.iter().find(|(label, _)| label != "CERTIFICATE") {
        return Err(format!(
            "only CERTIFICATE PEM blocks are allowed, found {label:?}"
        ));
    }
    if blocks.is_empty() {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::strategy::tests::errors;

    /// A request as a client sends it: the PEM text base64-encoded.
    fn pem(label: &str) -> String {
        let body = STANDARD.encode(b"not DER, but base64");
        STANDARD.encode(format!(
            "-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
        ))
    }

    fn csr() -> Value {
        json!({"metadata": {"name": "node-csr-1"}, "spec": {
            "request": pem("CERTIFICATE REQUEST"),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        }})
    }

    fn invalid(csr: Value) -> Vec<String> {
        errors(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            csr,
        )
    }

    #[test]
    fn a_request_needs_a_pem_request_usages_and_a_signer() {
        assert!(invalid(csr()).is_empty(), "{:?}", invalid(csr()));
        let mut bad = csr();
        bad["spec"]["request"] = json!(pem("CERTIFICATE"));
        bad["spec"]["usages"] = json!(["client auth", "telepathy", "client auth"]);
        bad["spec"]["signerName"] = json!("kubelet");
        bad["spec"]["expirationSeconds"] = json!(60);
        let found = invalid(bad);
        let fields: Vec<&str> = found.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec.request",
                "spec.usages[1]",
                "spec.usages[2]",
                "spec.signerName",
                "spec.expirationSeconds"
            ],
            "{found:?}"
        );
        assert!(found[0].contains("PEM block type must be CERTIFICATE REQUEST"));
        let mut missing = csr();
        missing["spec"] = json!({});
        assert_eq!(invalid(missing).len(), 3);
    }

    #[test]
    fn signer_names_are_a_domain_and_a_path() {
        assert!(signer_name("example.com/my-signer").is_empty());
        assert!(signer_name("kubernetes.io/kubelet-serving").is_empty());
        for bad in ["example.com", "a/b/c", "localhost/signer", "Example.com/x"] {
            assert!(!signer_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn conditions_are_checked() {
        let mut both = csr();
        both["status"] = json!({"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]});
        assert!(invalid(both)[0].contains("mutually exclusive"));
        let mut false_approval = csr();
        false_approval["status"] = json!({"conditions": [{"type": "Approved", "status": "False"}]});
        assert!(invalid(false_approval)[0].contains("Unsupported value"));
        let mut twice = csr();
        twice["status"] = json!({"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]});
        assert!(invalid(twice)[0].contains("Duplicate value"));
        let mut not_a_certificate = csr();
        not_a_certificate["status"] = json!({"certificate": pem("RSA PRIVATE KEY")});
        assert!(invalid(not_a_certificate)[0].contains("only CERTIFICATE PEM blocks"));
    }

    #[test]
    fn approval_is_written_through_approval_and_the_certificate_through_status() {
        let s = &CERTIFICATE_SIGNING_REQUESTS;
        let old = csr();
        let mut approved = old.clone();
        approved["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True", "reason": "r"}]});
        assert!(
            s.validate_update_via(Some("approval"), &approved, &old)
                .is_empty()
        );
        let refused = s.validate_update_via(Some("status"), &approved, &old);
        assert!(
            refused[0].to_string().contains("may not add"),
            "{refused:?}"
        );
        assert!(!s.validate_update_via(None, &approved, &old).is_empty());
        // Once there, approval stays.
        let removed = s.validate_update_via(Some("approval"), &old, &approved);
        assert!(removed[0].to_string().contains("may not remove"));

        let mut issued = approved.clone();
        issued["status"]["certificate"] = json!(pem("CERTIFICATE"));
        assert!(
            s.validate_update_via(Some("status"), &issued, &approved)
                .is_empty()
        );
        let refused = s.validate_update_via(Some("approval"), &issued, &approved);
        assert!(refused[0].to_string().contains("may not set certificate"));
        let mut reissued = issued.clone();
        reissued["status"]["certificate"] = json!(
            STANDARD.encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        );
        let refused = s.validate_update_via(Some("status"), &reissued, &issued);
        assert!(refused[0].to_string().contains("may not modify existing"));
    }

    #[test]
    fn an_update_keeps_the_spec_and_names_fit_in_paths() {
        let s = &CERTIFICATE_SIGNING_REQUESTS;
        let old = csr();
        let mut new = csr();
        new["spec"]["signerName"] = json!("example.com/other");
        s.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"], old["spec"]);
        assert!(s.validate_name("node-csr-Abc_1:x").is_empty());
        assert_eq!(s.validate_name("a/b").len(), 1);
        assert_eq!(s.validate_name("..").len(), 1);
    }
}
