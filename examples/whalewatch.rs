//! `whalewatch`: print or stream the alive containers of Docker, Podman, containerd and
//! CRI engines, given by address or discovered (`--auto`).
//!
//! ```text
//! whalewatch [--docker URL]... [--containerd PATH]... [--cri PATH]... COMMAND
//! whalewatch --auto [--with-cri] COMMAND
//!   ps [--json] | events [--json] [--count N] [--since SEQ] | watch | stats [--json]
//! ```
//!
//! Errors are one line on stderr starting with `whalewatch:`, and exit status 1.
#![forbid(unsafe_code)]

#[path = "whalewatch/args.rs"]
mod args;
#[path = "whalewatch/output.rs"]
mod output;
#[path = "whalewatch/stats.rs"]
mod stats;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use args::{Args, Command, EngineSpec};
use whalewatcher::discover::{DiscoverOptions, Found};
use whalewatcher::docker::DockerClient;
use whalewatcher::fleet::{EngineState, Fleet, FleetItem, FleetOptions};
use whalewatcher::{
    Container, ContainerEvent, EngineClient, Health, Item, Watcher, WatcherOptions,
};

/// How long `ps`, `events` and `watch` wait for the first complete picture.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// One watched engine.
#[derive(Clone)]
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

/// The engines given on the command line, or the discovered fleet.
enum Set {
    Fixed(Vec<Engine>),
    Auto(Fleet),
}

impl Set {
    /// The engines watched now.
    fn engines(&self) -> Vec<Engine> {
        match self {
            Set::Fixed(e) => e.clone(),
            Set::Auto(fleet) => fleet
                .watchers()
                .into_iter()
                .map(|(found, watcher)| Engine {
                    label: found_label(&found),
                    watcher,
                })
                .collect(),
        }
    }
}

/// `docker /run/docker.sock (pid 42)`.
fn found_label(f: &Found) -> String {
    match f.pid {
        Some(pid) => format!("{} {} (pid {pid})", f.kind.as_str(), f.api_path),
        None => format!("{} {}", f.kind.as_str(), f.api_path),
    }
}

fn run(args: Args) -> Result<(), String> {
    let set = if args.auto {
        auto(args.with_cri)?
    } else {
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
        Set::Fixed(engines)
    };
    match args.command {
        Command::Ps { json } => ps(&set.engines(), json),
        Command::Events { json, count, since } => events(&set, json, count, since),
        Command::Watch => watch(&set),
        Command::Stats { json } => stats(&set, json),
        Command::Help => Ok(()),
    }
}

/// Discovers the engines and waits (at most [`SYNC_TIMEOUT`] in all) for each to sync; an
/// engine that does not is reported on stderr and left out of the picture until it does.
fn auto(with_cri: bool) -> Result<Set, String> {
    let fleet = Fleet::new(FleetOptions {
        discover: DiscoverOptions::default().with_cri_for_containerd(with_cri),
        watcher: WatcherOptions {
            name: "whalewatch".into(),
            ..WatcherOptions::default()
        },
        ..FleetOptions::default()
    });
    let found = fleet.watchers();
    if found.is_empty() {
        return Err("--auto found no container engine (no dockerd, containerd, crio or podman process with a socket, no DOCKER_HOST, CONTAINERD_ADDRESS or CONTAINER_RUNTIME_ENDPOINT, no well-known socket)".into());
    }
    // Poll the fleet, not each watcher: an engine that vanishes meanwhile (a short-lived
    // engine, found just before it ended) is no reason to wait.
    let deadline = std::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let waiting: Vec<(Found, Arc<Watcher>)> = fleet
            .watchers()
            .into_iter()
            .filter(|(_, w)| !matches!(w.health(), Health::Synced | Health::Failed(_)))
            .collect();
        if waiting.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            for (f, w) in waiting {
                eprintln!(
                    "whalewatch: warning: {}: not synced after {SYNC_TIMEOUT:?}: {}",
                    found_label(&f),
                    health_word(w.health())
                );
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (f, w) in fleet.watchers() {
        if let Health::Failed(err) = w.health() {
            eprintln!("whalewatch: warning: {}: {err}", found_label(&f));
        }
    }
    Ok(Set::Auto(fleet))
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

fn merged(set: &Set, since: Option<u64>) -> crossbeam_channel::Receiver<Merged> {
    // Bounded: when stdout stalls, the forwarders block, their subscriptions lag, and they
    // catch up from the journal (with a warning) instead of piling events up in memory.
    let (tx, rx) = crossbeam_channel::bounded(1024);
    match set {
        Set::Fixed(engines) => {
            for e in engines {
                forward(e.label.clone(), e.watcher.clone(), since, tx.clone());
            }
        }
        Set::Auto(fleet) => forward_fleet(fleet, tx),
    }
    rx
}

/// Forwards the fleet's merged stream (which resumes lagging engines by itself); engines
/// attached or vanished later are noted on stderr.
fn forward_fleet(fleet: &Fleet, tx: crossbeam_channel::Sender<Merged>) {
    let mut sub = fleet.subscribe();
    std::thread::spawn(move || loop {
        match sub.recv() {
            Some(FleetItem::Event(e)) => {
                if tx.send(Merged::Event(e)).is_err() {
                    return;
                }
            }
            Some(FleetItem::Attached(f)) => {
                eprintln!("whalewatch: engine attached: {}", found_label(&f));
            }
            Some(FleetItem::Vanished(f)) => {
                eprintln!("whalewatch: engine vanished: {}", found_label(&f));
            }
            Some(FleetItem::Lagged {
                engine,
                missed,
                resume_seq,
            }) => eprintln!(
                "whalewatch: warning: {}: fell behind ({missed} events), replaying from #{resume_seq}",
                found_label(&engine)
            ),
            Some(FleetItem::Gap { engine, from, to }) => eprintln!(
                "whalewatch: warning: {}: events #{from}..=#{to} are lost (no longer in the journal)",
                found_label(&engine)
            ),
            None => {
                let _ = tx.send(Merged::Ended("the engine fleet".into()));
                return;
            }
        }
    });
}

fn events(set: &Set, json: bool, count: Option<u64>, since: Option<u64>) -> Result<(), String> {
    if count == Some(0) {
        return Ok(());
    }
    let rx = merged(set, since);
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
    let h = health_word(e.watcher.health());
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

/// Health lines of the engines that a fleet saw vanish.
fn vanished_lines(set: &Set) -> Vec<String> {
    let Set::Auto(fleet) = set else {
        return Vec::new();
    };
    fleet
        .engines()
        .into_iter()
        .filter_map(|s| match s.state {
            EngineState::Vanished { since } => Some(format!(
                "{}: vanished at {}",
                found_label(&s.found),
                whalewatcher::event::rfc3339_nanos(since)
            )),
            EngineState::Attached(_) => None,
        })
        .collect()
}

fn health_word(h: Health) -> String {
    match h {
        Health::Connecting => "connecting".to_string(),
        Health::Syncing => "syncing".to_string(),
        Health::Synced => "synced".to_string(),
        Health::Reconnecting { last_error, .. } => format!("reconnecting ({last_error})"),
        Health::Failed(err) => format!("failed ({err})"),
    }
}

fn stats(set: &Set, json: bool) -> Result<(), String> {
    let engines = set.engines();
    if json {
        let all: Vec<serde_json::Value> = engines
            .iter()
            .map(|e| {
                stats::metrics_json(
                    &e.label,
                    &health_word(e.watcher.health()),
                    e.watcher.portfolio().len(),
                    &e.watcher.metrics(),
                )
            })
            .collect();
        let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        emit(&format!("{text}\n"));
    } else {
        for e in &engines {
            emit(&stats::metrics_text(
                &e.label,
                &health_word(e.watcher.health()),
                e.watcher.portfolio().len(),
                &e.watcher.metrics(),
            ));
        }
        for line in vanished_lines(set) {
            emit(&format!("{line}\n"));
        }
    }
    Ok(())
}

fn watch(set: &Set) -> Result<(), String> {
    let rx = merged(set, None);
    loop {
        let engines = set.engines();
        let mut screen = String::from("\x1b[2J\x1b[H");
        screen.push_str(&output::ps_table(&all_containers(&engines)));
        screen.push('\n');
        for e in &engines {
            screen.push_str(&health_line(e));
            screen.push('\n');
        }
        for line in vanished_lines(set) {
            screen.push_str(&line);
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
