// @generated

pub mod containerd_containers;
pub mod containerd_events;
pub mod containerd_introspection;
pub mod containerd_namespaces;
pub mod containerd_task_events;
pub mod containerd_task_types;
pub mod containerd_tasks;
pub mod containerd_version;
pub mod cri_api;
