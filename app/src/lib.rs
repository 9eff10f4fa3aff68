//! Toolgate's admin dashboard: the HTML shell, the router, the layout and the pages. Server
//! functions (in `server_fns`) are thin: check the signed-in role, call the domain store.

#![recursion_limit = "256"]

pub mod auth;
pub mod pages;
pub mod server_fns;

use auth::{DashboardRole, Page};
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Outlet, ParentRoute, Redirect, Route, Router, Routes};
use leptos_router::path;

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The dashboard: a login page and the signed-in area with its navigation.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/toolgate.css" />
        <Title text="Toolgate" />
        <Router>
            <Routes fallback=|| view! { <main class="narrow"><h1>"Not found"</h1><p><a href="/">"Back to the overview"</a></p></main> }>
                <Route path=path!("/login") view=pages::login::LoginPage />
                <ParentRoute path=path!("") view=Layout>
                    <Route path=path!("") view=pages::overview::OverviewPage />
                    <Route path=path!("/connect") view=pages::connect::ConnectPage />
                    <Route path=path!("/connectors") view=pages::connectors::ConnectorsPage />
                    <Route path=path!("/connectors/:name") view=pages::connectors::detail::ConnectorPage />
                    <Route path=path!("/groups") view=pages::groups::GroupsPage />
                    <Route path=path!("/policies") view=pages::policies::PoliciesPage />
                    <Route path=path!("/simulator") view=pages::simulator::SimulatorPage />
                    <Route path=path!("/audit") view=pages::audit::AuditPage />
                    <Route path=path!("/access") view=pages::elevation::access::AccessPage />
                    <Route path=path!("/approvals") view=pages::elevation::approvals::ApprovalsPage />
                    <Route path=path!("/elevation-profiles") view=pages::elevation::profiles::ElevationProfilesPage />
                    <Route path=path!("/users") view=pages::users::UsersPage />
                    <Route path=path!("/service-principals") view=pages::service_principals::ServicePrincipalsPage />
                    <Route path=path!("/service-principals/:id") view=pages::service_principals::ServicePrincipalPage />
                    <Route path=path!("/oauth-clients") view=pages::oauth_clients::OAuthClientsPage />
                    <Route path=path!("/settings") view=pages::settings::SettingsPage />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Navigation and signed-in user around every page but the login.
#[component]
fn Layout() -> impl IntoView {
    let me = Resource::new(|| (), |_| server_fns::whoami());
    let logout = ServerAction::<server_fns::Logout>::new();
    // Pages bump this after reviews so the count of tools waiting for review follows.
    let review_tick = RwSignal::new(0u64);
    provide_context(pages::connectors::ReviewTick(review_tick));
    let reviews = Resource::new(
        move || review_tick.get(),
        |_| pages::connectors::fns::review_count(),
    );
    let location = leptos_router::hooks::use_location();
    let at_home = move || location.pathname.get_untracked() == "/";
    // The approvals page bumps this after decisions; navigating reloads it too, so the count of
    // what waits follows requests made meanwhile.
    let approval_tick = RwSignal::new(0u64);
    provide_context(pages::elevation::ApprovalTick(approval_tick));
    let pending = Resource::new(
        move || (approval_tick.get(), location.pathname.get()),
        |_| pages::elevation::fns::pending_approvals_count(),
    );
    view! {
        <div class="layout">
            <nav class="sidebar" aria-label="Main">
                <div class="brand">"Toolgate"</div>
                // A transition, so the links stay while the review count reloads. No suspense
                // boundary inside: one made while resolving would shift the ids of the page's
                // resources between server and browser.
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let signed_in = me.await.ok().flatten().map(|u| u.role);
                        let role = signed_in.unwrap_or(DashboardRole::User);
                        let to_review = reviews.await.ok().flatten().filter(|n| *n > 0);
                        let to_decide = pending.await.ok().flatten().filter(|n| *n > 0);
                        view! {
                            {role.may(Page::Overview).then(|| view! { <A href="/" exact=true>"Overview"</A> })}
                            {role.may(Page::Connect).then(|| view! { <A href="/connect">"Connect your agent"</A> })}
                            {role.may(Page::Access).then(|| view! { <A href="/access">"My access"</A> })}
                            {role.may(Page::Approvals).then(|| view! {
                                <div class="nav-item">
                                    <A href="/approvals">"Approvals"</A>
                                    {to_decide.map(|n| view! {
                                        <span class="badge nav-count" id="nav-approvals-count" title="requests and calls waiting for your decision">{n}</span>
                                    })}
                                </div>
                            })}
                            {role.may(Page::Connectors).then(|| view! {
                                <div class="nav-item">
                                    <A href="/connectors">"Connectors"</A>
                                    {to_review.map(|n| view! {
                                        <span class="badge nav-count" id="nav-review-count" title="tools waiting for review">{n}</span>
                                    })}
                                </div>
                            })}
                            {role.may(Page::Groups).then(|| view! { <A href="/groups">"Groups & policies"</A> })}
                            {role.may(Page::Policies).then(|| view! { <A href="/policies">"Policy matrix"</A> })}
                            {role.may(Page::ElevationProfiles).then(|| view! { <A href="/elevation-profiles">"Elevation profiles"</A> })}
                            {role.may(Page::Simulator).then(|| view! { <A href="/simulator">"Simulator"</A> })}
                            {role.may(Page::Audit).then(|| view! { <A href="/audit">"Audit"</A> })}
                            {role.may(Page::Users).then(|| view! { <A href="/users">"Users"</A> })}
                            {role.may(Page::ServicePrincipals).then(|| view! { <A href="/service-principals">"Service principals"</A> })}
                            {role.may(Page::OAuthClients).then(|| view! { <A href="/oauth-clients">"OAuth clients"</A> })}
                            {role.may(Page::Settings).then(|| view! { <A href="/settings">"Settings"</A> })}
                            // People without a dashboard role land on the overview they may
                            // not see: their page is Connect.
                            {(signed_in == Some(DashboardRole::User) && at_home()).then(|| view! { <Redirect path="/connect" /> })}
                        }
                    })}
                </Transition>
            </nav>
            <div class="content">
                <header class="topbar">
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            let me = me.await.ok().flatten();
                            let name = me.as_ref().map(|u| u.username.clone()).unwrap_or_default();
                            let role = me.map(|u| u.role.as_str()).unwrap_or_default();
                            view! { <span class="whoami">"Signed in as " <strong>{name}</strong> " (" <span id="role">{role}</span> ")"</span> }
                        })}
                    </Suspense>
                    <ActionForm action=logout>
                        <button type="submit" class="link">"Sign out"</button>
                    </ActionForm>
                </header>
                <main>
                    <Outlet />
                </main>
            </div>
        </div>
    }
}
