//! Overview: live counts from the store.

use super::{ErrorNote, error_text};
use crate::server_fns::get_overview;
use leptos::prelude::*;

#[component]
pub fn OverviewPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_overview());
    view! {
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => view! {
                        <div class="cards">
                            <div class="card"><span class="num" id="count-connectors">{o.connectors}</span>"Connectors"</div>
                            <div class="card"><span class="num" id="count-users">{o.users}</span>"Users"</div>
                            <div class="card"><span class="num" id="count-groups">{o.groups}</span>"Groups"</div>
                            <div class="card"><span class="num" id="count-calls">{o.calls_24h}</span>"Tool calls (24 h)"</div>
                            <div class="card"><span class="num" id="count-denied">{o.denied_24h}</span>"Denied (24 h)"</div>
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}
