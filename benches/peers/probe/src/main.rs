//! `whalewatcher-probe SOCKET list|ready`: lists the alive containers of the Docker API at
//! SOCKET once through `DockerClient::list` (`list`), or starts a watcher and waits until it
//! is Ready (`ready`), then prints `N alive` — the counterpart of the bollard peer.
//! `WHALEWATCHER_INSPECT_CONNECTIONS` and `WHALEWATCHER_PIPELINE_DEPTH` override the
//! client's defaults (for tuning them); `WHALEWATCHER_NO_IDENTITY=1` makes the client
//! `without_identity()` (no `/info`).
use std::time::Duration;

use whalewatcher::docker::DockerClient;
use whalewatcher::{EngineClient, Watcher, WatcherOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let socket = args.next().expect("usage: whalewatcher-probe SOCKET list|ready");
    let mode = args.next().unwrap_or_else(|| "list".into());
    let mut client = DockerClient::new(Some(&socket)).expect("bad endpoint");
    // Tuning runs (benches/scale.sh): connections and pipeline depth of the inspects.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = env("WHALEWATCHER_INSPECT_CONNECTIONS") {
        client = client.with_inspect_concurrency(n);
    }
    if let Some(n) = env("WHALEWATCHER_PIPELINE_DEPTH") {
        client = client.with_pipeline_depth(n);
    }
    if env("WHALEWATCHER_NO_IDENTITY") == Some(1) {
        client = client.without_identity();
    }
    let alive = match mode.as_str() {
        "list" => client.list().expect("list failed").len(),
        "ready" => {
            let w = Watcher::new(client, WatcherOptions::default());
            w.wait_ready(Duration::from_secs(60)).expect("not ready");
            // Time to Ready is what is measured: the process ends here, as the peer's does
            // after its last inspect (closing would add the threads' joins).
            println!("{} alive", w.portfolio().len());
            std::process::exit(0)
        }
        m => panic!("unknown mode {m}"),
    };
    println!("{alive} alive");
}
