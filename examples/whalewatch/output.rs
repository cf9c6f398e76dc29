//! Rendering containers and events as JSON and as human text.

use std::sync::Arc;

use whalewatcher::{Container, ContainerEvent, EventKind};

use whalewatcher::event::rfc3339_nanos as rfc3339;

/// Sorts by engine, project, name (and id, for a total order).
pub fn sort(all: &mut [Arc<Container>]) {
    all.sort_by(|a, b| a.listing_order(b));
}

/// The JSON array of `ps --json`.
pub fn ps_json(all: &[Arc<Container>]) -> String {
    let v: Vec<&Container> = all.iter().map(|c| &**c).collect();
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into())
}

fn short(id: &str) -> &str {
    // Ids may be namespace-qualified (containerd) or hex; cut at a char boundary.
    match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

fn state(c: &Container) -> &'static str {
    if c.paused {
        "paused"
    } else {
        "running"
    }
}

/// The human table of `ps`: grouped by engine and project, standalone containers last.
pub fn ps_table(all: &[Arc<Container>]) -> String {
    let mut all = all.to_vec();
    all.sort_by(|a, b| {
        (
            a.engine_kind().as_str(),
            a.project.is_empty(),
            &a.project,
            &a.name,
            &a.id,
        )
            .cmp(&(
                b.engine_kind().as_str(),
                b.project.is_empty(),
                &b.project,
                &b.name,
                &b.id,
            ))
    });
    let w_name = all.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
    let w_id = all
        .iter()
        .map(|c| short(&c.id).len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = String::new();
    let mut group: Option<(String, String)> = None;
    for c in &all {
        let key = (c.engine_kind().as_str().to_string(), c.project.clone());
        if group.as_ref() != Some(&key) {
            if group.is_some() {
                out.push('\n');
            }
            let title = if c.project.is_empty() {
                "(standalone)".to_string()
            } else {
                format!("project {}", c.project)
            };
            out.push_str(&format!("{title}  [{}]\n", c.engine_kind().as_str()));
            out.push_str(&format!(
                "  {:<w_id$}  {:<w_name$}  {:>7}  {:<7}  IMAGE\n",
                "ID", "NAME", "PID", "STATE"
            ));
            group = Some(key);
        }
        out.push_str(&format!(
            "  {:<w_id$}  {:<w_name$}  {:>7}  {:<7}  {}\n",
            short(&c.id),
            c.name,
            c.pid,
            state(c),
            c.image
        ));
    }
    if all.is_empty() {
        out.push_str("(no alive containers)\n");
    }
    out
}

/// The JSON line of one event (the library's serde form).
pub fn event_json(e: &ContainerEvent) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// The human line of one event.
pub fn event_line(e: &ContainerEvent) -> String {
    let c = &e.container;
    let mut what = e.kind.as_str().to_string();
    if let EventKind::Exited { exit_code, oom } = e.kind {
        if let Some(code) = exit_code {
            what.push_str(&format!(" ({code})"));
        }
        if oom {
            what.push_str(" OOM");
        }
    }
    let project = if c.project.is_empty() {
        String::new()
    } else {
        format!(" project={}", c.project)
    };
    format!(
        "{} #{} {:<12} {} {} pid={}{}{} [{}]",
        rfc3339(e.time),
        e.seq,
        what,
        short(&c.id),
        c.name,
        c.pid,
        project,
        if e.synthetic { " (alive)" } else { "" },
        c.engine_kind().as_str()
    )
}
