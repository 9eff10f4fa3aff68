//! Sign-in page: the OpenID Provider (Microsoft Entra ID) when configured, and local
//! break-glass administrators.

use super::action_error;
use crate::server_fns::{Login, sso_label};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// Words for the error codes the sign-in callback redirects with.
fn error_message(code: &str) -> &'static str {
    match code {
        "not_provisioned" => {
            "You are not provisioned in Toolgate. Ask IT to assign you the Toolgate app."
        }
        "disabled" => "Your account is disabled.",
        "expired" => "The sign-in took too long or was started elsewhere. Please try again.",
        "token_rejected" => "The identity provider's answer could not be verified.",
        "provider_error" => "The identity provider refused the sign-in.",
        "sso_not_configured" => "Single sign-on is not configured.",
        "sso_unavailable" => "The identity provider cannot be reached right now.",
        "admins_only" => "Only administrators can test the sign-in configuration.",
        _ => "Sign-in failed. Please try again.",
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let sso = Resource::new(|| (), |_| sso_label());
    let query = use_query_map();
    let error = move || query.read().get("error").map(|c| error_message(&c));
    view! {
        <main class="narrow login">
            <h1>"Sign in to Toolgate"</h1>
            {move || error().map(|m| view! { <p class="error" role="alert" id="signin-error">{m}</p> })}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    sso.await.ok().flatten().map(|label| view! {
                        <a class="button sso" id="sso" href="/auth/oidc/login" rel="external">"Sign in with " {label}</a>
                        <p class="muted small">"Administrators without single sign-on can use a local account below."</p>
                    })
                })}
            </Suspense>
            <ActionForm action=login>
                <label>"User name" <input type="text" name="username" autocomplete="username" required /></label>
                <label>"Password" <input type="password" name="password" autocomplete="current-password" required /></label>
                <button type="submit">"Sign in"</button>
            </ActionForm>
            {action_error(login)}
        </main>
    }
}
