//! What happens after the OpenID Provider vouched for someone: matching, binding, refusing,
//! just-in-time creation, and roles from group mappings (SCIM memberships, the groups claim, an
//! overage). The browser flow itself is in end2end/tests/oidc.spec.mjs.

use crate::common::*;
use toolgate::oidc::signin::{Refusal, VerifiedClaims, resolve_person, role_for};
use toolgate_app::auth::DashboardRole;
use toolgate_domain::model::{OidcMatch, OidcSettings, RoleMappings};
use toolgate_domain::store::{NewUser, Store};

fn settings(match_by: OidcMatch, jit: bool, groups_claim: bool) -> OidcSettings {
    OidcSettings {
        issuer: "https://login.microsoftonline.com/{tenantid}/v2.0".into(),
        client_id: "app".into(),
        client_secret_set: true,
        display_name: "Entra".into(),
        match_by,
        jit_provisioning: jit,
        use_groups_claim: groups_claim,
    }
}

fn claims(upn: &str, oid: &str) -> VerifiedClaims {
    VerifiedClaims {
        issuer: "https://login.microsoftonline.com/t1/v2.0".into(),
        subject: format!("pairwise-{oid}"),
        tid: Some("t1".into()),
        oid: Some(oid.into()),
        preferred_username: Some(upn.into()),
        email: Some(upn.into()),
        name: Some("Someone".into()),
        groups: None,
        groups_overage: false,
    }
}

async fn user(store: &Store, name: &str, external_id: Option<&str>) -> String {
    store
        .create_user(NewUser {
            user_name: name.into(),
            display_name: name.into(),
            external_id: external_id.map(Into::into),
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn people_are_matched_once_then_known_by_their_stable_key() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let alice = user(store, "Alice@Contoso.com", Some("oid-a")).await;
    let s = settings(OidcMatch::UserName, false, false);
    // First sign-in: matched by user name (case-insensitively) and bound to tid+oid.
    let u = resolve_person(store, &s, &claims("alice@contoso.com", "oid-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.id, alice);
    assert_eq!(
        store.oidc_subject_of(&alice).await.unwrap().as_deref(),
        Some("entra:t1:oid-a")
    );
    // Later: the UPN changed in Entra, the person is still found by the stable key.
    let u = resolve_person(store, &s, &claims("alice.renamed@contoso.com", "oid-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.id, alice);
    // Someone else presenting alice's old UPN with another object id is not let in as alice.
    let other = resolve_person(store, &s, &claims("alice@contoso.com", "oid-z"))
        .await
        .unwrap();
    assert_eq!(other, Err(Refusal::LinkedElsewhere));
}

#[tokio::test]
async fn matching_by_object_id_and_refusals() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let bob = user(store, "bob@contoso.com", Some("oid-b")).await;
    let s = settings(OidcMatch::ExternalId, false, false);
    let u = resolve_person(store, &s, &claims("whatever@contoso.com", "oid-b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.id, bob);
    assert_eq!(
        resolve_person(store, &s, &claims("nobody@contoso.com", "oid-x"))
            .await
            .unwrap(),
        Err(Refusal::NotProvisioned)
    );
    let mut no_oid = claims("x@contoso.com", "ignored");
    no_oid.oid = None;
    no_oid.tid = None;
    assert_eq!(
        resolve_person(store, &s, &no_oid).await.unwrap(),
        Err(Refusal::MissingClaim("oid"))
    );
    store.set_user_active(&bob, false).await.unwrap();
    assert_eq!(
        resolve_person(store, &s, &claims("bob@contoso.com", "oid-b"))
            .await
            .unwrap(),
        Err(Refusal::Disabled)
    );
}

#[tokio::test]
async fn just_in_time_creation_only_when_switched_on() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let refuse = settings(OidcMatch::UserName, false, false);
    assert_eq!(
        resolve_person(store, &refuse, &claims("new@contoso.com", "oid-n"))
            .await
            .unwrap(),
        Err(Refusal::NotProvisioned)
    );
    assert!(
        store.list_users().await.unwrap().is_empty(),
        "refusing creates nothing"
    );
    let jit = settings(OidcMatch::UserName, true, false);
    let u = resolve_person(store, &jit, &claims("new@contoso.com", "oid-n"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.user_name.as_str(), u.source.as_str(), u.active),
        ("new@contoso.com", "jit", true)
    );
    assert_eq!(u.external_id.as_deref(), Some("oid-n"));
}

#[tokio::test]
async fn roles_come_from_group_mappings() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let carol = user(store, "carol@contoso.com", None).await;
    let admins = store
        .create_group("Toolgate Admins", Some("entra-admins"))
        .await
        .unwrap();
    let auditors = store
        .create_group("Toolgate Auditors", Some("entra-auditors"))
        .await
        .unwrap();
    let approvers = store.create_group("Approvers", None).await.unwrap();
    let mappings = RoleMappings {
        admin: vec![admins.id.clone()],
        approver: vec![approvers.id.clone()],
        auditor: vec![auditors.id.clone()],
    };
    let carol_user = store.get_user(&carol).await.unwrap();
    let plain = settings(OidcMatch::UserName, false, false);
    let c = claims("carol@contoso.com", "oid-c");
    assert_eq!(
        role_for(store, &mappings, &plain, &carol_user, &c)
            .await
            .unwrap(),
        DashboardRole::User
    );
    // SCIM (here: API) memberships decide; the most powerful role wins.
    store.add_member(&auditors.id, &carol).await.unwrap();
    assert_eq!(
        role_for(store, &mappings, &plain, &carol_user, &c)
            .await
            .unwrap(),
        DashboardRole::Auditor
    );
    store.add_member(&approvers.id, &carol).await.unwrap();
    assert_eq!(
        role_for(store, &mappings, &plain, &carol_user, &c)
            .await
            .unwrap(),
        DashboardRole::Approver
    );
    // The groups claim counts only when switched on, matched to groups' externalId.
    let mut with_claim = c.clone();
    with_claim.groups = Some(vec!["ENTRA-ADMINS".into()]);
    assert_eq!(
        role_for(store, &mappings, &plain, &carol_user, &with_claim)
            .await
            .unwrap(),
        DashboardRole::Approver
    );
    let claim_on = settings(OidcMatch::UserName, false, true);
    assert_eq!(
        role_for(store, &mappings, &claim_on, &carol_user, &with_claim)
            .await
            .unwrap(),
        DashboardRole::Admin
    );
    // An overage means the claim is not there: memberships are used, nothing fails.
    let mut overage = c.clone();
    overage.groups = None;
    overage.groups_overage = true;
    assert_eq!(
        role_for(store, &mappings, &claim_on, &carol_user, &overage)
            .await
            .unwrap(),
        DashboardRole::Approver
    );
}
