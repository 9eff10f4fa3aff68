//! Sign-in page for local administrators.

use super::action_error;
use crate::server_fns::Login;
use leptos::prelude::*;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    view! {
        <main class="narrow login">
            <h1>"Sign in to Toolgate"</h1>
            <ActionForm action=login>
                <label>"User name" <input type="text" name="username" autocomplete="username" required /></label>
                <label>"Password" <input type="password" name="password" autocomplete="current-password" required /></label>
                <button type="submit">"Sign in"</button>
            </ActionForm>
            {action_error(login)}
        </main>
    }
}
