//! Pure conversions from CRI messages to the crate's [`Container`] model.
//!
//! Label scheme (as in the Go original `thediveo/whalewatcher/engineclient/cri`): the
//! CRI labels are kept as they are, annotations are added with the key prefix
//! [`ANNOTATION_KEY_PREFIX`], and the pod metadata is added under the `io.kubernetes.*`
//! keys below. Pod sandboxes are listed as containers too: id and name are the sandbox
//! id, and they carry [`SANDBOX_LABEL`]. CRI knows no composer project (always `""`) and
//! no pausing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::container::Container;
use crate::engine::ExitStatus;
use crate::error::{Error, Result};
use crate::proto::cri_api::ContainerStatus;

/// Prefix of annotation keys mapped into the labels (as in the Go original).
pub const ANNOTATION_KEY_PREFIX: &str = "annotation.k8s/";
/// Label with the name of a container's pod.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label with the namespace of a container's pod.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label with the UID of a container's pod.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label with the container's name inside its pod.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Marker label (value `"true"`) on pod sandboxes listed as containers.
pub const SANDBOX_LABEL: &str = "io.kubernetes.sandbox";

/// Longest `info` JSON accepted from a verbose status (bounded parsing).
const MAX_INFO_LEN: usize = 16 << 20;

/// The pod metadata of a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodMeta {
    pub name: String,
    pub uid: String,
    pub namespace: String,
}

/// A container's label pairs before the marker label is added and they become
/// [`Labels`](crate::Labels)
/// (borrowed from the status message where they can be).
pub(crate) type LabelPairs<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The label pairs of a container or sandbox: labels, prefixed annotations, pod metadata,
/// in that order of precedence (a later pair with the same key wins, as before with a map).
pub(crate) fn build_labels<'a>(
    labels: &'a HashMap<String, String>,
    annotations: &'a HashMap<String, String>,
    pod: &'a PodMeta,
) -> LabelPairs<'a> {
    let mut out = Vec::with_capacity(labels.len() + annotations.len() + 4);
    out.extend(
        labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_str())),
    );
    out.extend(annotations.iter().map(|(k, v)| {
        (
            Cow::Owned(format!("{ANNOTATION_KEY_PREFIX}{k}")),
            v.as_str(),
        )
    }));
    out.extend([
        (Cow::Borrowed(POD_NAME_LABEL), pod.name.as_str()),
        (Cow::Borrowed(POD_NAMESPACE_LABEL), pod.namespace.as_str()),
        (Cow::Borrowed(POD_UID_LABEL), pod.uid.as_str()),
    ]);
    out
}

/// The PID in a verbose status' `info["info"]` JSON (`{"pid": 1234, ...}`).
pub(crate) fn pid_from_info(id: &str, info: &HashMap<String, String>) -> Result<u32> {
    let raw = info
        .get("info")
        .ok_or_else(|| Error::protocol("cri", format!("{id}: verbose status has no info")))?;
    if raw.len() > MAX_INFO_LEN {
        return Err(Error::protocol("cri", format!("{id}: info JSON too large")));
    }
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| Error::protocol("json", format!("{id}: info is not JSON: {e}")))?;
    let pid = v
        .get("pid")
        .and_then(|p| p.as_u64())
        .ok_or_else(|| Error::protocol("cri", format!("{id}: info JSON has no integer pid")))?;
    match u32::try_from(pid) {
        Ok(0) => Err(Error::Processless { id: id.into() }),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::protocol(
            "cri",
            format!("{id}: pid {pid} out of range"),
        )),
    }
}

/// Nanoseconds since the epoch (CRI timestamps) as a time; `None` for 0 or negative.
pub(crate) fn time_from_nanos(ns: i64) -> Option<SystemTime> {
    (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// The reason a runtime gives for a container the OOM killer ended.
pub(crate) const OOM_REASON: &str = "OOMKilled";

/// How an exited container's process ended, from its CRI status: the exit code when the
/// runtime recorded a finish time (`exit_code` is 0 too when it knows nothing), the OOM
/// flag from the reason, and the finish time.
pub(crate) fn exit_status(st: &ContainerStatus) -> ExitStatus {
    let time = time_from_nanos(st.finished_at);
    ExitStatus {
        exit_code: time.map(|_| st.exit_code),
        oom: st.reason == OOM_REASON,
        time,
    }
}

/// A pod's container.
pub(crate) fn container<'a>(
    id: &str,
    name: &'a str,
    pid: u32,
    mut labels: LabelPairs<'a>,
    image: &str,
    started_at: Option<SystemTime>,
) -> Container {
    labels.push((Cow::Borrowed(CONTAINER_NAME_LABEL), name));
    Container {
        id: id.into(),
        name: name.into(),
        pid,
        labels: labels.into_iter().collect(),
        project: String::new(),
        paused: false,
        image: image.into(),
        started_at,
        ..Default::default()
    }
}

/// A pod sandbox as a container: named by its id, marked with [`SANDBOX_LABEL`].
pub(crate) fn sandbox(
    id: &str,
    pid: u32,
    mut labels: LabelPairs<'_>,
    created_at: Option<SystemTime>,
) -> Container {
    labels.push((Cow::Borrowed(SANDBOX_LABEL), "true"));
    Container {
        id: id.into(),
        name: id.into(),
        pid,
        labels: labels.into_iter().collect(),
        project: String::new(),
        paused: false,
        started_at: created_at,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    fn info(s: &str) -> HashMap<String, String> {
        HashMap::from([("info".to_string(), s.to_string())])
    }

    #[test]
    fn pid_parsing() {
        assert_eq!(
            pid_from_info("c", &info(r#"{"pid": 42, "x": [1]}"#)),
            Ok(42)
        );
        assert!(matches!(
            pid_from_info("c", &info(r#"{"pid": 0}"#)),
            Err(Error::Processless { .. })
        ));
        for bad in [
            r#"{"pid": "1"}"#,
            r#"{"pid": -1}"#,
            "nope",
            r#"{"pid": 99999999999}"#,
        ] {
            assert!(matches!(
                pid_from_info("c", &info(bad)),
                Err(Error::Protocol { .. })
            ));
        }
        assert!(pid_from_info("c", &HashMap::new()).is_err());
    }

    #[test]
    fn labels_and_sandbox_marker() {
        let pod = PodMeta {
            name: "p".into(),
            uid: "u".into(),
            namespace: "ns".into(),
        };
        let labels = HashMap::from([("a".into(), "1".into())]);
        let annotations = HashMap::from([("note".into(), "n".into())]);
        let l = build_labels(&labels, &annotations, &pod);
        let c = container("id1", "web", 7, l.clone(), "img", None);
        let want = Labels::from([
            ("a", "1"),
            ("annotation.k8s/note", "n"),
            (POD_NAME_LABEL, "p"),
            (POD_NAMESPACE_LABEL, "ns"),
            (POD_UID_LABEL, "u"),
            (CONTAINER_NAME_LABEL, "web"),
        ]);
        assert_eq!(c.labels, want);
        assert_eq!(c.project, "");
        let s = sandbox("sb", 8, l, None);
        assert_eq!(s.name, "sb");
        assert_eq!(s.labels.get(SANDBOX_LABEL), Some("true"));
        assert!(!s.labels.contains_key(CONTAINER_NAME_LABEL));
        assert_eq!(s.labels.len(), 6);
    }

    /// Annotations win over labels of the same (prefixed) key, pod metadata over both,
    /// the marker over everything: as when they were inserted into a map in that order.
    #[test]
    fn label_precedence() {
        let pod = PodMeta {
            name: "p".into(),
            uid: "u".into(),
            namespace: "ns".into(),
        };
        let labels = HashMap::from([
            ("annotation.k8s/x".into(), "label".into()),
            (POD_NAME_LABEL.into(), "label".into()),
            (SANDBOX_LABEL.into(), "label".into()),
            (CONTAINER_NAME_LABEL.into(), "label".into()),
        ]);
        let annotations = HashMap::from([("x".into(), "annotation".into())]);
        let l = build_labels(&labels, &annotations, &pod);
        let c = container("id1", "web", 7, l.clone(), "img", None);
        assert_eq!(c.labels.get("annotation.k8s/x"), Some("annotation"));
        assert_eq!(c.labels.get(POD_NAME_LABEL), Some("p"));
        assert_eq!(c.labels.get(CONTAINER_NAME_LABEL), Some("web"));
        assert_eq!(c.labels.get(SANDBOX_LABEL), Some("label"));
        let s = sandbox("sb", 8, l, None);
        assert_eq!(s.labels.get(SANDBOX_LABEL), Some("true"));
        assert_eq!(s.labels.get(CONTAINER_NAME_LABEL), Some("label"));
    }

    #[test]
    fn exit_status_from_container_status() {
        let mut st = ContainerStatus::new();
        assert_eq!(exit_status(&st), ExitStatus::default());
        st.exit_code = 3;
        // No finish time: the runtime does not know the code.
        assert_eq!(exit_status(&st).exit_code, None);
        st.finished_at = 2_000_000_000;
        st.reason = OOM_REASON.into();
        assert_eq!(
            exit_status(&st),
            ExitStatus {
                exit_code: Some(3),
                oom: true,
                time: Some(UNIX_EPOCH + Duration::from_secs(2)),
            }
        );
        st.reason = "Error".into();
        assert!(!exit_status(&st).oom);
    }

    #[test]
    fn timestamps() {
        assert_eq!(time_from_nanos(0), None);
        assert_eq!(time_from_nanos(-5), None);
        assert_eq!(
            time_from_nanos(1_500_000_000),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
    }
}
