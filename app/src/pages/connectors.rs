//! Connectors: the list and the add form. Header values are write-only.

use super::{ErrorNote, action_error, error_text};
use crate::server_fns::{AddConnector, list_connectors};
use leptos::prelude::*;

/// The add form; shown only to those who may see the list (admins).
fn add_form(add: ServerAction<AddConnector>) -> impl IntoView {
    view! {
            <h2>"Add a connector"</h2>
        <ActionForm action=add attr:id="add-connector">
            <label>"Name" <input type="text" name="name" placeholder="github" pattern="[a-z0-9\\-]{1,32}" required /></label>
            <label>"URL (streamable HTTP)" <input type="url" name="url" placeholder="https://mcp.example.com/mcp" required /></label>
            <label>"Headers (one 'Name: value' per line; stored encrypted, never shown again)"
                <textarea name="headers" rows="3" placeholder="Authorization: Bearer …"></textarea>
            </label>
            <button type="submit">"Add connector"</button>
        </ActionForm>
    }
}

#[component]
pub fn ConnectorsPage() -> impl IntoView {
    let add = ServerAction::<AddConnector>::new();
    let list = Resource::new(move || add.version().get(), |_| list_connectors());
    view! {
        <h1>"Connectors"</h1>
        <p class="muted">"Upstream MCP servers. Agents see their tools as " <code>"{connector}__{tool}"</code> "."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(items) if items.is_empty() => view! { <p id="no-connectors">"No connectors yet."</p> {add_form(add)} }.into_any(),
                    Ok(items) => view! {
                        <table id="connectors-table">
                            <thead><tr><th>"Name"</th><th>"Transport"</th><th>"URL"</th><th>"Headers"</th><th>"Status"</th></tr></thead>
                            <tbody>
                                {items.into_iter().map(|c| view! {
                                    <tr>
                                        <td class="name">{c.name}</td>
                                        <td>{c.transport.as_str()}</td>
                                        <td><code>{c.url}</code></td>
                                        <td>{if c.header_names.is_empty() { "none".to_string() } else { format!("{} (values hidden)", c.header_names.join(", ")) }}</td>
                                        <td>{if c.enabled { "enabled" } else { "disabled" }}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        {add_form(add)}
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        {action_error(add)}
    }
}
