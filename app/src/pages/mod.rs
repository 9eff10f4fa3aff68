//! The dashboard's pages, one module each.

pub mod audit;
pub mod connectors;
pub mod dlp;
pub mod groups;
pub mod login;
pub mod overview;
pub mod policies;
pub mod settings;
pub mod siem;
pub mod simulator;
pub mod users;

use leptos::prelude::*;

/// A page that is planned but not built yet, clearly marked as such.
#[component]
pub fn Coming(title: &'static str, what: &'static str) -> impl IntoView {
    view! {
        <h1>{title} " " <span class="badge">"coming"</span></h1>
        <p class="muted">{what}</p>
        <p>"This part of Toolgate is not available yet."</p>
    }
}

/// An error from a server function, shown inline.
#[component]
pub fn ErrorNote(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}

/// Text of a server function error without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    let s = e.to_string();
    s.split_once(": ").map(|(_, m)| m.to_string()).unwrap_or(s)
}

/// The outcome of the last submission of a form: an error note, or nothing.
pub fn action_error<I, O>(action: ServerAction<I>) -> impl IntoView
where
    I: leptos::server_fn::ServerFn<Output = O, Error = ServerFnError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    move || {
        action
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    }
}
