//! Persistent volumes and their claims: `Pending` when made, and a claim stays
//! bound to the volume it was given.

use serde_json::{Value, json};

use super::{InitialStatus, Strategy, immutable};
use crate::field::FieldError;

/// The strategy of persistent volumes.
pub(crate) static PERSISTENT_VOLUMES: InitialStatus = InitialStatus(pending);

/// Persistent volume claims.
#[derive(Debug)]
pub(crate) struct PersistentVolumeClaims;

/// The strategy of persistent volume claims.
pub(crate) static PERSISTENT_VOLUME_CLAIMS: PersistentVolumeClaims = PersistentVolumeClaims;

impl Strategy for PersistentVolumeClaims {
    fn reset_status(&self, claim: &mut Value) {
        claim["status"] = pending();
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, &["/spec/volumeName"])
    }
}

fn pending() -> Value {
    json!({"phase": "Pending"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_keeps_its_volume() {
        let old = json!({"spec": {"volumeName": "pv-1"}});
        let new = json!({"spec": {"volumeName": "pv-2"}});
        let errors = PERSISTENT_VOLUME_CLAIMS.validate_update(&new, &old);
        assert_eq!(errors[0].field, "spec.volumeName");
        let unbound = json!({"spec": {}});
        assert!(
            PERSISTENT_VOLUME_CLAIMS
                .validate_update(&new, &unbound)
                .is_empty()
        );
    }
}
