//! `whalewatch`: print or stream the alive containers of Docker, Podman, containerd and
//! CRI engines, given by address or discovered (`--auto`).
//!
//! ```text
//! whalewatch [--docker URL]... [--containerd PATH]... [--cri PATH]... COMMAND
//! whalewatch --auto [--with-cri] COMMAND
//!   ps [--json] | events [--json] [--count N] [--since SEQ] | watch | stats [--json]
//! ```
//!
//! `ps` lists each engine once through its client and opens no event stream (an
//! abandoned stream costs some engines an event: containerd 1.7's CRI). Errors are one
//! line on stderr starting with `whalewatch:`, and exit status 1.
#![forbid(unsafe_code)]

mod args;
mod output;
mod stats;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use args::{Args, Command, EngineSpec};
use whalewatcher::discover::{discover, DiscoverOptions, Found};
use whalewatcher::fleet::{EngineState, Fleet, FleetItem, FleetOptions};
use whalewatcher::{
    Container, ContainerEvent, EngineClient, EngineKind, Health, Item, Watcher, WatcherOptions,
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
        Some(pid) => format!("{} {} (pid {pid})", f.kind.name(), f.api_path),
        None => format!("{} {}", f.kind.name(), f.api_path),
    }
}

fn run(args: Args) -> Result<(), String> {
    // A one-shot listing asks each engine once and opens no event stream (an abandoned
    // stream costs the engine: containerd 1.7's CRI hands its next event to it).
    if let Command::Ps { json } = args.command {
        let engines = if args.auto {
            discovered(args.with_cri)?
        } else {
            args.engines
                .iter()
                .map(ps_client)
                .collect::<Result<Vec<_>, String>>()?
        };
        return ps(&engines, json, !args.auto);
    }
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
        Command::Events { json, count, since } => events(&set, json, count, since),
        Command::Watch => watch(&set),
        Command::Stats { json } => stats(&set, json),
        Command::Ps { .. } | Command::Help => Ok(()),
    }
}

/// An engine's client with its label for messages (`docker unix:///...`).
/// An engine's label for messages, its client and its kind.
type Labelled = (String, Box<dyn EngineClient>, EngineKind);

/// The message when `--auto` finds nothing.
const NOTHING_FOUND: &str = "--auto found no container engine (no dockerd, containerd, crio or podman process with a socket, no DOCKER_HOST, CONTAINERD_ADDRESS or CONTAINER_RUNTIME_ENDPOINT, no well-known socket)";

/// The discovered engines' clients, for a one-shot listing.
fn discovered(with_cri: bool) -> Result<Vec<Labelled>, String> {
    let found = discover(&DiscoverOptions::default().with_cri_for_containerd(with_cri));
    if found.is_empty() {
        return Err(NOTHING_FOUND.into());
    }
    let mut out = Vec::new();
    for f in found {
        match f.client() {
            Ok(c) => out.push((found_label(&f), c, f.kind)),
            Err(e) => eprintln!("whalewatch: warning: {}: {e}", found_label(&f)),
        }
    }
    Ok(out)
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
        return Err(NOTHING_FOUND.into());
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

/// The client of an engine given on the command line, with its label for messages. For a
/// one-shot listing (`one_shot`) a Docker client does not ask `/info` (the listing shows no
/// engine id, and dockerd runs two external commands per `/info`).
fn client(spec: &EngineSpec, one_shot: bool) -> Result<Labelled, String> {
    let (kind, endpoint) = match spec {
        EngineSpec::Docker(url) => (EngineKind::Docker, url.as_deref()),
        EngineSpec::Containerd(path) => (EngineKind::Containerd, Some(path.as_str())),
        EngineSpec::Cri(path) => (EngineKind::Cri, Some(path.as_str())),
    };
    let label = format!(
        "{} {}",
        kind.name(),
        endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "(default socket)".into())
    );
    let client: Box<dyn EngineClient> = match kind {
        EngineKind::Docker if one_shot => Box::new(
            whalewatcher::docker::DockerClient::new(endpoint)
                .map_err(|e| format!("{label}: {e}"))?
                .without_identity(),
        ),
        _ => whalewatcher::connect(kind, endpoint).map_err(|e| format!("{label}: {e}"))?,
    };
    Ok((label, client, kind))
}

/// The client of an engine given on the command line, for a one-shot listing; engines but
/// Docker are checked once, so that a wrong address fails with the engine's own answer
/// (a Docker listing fails the same way by itself).
fn ps_client(spec: &EngineSpec) -> Result<Labelled, String> {
    let (label, client, kind) = client(spec, true)?;
    if kind != EngineKind::Docker {
        client.info().map_err(|e| format!("{label}: {e}"))?;
    }
    Ok((label, client, kind))
}

/// Makes the client, checks once that the engine answers (so that a wrong address fails
/// at once instead of retrying), and starts its watcher.
fn connect(index: usize, spec: &EngineSpec) -> Result<Engine, String> {
    let (label, client, _) = client(spec, false)?;
    start(label, format!("whalewatch{index}"), client)
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

/// `ps`: lists each engine once, through its client (no watcher, no event stream). An
/// engine given on the command line that fails the listing fails the command; a
/// discovered one (`strict` false) is reported on stderr and left out.
fn ps(engines: &[Labelled], json: bool, strict: bool) -> Result<(), String> {
    let mut all: Vec<Arc<Container>> = Vec::new();
    let mut modes = Vec::new();
    for (label, client, kind) in engines {
        match client.list() {
            Ok(list) => all.extend(list),
            Err(e) if strict => return Err(format!("{label}: {e}")),
            Err(e) => {
                eprintln!("whalewatch: warning: {label}: {e}");
                continue;
            }
        }
        // The engine's event mode when it has one (CRI), as the watcher reports it.
        if *kind != EngineKind::Cri {
            continue;
        }
        if let Ok(i) = client.info() {
            if !i.mode.is_empty() {
                modes.push(format!("{label} ({} events)\n", i.mode));
            }
        }
    }
    output::sort(&mut all);
    if json {
        emit(&format!("{}\n", output::ps_json(&all)));
    } else {
        emit(&output::ps_table(&all));
        for m in modes {
            emit(&m);
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
            Some(seq) => watcher.subscribe_from(whalewatcher::Since::Seq(seq)),
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
                    sub = watcher
                        .subscribe_from(whalewatcher::Since::Seq(resume_seq.saturating_sub(1)));
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
    // Small: the subscriptions are the buffers (1,024 live events each); a bounded channel
    // allocates all its slots up front (1,024 were 64 KiB of the process's heap).
    let (tx, rx) = crossbeam_channel::bounded(64);
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
    let sub = fleet.subscribe();
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

/// The engine's event mode when it has one (CRI: "evented", "containerd-events" or
/// "relist"), as " (mode events)".
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
                output::rfc3339(since)
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
