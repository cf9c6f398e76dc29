//! `whalewatcher-bollard-peer SOCKET [serial]`: lists the running and paused containers of the
//! Docker API at SOCKET and inspects each (concurrently, or one after another with `serial`),
//! then prints `N alive` — the work `whalewatch ps` does, the way an async agent does it.
use std::collections::HashMap;

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::future::join_all;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let socket = args.next().expect("usage: whalewatcher-bollard-peer SOCKET [serial]");
    let serial = args.next().as_deref() == Some("serial");
    let socket = socket.strip_prefix("unix://").unwrap_or(&socket).to_string();
    let docker = Docker::connect_with_unix(&socket, 30, bollard::API_DEFAULT_VERSION)
        .expect("cannot connect");
    let mut filters = HashMap::new();
    filters.insert("status".to_string(), vec!["running".to_string(), "paused".to_string()]);
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build()))
        .await
        .expect("list failed");
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    let mut alive = 0usize;
    if serial {
        for id in &ids {
            if let Ok(c) = docker.inspect_container(id, None::<InspectContainerOptions>).await {
                alive += usize::from(c.state.and_then(|s| s.pid).unwrap_or(0) != 0);
            }
        }
    } else {
        let all = join_all(
            ids.iter()
                .map(|id| docker.inspect_container(id, None::<InspectContainerOptions>)),
        )
        .await;
        for c in all.into_iter().flatten() {
            alive += usize::from(c.state.and_then(|s| s.pid).unwrap_or(0) != 0);
        }
    }
    println!("{alive} alive");
}
