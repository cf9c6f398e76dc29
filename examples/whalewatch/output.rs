//! Rendering containers and events as JSON and as human text.

use std::sync::Arc;
use std::time::SystemTime;

use whalewatcher::{Container, ContainerEvent, EventKind};

/// Formats a time as RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-12-02T14:10:00.123456789Z`, as the library's JSON does (times before 1970 are
/// clamped to the epoch). The library keeps its own formatter private: a timestamp format
/// is not something it means to promise.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (H. Hinnant's algorithm), for days since 1970-01-01
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    /// The same dates as the library's own formatter test: the CLI's text must show the
    /// times its JSON shows.
    #[test]
    fn rfc3339_formats_known_dates() {
        let t = |s: u64, n: u32| super::rfc3339(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            t(1_796_220_451, 789_821_149),
            "2026-12-02T14:07:31.789821149Z"
        );
        assert_eq!(
            t(4_102_444_799, 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }
}
