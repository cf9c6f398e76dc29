//! DockerClient against the real dockerd from tests/engines (WHALEWATCHER_DOCKER).
#![cfg(feature = "docker")]

mod support;

use support::cli::Cli;

fn docker() -> Option<Cli> {
    Cli::shared_docker()
}

#[test]
fn list_equals_ground_truth() {
    if let Some(e) = docker() {
        support::docker_api::list_equals_ground_truth(&e);
    }
}

#[test]
fn inspect_found_not_found_processless() {
    if let Some(e) = docker() {
        support::docker_api::inspect_cases(&e);
    }
}

#[test]
fn inspect_of_exited_containers_says_how_they_ended() {
    if let Some(e) = docker() {
        support::docker_api::inspect_exits(&e);
    }
}

#[test]
fn info_matches_docker_info() {
    if let Some(e) = docker() {
        support::docker_api::info_matches(&e);
    }
}

#[test]
fn lifecycle_events_each_once_in_order() {
    if let Some(e) = docker() {
        support::docker_api::lifecycle_events(&e);
    }
}

#[test]
fn an_oom_kill_is_flagged_on_the_exit() {
    if let Some(e) = docker() {
        support::docker_api::oom_exit_is_flagged(&e);
    }
}

#[test]
fn a_missing_socket_is_a_connection_error_not_a_panic() {
    use whalewatcher::{EngineClient, Error};
    let c =
        whalewatcher::docker::DockerClient::new(Some("unix:///nonexistent/docker.sock")).unwrap();
    for r in [
        c.info().map(|_| ()),
        c.list().map(|_| ()),
        c.events().map(|_| ()),
    ] {
        match r {
            Err(Error::Connection { kind, .. }) => assert_eq!(kind, std::io::ErrorKind::NotFound),
            other => panic!("expected a connection error, got {other:?}"),
        }
    }
}
