//! CustomResourceDefinitions as objects: creating or updating one starts
//! serving its resources (with `Established` and `NamesAccepted` reported
//! in its status, which `kubectl wait` reads); deleting one stops serving
//! them and deletes their objects, as the API server does.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::{Store, now};

impl Store {
    pub(super) fn crd_stored(&mut self, obj: &mut Value) {
        let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(obj.clone()) else {
            return;
        };
        let group_prefix = format!("apis/{}/", crd.spec.group);
        let plural = crd.spec.names.plural.clone();
        self.types
            .retain(|(p, pl), _| !(p.starts_with(&group_prefix) && *pl == plural));
        self.register_crd(&crd);
        let since = obj["status"]["conditions"][0]["lastTransitionTime"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(now);
        let cond = |t: &str, reason: &str| json!({"type": t, "status": "True", "reason": reason, "message": "", "lastTransitionTime": since});
        obj["status"] = json!({
            "acceptedNames": obj["spec"]["names"],
            "conditions": [cond("NamesAccepted", "NoConflicts"), cond("Established", "InitialNamesAccepted")],
            "storedVersions": crd.spec.versions.iter().filter(|v| v.storage).map(|v| v.name.clone()).collect::<Vec<_>>(),
        });
    }

    pub(super) fn crd_removed(&mut self, obj: &Value) {
        let (Some(group), Some(plural)) = (obj["spec"]["group"].as_str(), obj["spec"]["names"]["plural"].as_str())
        else {
            return;
        };
        let group_prefix = format!("apis/{group}/");
        self.types
            .retain(|(p, pl), _| !(p.starts_with(&group_prefix) && pl == plural));
        let gone: Vec<_> = self
            .objects
            .keys()
            .filter(|k| k.0.starts_with(&group_prefix) && k.1 == plural)
            .cloned()
            .collect();
        for k in gone {
            self.objects.remove(&k);
        }
    }
}
