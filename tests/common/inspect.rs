//! Ground truth from `docker inspect` JSON.

use std::collections::BTreeMap;

use serde_json::Value;
use whalewatcher::container::PRIVILEGED_LABEL;

/// The labels a Docker container should carry in the portfolio: its config labels, plus
/// the privileged marker label for privileged containers.
pub fn docker_labels(v: &Value) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = v["Config"]["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    if v["HostConfig"]["Privileged"].as_bool() == Some(true) {
        labels.insert(PRIVILEGED_LABEL.to_string(), String::new());
    }
    labels
}
