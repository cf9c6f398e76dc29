//! `Serialize` for the plain data types (feature `serde`), written out: a few field lists
//! do not justify a proc-macro stack (serde_derive and syn) in every user's build. The
//! impls are of `serde_core::Serialize`, the very trait that `serde` re-exports.
//!
//! The types with a JSON form of their own (containers, events, portfolios: the
//! `whalewatch` schemas) implement it beside their definitions.
#![forbid(unsafe_code)]

use serde_core::ser::{Serialize, SerializeStruct, Serializer};

use crate::container::EngineRef;
use crate::discover::{Found, Source};
use crate::engine::EngineInfo;
use crate::watcher::{Latency, Metrics};

/// `impl Serialize` for a struct as a JSON object of the listed fields, in order;
/// `field as "name"` renames one.
macro_rules! object {
    ($ty:ident { $($field:ident $(as $name:literal)?),+ $(,)? }) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let fields = [$(stringify!($field)),+].len();
                let mut st = s.serialize_struct(stringify!($ty), fields)?;
                $( st.serialize_field(object!(@name $field $($name)?), &self.$field)?; )+
                st.end()
            }
        }
    };
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident $name:literal) => { $name };
}

/// `impl Serialize` for a field-less enum as the lowercase variant name.
macro_rules! lowercase {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (index, name) = match self {
                    $( $ty::$variant => ($ty::$variant as u32, $name), )+
                };
                s.serialize_unit_variant(stringify!($ty), index, name)
            }
        }
    };
}

object!(EngineInfo { id, kind as "type", version, api_path, pid, mode });
object!(EngineRef { kind as "type", id });
/// `kind` as the short name (`"docker"`, ..., [`EngineKind::name`](crate::EngineKind::name)), as before `Found`
/// had an [`EngineKind`](crate::EngineKind).
impl Serialize for Found {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Found", 6)?;
        st.serialize_field("kind", self.kind.name())?;
        st.serialize_field("api_path", &self.api_path)?;
        st.serialize_field("pid", &self.pid)?;
        st.serialize_field("inode", &self.inode)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("managed_by", &self.managed_by)?;
        st.end()
    }
}
object!(Latency {
    count,
    min,
    avg,
    max
});
object!(Metrics {
    started,
    exited,
    paused,
    unpaused,
    raw_events,
    resyncs,
    reconnect_attempts,
    list,
    inspect,
    subscribers,
    lagged_subscribers,
    last_event,
});
lowercase!(Source { Process => "process", Env => "env", WellKnown => "wellknown" });

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::engine::EngineKind;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// The same JSON as `#[derive(Serialize)]` (with its renames) gave.
    #[test]
    fn the_json_forms() {
        let info = EngineInfo {
            id: "i".into(),
            kind: EngineKind::Docker,
            version: "20".into(),
            api_path: "unix:///x".into(),
            pid: Some(7),
            mode: String::new(),
        };
        assert_eq!(
            json(&info),
            r#"{"id":"i","type":"docker.com","version":"20","api_path":"unix:///x","pid":7,"mode":""}"#
        );
        let r = EngineRef {
            kind: EngineKind::Podman,
            id: "pid".into(),
        };
        assert_eq!(json(&r), r#"{"type":"podman.io","id":"pid"}"#);
        let f = Found {
            kind: EngineKind::Cri,
            api_path: "/run/crio".into(),
            pid: None,
            inode: Some(9),
            source: Source::WellKnown,
            managed_by: Some(3),
        };
        assert_eq!(
            json(&f),
            r#"{"kind":"cri","api_path":"/run/crio","pid":null,"inode":9,"source":"wellknown","managed_by":3}"#
        );
        assert_eq!(
            json(&EngineKind::ALL),
            r#"["docker.com","podman.io","containerd.io","k8s.io/cri-api"]"#
        );
        for k in EngineKind::ALL {
            let back: EngineKind = serde_json::from_str(&json(&k)).unwrap();
            assert_eq!(back, k);
            assert_eq!(k.name().parse::<EngineKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert!(serde_json::from_str::<EngineKind>(r#""docker.io""#).is_err());
        assert!("".parse::<EngineKind>().is_err());
        assert_eq!(
            json(&[Source::Process, Source::Env, Source::WellKnown]),
            r#"["process","env","wellknown"]"#
        );
        let m = Metrics {
            started: 1,
            exited: 2,
            paused: 3,
            unpaused: 4,
            raw_events: 5,
            resyncs: 6,
            reconnect_attempts: 7,
            list: Latency {
                count: 2,
                min: Duration::from_micros(1500),
                avg: Duration::from_millis(2),
                max: Duration::new(3, 7),
            },
            inspect: Latency::default(),
            subscribers: 8,
            lagged_subscribers: 9,
            last_event: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
        };
        assert_eq!(
            json(&m),
            concat!(
                r#"{"started":1,"exited":2,"paused":3,"unpaused":4,"raw_events":5,"resyncs":6,"#,
                r#""reconnect_attempts":7,"list":{"count":2,"min":{"secs":0,"nanos":1500000},"#,
                r#""avg":{"secs":0,"nanos":2000000},"max":{"secs":3,"nanos":7}},"inspect":"#,
                r#"{"count":0,"min":{"secs":0,"nanos":0},"avg":{"secs":0,"nanos":0},"#,
                r#""max":{"secs":0,"nanos":0}},"subscribers":8,"lagged_subscribers":9,"#,
                r#""last_event":{"secs_since_epoch":1700000000,"nanos_since_epoch":5}}"#
            )
        );
    }
}
