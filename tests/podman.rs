//! DockerClient against the real podman service from tests/engines (WHALEWATCHER_PODMAN).
#![cfg(feature = "docker")]

mod support;

use support::cli::Cli;

fn podman() -> Option<Cli> {
    Cli::shared_podman()
}

#[test]
fn list_equals_ground_truth() {
    if let Some(e) = podman() {
        support::docker_api::list_equals_ground_truth(&e);
    }
}

#[test]
fn inspect_found_not_found_processless() {
    if let Some(e) = podman() {
        support::docker_api::inspect_cases(&e);
    }
}

#[test]
fn inspect_of_exited_containers_says_how_they_ended() {
    if let Some(e) = podman() {
        support::docker_api::inspect_exits(&e);
    }
}

#[test]
fn info_matches_podman_info() {
    if let Some(e) = podman() {
        support::docker_api::info_matches(&e);
    }
}

#[test]
fn lifecycle_events_each_once_in_order() {
    if let Some(e) = podman() {
        support::docker_api::lifecycle_events(&e);
    }
}
