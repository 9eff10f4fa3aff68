//! The dashboard's pages, one module each.

pub mod audit;
pub mod connect;
pub mod connectors;
pub mod dlp;
pub mod elevation;
pub mod groups;
pub mod login;
pub mod oauth_clients;
pub mod overview;
pub mod policies;
pub mod service_principals;
pub mod settings;
pub mod siem;
pub mod simulator;
pub mod users;

use leptos::prelude::*;

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

/// A time as the dashboard shows it, or `never`.
pub fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

/// A button that copies the text of the element `target` (an id) to the clipboard and says
/// whether it worked. Without the clipboard (an insecure origin) it asks to copy by hand.
#[component]
pub fn CopyButton(target: String) -> impl IntoView {
    let (label, set_label) = signal("Copy");
    let copy = move |_| {
        if copy_text_of(&target, set_label).is_none() {
            set_label.set("Select and copy by hand");
        }
    };
    view! { <button type="button" class="secondary copy" on:click=copy>{label}</button> }
}

/// `navigator.clipboard.writeText(text of #id)`, reporting the outcome in `label`. Looked up
/// by name: the clipboard API needs no extra web-sys features this way.
fn copy_text_of(id: &str, label: WriteSignal<&'static str>) -> Option<()> {
    use leptos::wasm_bindgen::closure::Closure;
    use leptos::wasm_bindgen::{JsCast, JsValue};
    use leptos::web_sys::js_sys::{Function, Reflect};
    let text = document().get_element_by_id(id)?.text_content()?;
    let get = |on: &JsValue, name: &str| Reflect::get(on, &JsValue::from_str(name)).ok();
    let clipboard = get(&get(&window().into(), "navigator")?, "clipboard")?;
    let write: Function = get(&clipboard, "writeText")?.dyn_into().ok()?;
    let promise = write.call1(&clipboard, &JsValue::from_str(&text)).ok()?;
    let then: Function = get(&promise, "then")?.dyn_into().ok()?;
    let done = Closure::once_into_js(move |_: JsValue| label.set("Copied"));
    let failed = Closure::once_into_js(move |_: JsValue| label.set("Select and copy by hand"));
    then.call2(&promise, &done, &failed).ok()?;
    Some(())
}
