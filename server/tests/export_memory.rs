//! Exporting 100,000 audit events streams in bounded memory. A counting allocator measures the
//! process's live heap while the export is read; this test has its own binary so no other test
//! allocates beside it.

#[path = "integration/common.rs"]
mod common;

use futures::StreamExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use toolgate_domain::store::NewAuditEvent;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const EVENTS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_100k_events_streams_in_bounded_memory() {
    let app = common::spawn_app().await;
    let store = &app.server.state.store;
    let now = store.clock().now();
    for batch in 0..EVENTS / 1000 {
        let events: Vec<NewAuditEvent> = (0..1000)
            .map(|i| NewAuditEvent {
                connector: Some("github".into()),
                tool: Some(format!("create_issue_{batch}_{i}")),
                args_redacted: Some(format!(
                    "{{\"title\":\"an issue with a reasonably long title, number {i} of batch {batch}\"}}"
                )),
                ..NewAuditEvent::new(now, "tool_call", "loader")
            })
            .collect();
        store.insert_audit_batch(&events).await.unwrap();
    }

    for format in ["csv", "jsonl"] {
        let res = app
            .http
            .get(app.url(&format!(
                "/api/v1/audit/export?format={format}&subject=loader"
            )))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let mut body = res.bytes_stream();
        let (mut bytes, mut lines) = (0usize, 0usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let growth = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        let expected_lines = if format == "csv" { EVENTS + 1 } else { EVENTS };
        assert_eq!(lines, expected_lines, "{format}: every event exported");
        assert!(
            bytes > 10 * 1024 * 1024,
            "{format}: {bytes} bytes is a real export"
        );
        // The whole export is over 10 MB (JSON Lines about 60 MB); a streamed one holds a page or two at a time.
        assert!(
            growth < 12 * 1024 * 1024,
            "{format}: heap grew by {growth} bytes while streaming {bytes} bytes"
        );
        eprintln!("{format}: {bytes} bytes streamed, peak heap growth {growth} bytes");
    }
}
