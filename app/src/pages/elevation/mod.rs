//! Just-in-time elevation and per-call approval in the dashboard: "My access" (every signed-in
//! person: groups, elevations, requests), the approvals inbox (approvers and admins) and the
//! profiles editor with the elevation settings (admins). Server functions are in `fns`.

pub mod access;
pub mod approvals;
pub mod fns;
pub mod profiles;

use leptos::prelude::*;
use toolgate_domain::elevation::{ApprovalStatus, ElevationStatus, ProfileTarget};

/// Bumped after a decision, so the navigation's count of pending approvals follows.
#[derive(Clone, Copy)]
pub struct ApprovalTick(pub RwSignal<u64>);

/// Remaining time as people read it: `45 s`, `4 min 05 s`, `2 h 05 min`, `3 d 4 h`.
pub fn remaining_text(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A duration in minutes: `45 min`, `2 h`, `1 h 30 min`, `7 d`.
pub fn minutes_text(m: u32) -> String {
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, 0) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// What a profile unlocks on one connector: `github: get_*, list_repos; every tool up to Low`.
pub fn target_text(t: &ProfileTarget) -> String {
    let mut parts = Vec::new();
    if !t.tools.is_empty() {
        parts.push(t.tools.join(", "));
    }
    if let Some(r) = t.max_risk {
        parts.push(format!("every tool up to {}", r.label()));
    }
    format!("{}: {}", t.connector, parts.join("; "))
}

/// A profile's targets as a list.
pub fn targets_view(targets: &[ProfileTarget]) -> impl IntoView + use<> {
    let items = targets
        .iter()
        .map(|t| view! { <li>{target_text(t)}</li> })
        .collect_view();
    view! { <ul class="targets">{items}</ul> }
}

pub fn elevation_badge(s: ElevationStatus) -> impl IntoView {
    view! { <span class=format!("badge status elevation-{}", s.as_str())>{s.as_str()}</span> }
}

pub fn approval_badge(s: ApprovalStatus) -> impl IntoView {
    view! { <span class=format!("badge status approval-{}", s.as_str())>{s.as_str()}</span> }
}

/// JSON text indented for reading; other text as it is.
pub fn pretty_json(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| raw.to_string())
}

/// Seconds left, counting down in the browser once a second (the server renders the start).
#[component]
pub fn Countdown(secs: i64) -> impl IntoView {
    let left = RwSignal::new(secs.max(0));
    Effect::new(move |_| {
        if let Ok(h) = set_interval_with_handle(
            move || left.update(|s| *s = (*s - 1).max(0)),
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || h.clear());
        }
    });
    view! {
        <span class="remaining" data-secs=move || left.get().to_string()>
            {move || match left.get() {
                0 => "ending".to_string(),
                s => format!("{} left", remaining_text(s)),
            }}
        </span>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::risk::Risk;

    #[test]
    fn remaining_time_reads_naturally() {
        assert_eq!(remaining_text(-5), "0 s");
        assert_eq!(remaining_text(59), "59 s");
        assert_eq!(remaining_text(60), "1 min 00 s");
        assert_eq!(remaining_text(245), "4 min 05 s");
        assert_eq!(remaining_text(3600 + 5 * 60 + 9), "1 h 05 min");
        assert_eq!(remaining_text(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(minutes_text(1), "1 min");
        assert_eq!(minutes_text(60), "1 h");
        assert_eq!(minutes_text(90), "1 h 30 min");
        assert_eq!(minutes_text(7 * 1440), "7 d");
        assert_eq!(minutes_text(1440 + 120), "1 d 2 h");
    }

    #[test]
    fn targets_name_tools_and_risk() {
        let t = ProfileTarget {
            connector: "github".into(),
            tools: vec!["get_*".into(), "list_repos".into()],
            max_risk: Some(Risk::Low),
        };
        assert_eq!(
            target_text(&t),
            format!(
                "github: get_*, list_repos; every tool up to {}",
                Risk::Low.label()
            )
        );
        let only_tools = ProfileTarget {
            max_risk: None,
            ..t
        };
        assert_eq!(target_text(&only_tools), "github: get_*, list_repos");
    }

    #[test]
    fn arguments_are_indented() {
        assert_eq!(pretty_json(r#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(pretty_json("not json"), "not json");
    }
}
