//! DockerClient against the real podman service from tests/engines (WHALEWATCHER_PODMAN).
#![cfg(feature = "docker")]

mod common;
mod docker_shared;

use docker_shared::Engine;

fn podman() -> Option<Engine> {
    Engine::from_env(
        "WHALEWATCHER_PODMAN",
        "podman",
        "--url",
        whalewatcher::EngineKind::Podman,
    )
}

#[test]
fn list_equals_ground_truth() {
    if let Some(e) = podman() {
        docker_shared::list_equals_ground_truth(&e);
    }
}

#[test]
fn inspect_found_not_found_processless() {
    if let Some(e) = podman() {
        docker_shared::inspect_cases(&e);
    }
}

#[test]
fn inspect_of_exited_containers_says_how_they_ended() {
    if let Some(e) = podman() {
        docker_shared::inspect_exits(&e);
    }
}

#[test]
fn info_matches_podman_info() {
    if let Some(e) = podman() {
        docker_shared::info_matches(&e);
    }
}

#[test]
fn lifecycle_events_each_once_in_order() {
    if let Some(e) = podman() {
        docker_shared::lifecycle_events(&e);
    }
}
