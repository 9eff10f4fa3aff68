//! Just-in-time elevation on the server: the notification webhook (generic JSON, Slack or
//! Teams; URL sealed at rest, cloud-metadata addresses refused, no redirects), the periodic
//! settling of what ran its course (`elevation.expired` events and notices; enforcement never
//! waits for it) and the dashboard links agents are given.

use crate::siem::transport::{CONNECT_TIMEOUT, GuardedResolver, REQUEST_TIMEOUT};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use toolgate_domain::approvals::{Notice, Notifier, Workflow};
use toolgate_domain::elevation::{ElevationSettings, WebhookFormat};
use toolgate_domain::store::{Store, setting_keys};

/// Notices waiting to be posted; more are dropped (logged), never blocking a request.
const QUEUE: usize = 1024;

/// Where agents and people are sent: the "My access" page (optionally for one profile) and the
/// approvals inbox.
pub fn access_link(public_url: &str, profile: Option<&str>) -> String {
    let base = format!("{}/access", public_url.trim_end_matches('/'));
    match profile {
        Some(p) => format!(
            "{base}?profile={}",
            form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()
        ),
        None => base,
    }
}

pub fn approvals_link(public_url: &str) -> String {
    format!("{}/approvals", public_url.trim_end_matches('/'))
}

/// Checks a webhook URL before it is stored: http(s), a host, no credentials in the authority.
pub fn validate_webhook_url(raw: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(raw.trim()).map_err(|e| format!("webhook_url: {e}"))?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err("webhook_url must be an http(s) URL".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("webhook_url must name a host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("webhook_url must not carry credentials before the host".into());
    }
    Ok(())
}

/// Posts notices to the configured webhook from one background task.
#[derive(Debug)]
pub struct WebhookNotifier {
    tx: mpsc::Sender<Notice>,
}

impl Notifier for WebhookNotifier {
    fn notify(&self, notice: Notice) {
        if let Err(e) = self.tx.try_send(notice) {
            tracing::warn!(error = %e, "elevation notice dropped: the webhook queue is full");
        }
    }
}

impl WebhookNotifier {
    /// Starts the sender task.
    pub fn start(store: Store, public_url: String) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(store, public_url, rx));
        Arc::new(WebhookNotifier { tx })
    }
}

async fn send_loop(store: Store, public_url: String, mut rx: mpsc::Receiver<Notice>) {
    let client = match reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(GuardedResolver)
        .user_agent(concat!("toolgate/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "elevation webhook client cannot be built; notices off");
            return;
        }
    };
    while let Some(notice) = rx.recv().await {
        let url = match store.secret_setting(setting_keys::ELEVATION_WEBHOOK).await {
            Ok(Some(u)) => u,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "elevation webhook URL cannot be read");
                continue;
            }
        };
        let settings: ElevationSettings = store
            .setting(setting_keys::ELEVATION)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let body = message(&notice, settings.webhook_format, &public_url);
        // Two tries: a webhook endpoint restarting should not lose a request for approval.
        for attempt in 0..2 {
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "elevation webhook refused a notice")
                }
                Err(e) => {
                    tracing::warn!(error = %crate::siem::transport::error_chain(&e), attempt, "elevation webhook unreachable")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// One line a person reads, and the link to act on it.
pub fn summary(notice: &Notice, public_url: &str) -> (String, String) {
    match notice {
        Notice::Elevation {
            event,
            elevation: e,
        } => {
            let what = match *event {
                "elevation.requested" => format!(
                    "{} asks for elevation \"{}\" for {} ({} min): {}",
                    e.requested_by_name,
                    e.profile_name,
                    e.subject_name,
                    e.minutes,
                    if e.justification.is_empty() {
                        "no justification"
                    } else {
                        &e.justification
                    }
                ),
                "elevation.approved" | "elevation.activated" => format!(
                    "Elevation \"{}\" for {} is active until {}{}",
                    e.profile_name,
                    e.subject_name,
                    e.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    e.decided_by_name
                        .as_deref()
                        .map(|d| format!(" (approved by {d})"))
                        .unwrap_or_default()
                ),
                "elevation.denied" => format!(
                    "Elevation \"{}\" for {} was denied by {}",
                    e.profile_name,
                    e.subject_name,
                    e.decided_by_name.as_deref().unwrap_or("an approver")
                ),
                other => format!(
                    "Elevation \"{}\" for {}: {}",
                    e.profile_name,
                    e.subject_name,
                    other.trim_start_matches("elevation.")
                ),
            };
            let link = if *event == "elevation.requested" {
                approvals_link(public_url)
            } else {
                access_link(public_url, None)
            };
            (what, link)
        }
        Notice::Approval { event, approval: a } => {
            let what = match *event {
                "approval.requested" => format!(
                    "{} asks to call {} on {}; it waits for an approver",
                    a.subject_name, a.tool, a.connector
                ),
                other => format!(
                    "Call of {} on {} by {}: {}",
                    a.tool,
                    a.connector,
                    a.subject_name,
                    other.trim_start_matches("approval.")
                ),
            };
            (what, approvals_link(public_url))
        }
    }
}

/// The webhook body in the chosen format.
pub fn message(notice: &Notice, format: WebhookFormat, public_url: &str) -> serde_json::Value {
    let (text, link) = summary(notice, public_url);
    match format {
        WebhookFormat::Json => {
            let (event, key, value) = match notice {
                Notice::Elevation { event, elevation } => (
                    *event,
                    "elevation",
                    serde_json::to_value(elevation).unwrap_or_default(),
                ),
                Notice::Approval { event, approval } => (
                    *event,
                    "approval",
                    serde_json::to_value(approval).unwrap_or_default(),
                ),
            };
            serde_json::json!({ "event": event, key: value, "text": text, "link": link })
        }
        WebhookFormat::Slack => {
            serde_json::json!({ "text": format!("{text} <{link}|Open Toolgate>") })
        }
        WebhookFormat::Teams => serde_json::json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": text,
            "themeColor": "0B6E4F",
            "title": "Toolgate",
            "text": text,
            "potentialAction": [{
                "@type": "OpenUri",
                "name": "Open in Toolgate",
                "targets": [{ "os": "default", "uri": link }],
            }],
        }),
    }
}

/// Settles expired elevations and stale requests every `every`, until shut down.
pub async fn settle_loop(workflow: Workflow, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match workflow.settle().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(settled = n, "elevations expired or requests lapsed"),
            Err(e) => tracing::warn!(error = %e, "settling elevations failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::elevation::{Elevation, ElevationStatus};

    fn elevation() -> Elevation {
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Elevation {
            id: "e1".into(),
            profile_id: "p".into(),
            profile_name: "Secrets".into(),
            subject_kind: "person".into(),
            subject_id: "u".into(),
            subject_name: "carol".into(),
            requested_by: "u".into(),
            requested_by_name: "carol".into(),
            source: "agent".into(),
            justification: "rotate the deploy key".into(),
            ticket: Some("INC-7".into()),
            minutes: 30,
            status: ElevationStatus::Pending,
            created_at: t,
            decided_at: None,
            decided_by: None,
            decided_by_name: None,
            comment: None,
            starts_at: None,
            expires_at: None,
            ended_at: None,
            ended_by_name: None,
        }
    }

    #[test]
    fn messages_in_each_format() {
        let n = Notice::Elevation {
            event: "elevation.requested",
            elevation: elevation(),
        };
        let json = message(&n, WebhookFormat::Json, "https://tg.example.com/");
        assert_eq!(json["event"], "elevation.requested");
        assert_eq!(json["elevation"]["id"], "e1");
        assert_eq!(json["link"], "https://tg.example.com/approvals");
        assert!(
            json["text"]
                .as_str()
                .unwrap()
                .contains("carol asks for elevation \"Secrets\"")
        );
        let slack = message(&n, WebhookFormat::Slack, "https://tg.example.com");
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .ends_with("<https://tg.example.com/approvals|Open Toolgate>")
        );
        let teams = message(&n, WebhookFormat::Teams, "https://tg.example.com");
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(
            teams["potentialAction"][0]["targets"][0]["uri"],
            "https://tg.example.com/approvals"
        );
    }

    #[test]
    fn links_and_webhook_urls() {
        assert_eq!(
            access_link("https://tg.example.com/", Some("Repo secrets")),
            "https://tg.example.com/access?profile=Repo+secrets"
        );
        assert!(validate_webhook_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(validate_webhook_url("http://10.0.0.5:8080/hook").is_ok());
        assert!(validate_webhook_url("ftp://example.com/x").is_err());
        assert!(validate_webhook_url("https://user:pw@example.com/x").is_err());
        assert!(validate_webhook_url("not a url").is_err());
    }
}
