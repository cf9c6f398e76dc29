//! `whalewatch`: print or stream the alive containers of Docker, Podman and containerd
//! engines.
//!
//! ```text
//! whalewatch [--docker URL]... [--containerd PATH]... COMMAND
//!   ps [--json] | events [--json] [--count N] [--since SEQ] | watch
//! ```
//!
//! Errors are one line on stderr starting with `whalewatch:`, and exit status 1.
#![forbid(unsafe_code)]

#[path = "whalewatch/args.rs"]
mod args;
#[path = "whalewatch/output.rs"]
mod output;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use args::{Args, Command, EngineSpec};
use whalewatcher::docker::DockerClient;
use whalewatcher::{
    Container, ContainerEvent, EngineClient, Health, Item, Watcher, WatcherOptions,
};

/// How long `ps`, `events` and `watch` wait for the first complete picture.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// One watched engine.
struct Engine {
    /// How the user named it, for messages: `docker unix:///...`.
    label: String,
    watcher: Arc<Watcher>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(msg) => return fail(&msg),
    };
    if args.command == Command::Help {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("whalewatch: {msg}");
    ExitCode::FAILURE
}

fn run(args: Args) -> Result<(), String> {
    let engines = args
        .engines
        .iter()
        .enumerate()
        .map(|(i, spec)| connect(i, spec))
        .collect::<Result<Vec<_>, _>>()?;
    for e in &engines {
        e.watcher
            .wait_ready(SYNC_TIMEOUT)
            .map_err(|err| format!("{}: {err}", e.label))?;
    }
    match args.command {
        Command::Ps { json } => ps(&engines, json),
        Command::Events { json, count, since } => events(&engines, json, count, since),
        Command::Watch => watch(&engines),
        Command::Help => Ok(()),
    }
}

/// Makes the client, checks once that the engine answers (so that a wrong address fails
/// at once instead of retrying), and starts its watcher.
fn connect(index: usize, spec: &EngineSpec) -> Result<Engine, String> {
    let name = format!("whalewatch{index}");
    match spec {
        EngineSpec::Docker(url) => {
            let label = format!(
                "docker {}",
                url.clone()
                    .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
                    .unwrap_or_else(|| "(default socket)".into())
            );
            let client = DockerClient::new(url.as_deref()).map_err(|e| format!("{label}: {e}"))?;
            start(label, name, client)
        }
        EngineSpec::Containerd(path) => containerd(name, path),
        EngineSpec::Cri(path) => cri(name, path),
    }
}

#[cfg(feature = "containerd")]
fn containerd(name: String, path: &str) -> Result<Engine, String> {
    let client = whalewatcher::containerd::ContainerdClient::new(path);
    start(format!("containerd {path}"), name, client)
}

#[cfg(not(feature = "containerd"))]
fn containerd(_name: String, _path: &str) -> Result<Engine, String> {
    Err("--containerd needs whalewatch built with the containerd feature".into())
}

#[cfg(feature = "cri")]
fn cri(name: String, path: &str) -> Result<Engine, String> {
    let client = whalewatcher::cri::CriClient::new(Some(path));
    start(format!("cri {path}"), name, client)
}

#[cfg(not(feature = "cri"))]
fn cri(_name: String, _path: &str) -> Result<Engine, String> {
    Err("--cri is not supported by this build (needs the cri feature)".into())
}

fn start(label: String, name: String, client: impl EngineClient) -> Result<Engine, String> {
    client.info().map_err(|e| format!("{label}: {e}"))?;
    let options = WatcherOptions {
        name,
        ..WatcherOptions::default()
    };
    Ok(Engine {
        label,
        watcher: Arc::new(Watcher::new(client, options)),
    })
}

/// Every engine's containers, sorted by engine, project, name.
fn all_containers(engines: &[Engine]) -> Vec<Arc<Container>> {
    let mut all: Vec<Arc<Container>> = engines
        .iter()
        .flat_map(|e| e.watcher.portfolio().iter().cloned().collect::<Vec<_>>())
        .collect();
    output::sort(&mut all);
    all
}

/// Writes `text` to stdout and flushes; a closed stdout (e.g. `| head`) ends the program
/// quietly.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn ps(engines: &[Engine], json: bool) -> Result<(), String> {
    let all = all_containers(engines);
    if json {
        emit(&format!("{}\n", output::ps_json(&all)));
    } else {
        emit(&output::ps_table(&all));
        for e in engines {
            let mode = engine_mode(e);
            if !mode.is_empty() {
                emit(&format!("{}{mode}\n", e.label));
            }
        }
    }
    Ok(())
}

/// What the forwarding threads pass to the main thread.
enum Merged {
    Event(ContainerEvent),
    /// A subscription ended for good (its watcher closed).
    Ended(String),
}

/// Forwards one watcher's subscription into `tx`, resubscribing from the journal after a
/// `Lagged` and warning about gaps.
fn forward(
    label: String,
    watcher: Arc<Watcher>,
    since: Option<u64>,
    tx: crossbeam_channel::Sender<Merged>,
) {
    std::thread::spawn(move || {
        let mut sub = match since {
            Some(seq) => watcher.subscribe_since(seq),
            None => watcher.subscribe(),
        };
        loop {
            match sub.recv() {
                Some(Item::Event(e)) => {
                    if tx.send(Merged::Event(e)).is_err() {
                        return;
                    }
                }
                Some(Item::Lagged { missed, resume_seq }) => {
                    eprintln!(
                        "whalewatch: warning: {label}: fell behind ({missed} events), replaying from #{resume_seq}"
                    );
                    sub = watcher.subscribe_since(resume_seq.saturating_sub(1));
                }
                Some(Item::Gap { from, to }) => {
                    eprintln!("whalewatch: warning: {label}: events #{from}..=#{to} are lost (no longer in the journal)");
                }
                None => {
                    let _ = tx.send(Merged::Ended(label));
                    return;
                }
            }
        }
    });
}

fn merged(engines: &[Engine], since: Option<u64>) -> crossbeam_channel::Receiver<Merged> {
    // Bounded: when stdout stalls, the forwarders block, their subscriptions lag, and they
    // catch up from the journal (with a warning) instead of piling events up in memory.
    let (tx, rx) = crossbeam_channel::bounded(1024);
    for e in engines {
        forward(e.label.clone(), e.watcher.clone(), since, tx.clone());
    }
    rx
}

fn events(
    engines: &[Engine],
    json: bool,
    count: Option<u64>,
    since: Option<u64>,
) -> Result<(), String> {
    if count == Some(0) {
        return Ok(());
    }
    let rx = merged(engines, since);
    let mut seen = 0u64;
    loop {
        match rx.recv() {
            Ok(Merged::Event(e)) => {
                let line = if json {
                    output::event_json(&e)
                } else {
                    output::event_line(&e)
                };
                emit(&format!("{line}\n"));
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    return Ok(());
                }
            }
            Ok(Merged::Ended(label)) => return Err(format!("{label}: the watcher stopped")),
            Err(_) => return Err("all watchers stopped".into()),
        }
    }
}

fn health_line(e: &Engine) -> String {
    let h = match e.watcher.health() {
        Health::Connecting => "connecting".to_string(),
        Health::Syncing => "syncing".to_string(),
        Health::Synced => "synced".to_string(),
        Health::Reconnecting { last_error, .. } => format!("reconnecting ({last_error})"),
        Health::Failed(err) => format!("failed ({err})"),
    };
    format!(
        "{}{}: {h}, {} containers",
        e.label,
        engine_mode(e),
        e.watcher.portfolio().len()
    )
}

/// The engine's event mode when it has one (CRI: "evented" or "relist"), as " (mode)".
fn engine_mode(e: &Engine) -> String {
    match e.watcher.engine_info() {
        Some(i) if !i.mode.is_empty() => format!(" ({} events)", i.mode),
        _ => String::new(),
    }
}

fn watch(engines: &[Engine]) -> Result<(), String> {
    let rx = merged(engines, None);
    loop {
        let mut screen = String::from("\x1b[2J\x1b[H");
        screen.push_str(&output::ps_table(&all_containers(engines)));
        screen.push('\n');
        for e in engines {
            screen.push_str(&health_line(e));
            screen.push('\n');
        }
        emit(&screen);
        // Refresh on every event, and every few seconds for the health line.
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Merged::Ended(label)) => return Err(format!("{label}: the watcher stopped")),
            Ok(Merged::Event(_)) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // Coalesce a burst into one redraw.
                while let Ok(m) = rx.try_recv() {
                    if let Merged::Ended(label) = m {
                        return Err(format!("{label}: the watcher stopped"));
                    }
                }
            }
            Err(_) => return Err("all watchers stopped".into()),
        }
    }
}
