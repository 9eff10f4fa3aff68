//! The SCIM endpoints: Users and Groups (list, search, create, read, replace, patch, delete) and
//! the discovery documents.

use super::document::{
    Doc, Meta, group_write, normalize, parse_attr_list, project, resource_json, stored, user_write,
};
use super::patch::{PatchRequest, apply};
use super::query::{ListParams, Listing};
use super::schema::{self, PATCH_URN, Resource};
use super::{ScimClient, ScimError, if_match, parse_body, scim_json};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use toolgate_domain::store::{DirectoryGroup, DirectoryUser, MemberChange, NewAuditEvent};

type ScimResult = Result<Response, ScimError>;

fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.public_url())
}

fn list_params(q: Result<Query<ListParams>, QueryRejection>) -> Result<ListParams, ScimError> {
    q.map(|Query(p)| p)
        .map_err(|e| ScimError::invalid_value(e.body_text()))
}

// ---------------------------------------------------------------------------------------------
// Building resources

fn user_doc(u: &DirectoryUser) -> Doc {
    let mut doc = stored(u.doc.as_deref());
    if doc.is_empty() {
        // Users created through the admin API have no SCIM document: show their columns.
        doc.insert("userName".into(), json!(u.user.user_name));
        doc.insert("displayName".into(), json!(u.user.display_name));
        if let Some(e) = &u.user.external_id {
            doc.insert("externalId".into(), json!(e));
        }
    }
    // The column is the truth for `active` (an admin may have disabled the user); a document
    // without `active` stays without it while the user is enabled (absent means active).
    if doc.contains_key("active") || !u.user.active {
        doc.insert("active".into(), json!(u.user.active));
    }
    doc
}

fn user_meta<'a>(u: &'a DirectoryUser, base: &'a str) -> Meta<'a> {
    Meta {
        resource: Resource::User,
        id: &u.user.id,
        created: u.user.created_at,
        last_modified: u.user.updated_at,
        version: u.version,
        base,
    }
}

fn user_resource(u: &DirectoryUser, groups: &[(String, String)], base: &str) -> Value {
    let items = groups
        .iter()
        .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"}))
        .collect();
    resource_json(&user_doc(u), &user_meta(u, base), Some(("groups", items)))
}

fn group_doc(g: &DirectoryGroup) -> Doc {
    let mut doc = stored(g.doc.as_deref());
    if doc.is_empty() {
        doc.insert("displayName".into(), json!(g.group.display_name));
        if let Some(e) = &g.group.external_id {
            doc.insert("externalId".into(), json!(e));
        }
    }
    doc
}

fn group_meta<'a>(g: &'a DirectoryGroup, base: &'a str) -> Meta<'a> {
    Meta {
        resource: Resource::Group,
        id: &g.group.id,
        created: g.group.created_at,
        last_modified: g.group.updated_at,
        version: g.version,
        base,
    }
}

/// The group as sent; `with_members` false leaves members out (excluded or not wanted). Members
/// carry `value`, `$ref` and `type`: echoing exactly what clients send, so a PATCH reads back
/// as written.
fn group_resource(g: &DirectoryGroup, with_members: bool, base: &str) -> Value {
    let members = with_members.then(|| {
        let items = g
            .members
            .iter()
            .map(|id| json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
            .collect();
        ("members", items)
    });
    resource_json(&group_doc(g), &group_meta(g, base), members)
}

async fn groups_of(
    state: &AppState,
    user: Option<&str>,
) -> Result<HashMap<String, Vec<(String, String)>>, ScimError> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (u, g, name) in state.store.user_group_names(user).await? {
        out.entry(u).or_default().push((g, name));
    }
    Ok(out)
}

fn one(status: StatusCode, body: Value, base: &str, id: &str, resource: Resource) -> Response {
    let etag = body["meta"]["version"].as_str().map(str::to_string);
    let mut res = scim_json(status, &body, etag.as_deref());
    if status == StatusCode::CREATED
        && let Ok(loc) = HeaderValue::from_str(&format!("{base}/{}/{id}", resource.endpoint()))
    {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

/// After a change: audit it and rebuild the snapshot, so the proxy sees it before we answer.
async fn changed(
    state: &AppState,
    client: &ScimClient,
    headers: &HeaderMap,
    kind: &str,
    detail: Value,
) {
    let event = NewAuditEvent {
        subject_kind: Some("scim".into()),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        detail: Some(detail.to_string()),
        ..NewAuditEvent::new(
            state.store.clock().now(),
            kind,
            &format!("scim:{}", client.token_name),
        )
    };
    state.audit.record_after_the_fact(event).await;
    if let Err(e) = state.snapshot.publish().await {
        tracing::error!(error = %e, "policy snapshot reload failed after a SCIM change");
    }
}

// ---------------------------------------------------------------------------------------------
// Users

async fn user_listing(state: &AppState, listing: &Listing) -> ScimResult {
    let base = base(state);
    let users = state
        .store
        .directory_users(
            listing
                .index_key(Resource::User)
                .as_ref()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .await?;
    let single = (users.len() == 1).then(|| users[0].user.id.clone());
    let groups = groups_of(state, single.as_deref()).await?;
    let all = users
        .iter()
        .map(|u| {
            user_resource(
                u,
                groups.get(&u.user.id).map(Vec::as_slice).unwrap_or(&[]),
                &base,
            )
        })
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &listing.respond(Resource::User, all),
        None,
    ))
}

pub async fn list_users(
    State(state): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ScimResult {
    user_listing(&state, &Listing::new(list_params(q)?)?).await
}

pub async fn search_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    user_listing(&state, &Listing::new(parse_body(&headers, &body)?)?).await
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OneParams {
    #[serde(default)]
    attributes: Option<String>,
    #[serde(default)]
    excluded_attributes: Option<String>,
}

fn project_one(resource: Resource, body: Value, p: &OneParams) -> Result<Value, ScimError> {
    let attrs = parse_attr_list(p.attributes.as_deref())?;
    let excluded = parse_attr_list(p.excluded_attributes.as_deref())?;
    Ok(project(resource, body, &attrs, &excluded))
}

pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<OneParams>, QueryRejection>,
) -> ScimResult {
    let params = q
        .map(|Query(p)| p)
        .map_err(|e| ScimError::invalid_value(e.body_text()))?;
    let base = base(&state);
    let u = state.store.directory_user(&id).await?;
    let groups = groups_of(&state, Some(&id)).await?;
    let body = user_resource(&u, groups.get(&id).map(Vec::as_slice).unwrap_or(&[]), &base);
    Ok(one(
        StatusCode::OK,
        project_one(Resource::User, body, &params)?,
        &base,
        &id,
        Resource::User,
    ))
}

pub async fn create_user(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let (doc, _) = normalize(Resource::User, parse_body(&headers, &body)?)?;
    let write = user_write(&doc)?;
    let u = state.store.directory_create_user(write, "scim").await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.user.created",
        json!({"id": u.user.id, "userName": u.user.user_name, "active": u.user.active}),
    )
    .await;
    let base = base(&state);
    Ok(one(
        StatusCode::CREATED,
        user_resource(&u, &[], &base),
        &base,
        &u.user.id,
        Resource::User,
    ))
}

pub async fn replace_user(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let (doc, _) = normalize(Resource::User, parse_body(&headers, &body)?)?;
    let before = state.store.directory_user(&id).await?;
    let u = state
        .store
        .directory_update_user(&id, user_write(&doc)?, if_match(&headers)?)
        .await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.user.replaced",
        user_change(&before, &u),
    )
    .await;
    respond_user(&state, &u).await
}

fn user_change(before: &DirectoryUser, after: &DirectoryUser) -> Value {
    json!({"id": after.user.id, "userName": after.user.user_name,
        "active": {"before": before.user.active, "after": after.user.active}})
}

async fn respond_user(state: &AppState, u: &DirectoryUser) -> ScimResult {
    let base = base(state);
    let groups = groups_of(state, Some(&u.user.id)).await?;
    let body = user_resource(
        u,
        groups.get(&u.user.id).map(Vec::as_slice).unwrap_or(&[]),
        &base,
    );
    Ok(one(StatusCode::OK, body, &base, &u.user.id, Resource::User))
}

fn patch_body(headers: &HeaderMap, body: &Bytes) -> Result<PatchRequest, ScimError> {
    let req: PatchRequest = parse_body(headers, body)?;
    if !req.schemas.is_empty()
        && !req
            .schemas
            .iter()
            .any(|s| s.eq_ignore_ascii_case(PATCH_URN))
    {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body names the schema {PATCH_URN}"
        )));
    }
    Ok(req)
}

pub async fn patch_user(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let req = patch_body(&headers, &body)?;
    let before = state.store.directory_user(&id).await?;
    let mut doc = user_doc(&before);
    apply(Resource::User, &mut doc, req.operations)?;
    let u = state
        .store
        .directory_update_user(&id, user_write(&doc)?, if_match(&headers)?)
        .await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.user.patched",
        user_change(&before, &u),
    )
    .await;
    respond_user(&state, &u).await
}

pub async fn delete_user(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    state.store.delete_user(&id, if_match(&headers)?).await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.user.deleted",
        json!({"id": id}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Groups

async fn group_listing(state: &AppState, listing: &Listing) -> ScimResult {
    let base = base(state);
    let groups = state
        .store
        .directory_groups(
            listing
                .index_key(Resource::Group)
                .as_ref()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .await?;
    let with_members = listing.wants("members");
    let all = groups
        .iter()
        .map(|g| group_resource(g, with_members, &base))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &listing.respond(Resource::Group, all),
        None,
    ))
}

pub async fn list_groups(
    State(state): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ScimResult {
    group_listing(&state, &Listing::new(list_params(q)?)?).await
}

pub async fn search_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    group_listing(&state, &Listing::new(parse_body(&headers, &body)?)?).await
}

pub async fn get_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<OneParams>, QueryRejection>,
) -> ScimResult {
    let params = q
        .map(|Query(p)| p)
        .map_err(|e| ScimError::invalid_value(e.body_text()))?;
    let g = state.store.directory_group(&id).await?;
    respond_group(&state, &g, StatusCode::OK, &params).await
}

async fn respond_group(
    state: &AppState,
    g: &DirectoryGroup,
    status: StatusCode,
    params: &OneParams,
) -> ScimResult {
    let base = base(state);
    let excluded = parse_attr_list(params.excluded_attributes.as_deref())?;
    let with_members = !excluded
        .iter()
        .any(|p| p.attr.eq_ignore_ascii_case("members"));
    let body = project_one(
        Resource::Group,
        group_resource(g, with_members, &base),
        params,
    )?;
    Ok(one(status, body, &base, &g.group.id, Resource::Group))
}

/// Member ids from a `members` value (`[{"value": id}, ...]`), without duplicates.
fn member_ids(members: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let mut out: Vec<String> = Vec::new();
    for m in members
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let id = m
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_value("each member needs a value (the user's id)"))?;
        if !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

pub async fn create_group(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let (doc, members) = normalize(Resource::Group, parse_body(&headers, &body)?)?;
    let ids = member_ids(members.as_ref())?;
    let g = state
        .store
        .directory_create_group(group_write(&doc)?, &ids, "scim")
        .await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.group.created",
        json!({"id": g.group.id, "displayName": g.group.display_name, "members": ids.len()}),
    )
    .await;
    respond_group(&state, &g, StatusCode::CREATED, &OneParams::default()).await
}

pub async fn replace_group(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let (doc, members) = normalize(Resource::Group, parse_body(&headers, &body)?)?;
    let change = MemberChange {
        replace: Some(member_ids(members.as_ref())?),
        ..Default::default()
    };
    let g = state
        .store
        .directory_update_group(&id, Some(group_write(&doc)?), &change, if_match(&headers)?)
        .await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.group.replaced",
        json!({"id": id, "displayName": g.group.display_name, "members": g.members.len()}),
    )
    .await;
    respond_group(&state, &g, StatusCode::OK, &OneParams::default()).await
}

pub async fn patch_group(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let req = patch_body(&headers, &body)?;
    let before = state.store.directory_group(&id).await?;
    let mut doc = group_doc(&before);
    let current: Vec<Value> = before.members.iter().map(|m| json!({"value": m})).collect();
    if !current.is_empty() {
        doc.insert("members".into(), Value::Array(current));
    }
    apply(Resource::Group, &mut doc, req.operations)?;
    let after_ids = member_ids(doc.remove("members").as_ref())?;
    let before_set: HashSet<&String> = before.members.iter().collect();
    let after_set: HashSet<&String> = after_ids.iter().collect();
    let change = MemberChange {
        replace: None,
        add: after_ids
            .iter()
            .filter(|m| !before_set.contains(m))
            .cloned()
            .collect(),
        remove: before
            .members
            .iter()
            .filter(|m| !after_set.contains(m))
            .cloned()
            .collect(),
    };
    let g = state
        .store
        .directory_update_group(&id, Some(group_write(&doc)?), &change, if_match(&headers)?)
        .await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.group.patched",
        json!({"id": id, "displayName": g.group.display_name, "added": change.add, "removed": change.remove}),
    )
    .await;
    respond_group(&state, &g, StatusCode::OK, &OneParams::default()).await
}

pub async fn delete_group(
    State(state): State<AppState>,
    Extension(client): Extension<ScimClient>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    state.store.delete_group(&id, if_match(&headers)?).await?;
    changed(
        &state,
        &client,
        &headers,
        "scim.group.deleted",
        json!({"id": id}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.search` across both resource types.
pub async fn search_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    let params: ListParams = parse_body(&headers, &body)?;
    let listing = Listing::new(params)?;
    let base = base(&state);
    let users = state.store.directory_users(None).await?;
    let groups_by_user = groups_of(&state, None).await?;
    let mut all: Vec<Value> = users
        .iter()
        .map(|u| {
            user_resource(
                u,
                groups_by_user
                    .get(&u.user.id)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &base,
            )
        })
        .collect();
    for g in state.store.directory_groups(None).await? {
        all.push(group_resource(&g, true, &base));
    }
    Ok(scim_json(
        StatusCode::OK,
        &listing.respond(Resource::User, all),
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// Discovery

pub async fn service_provider_config(State(state): State<AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        &schema::service_provider_config(&base(&state)),
        None,
    )
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"schemas": [schema::LIST_URN], "totalResults": items.len(), "startIndex": 1,
        "itemsPerPage": items.len(), "Resources": items})
}

pub async fn resource_types(State(state): State<AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        &list_of(schema::resource_types(&base(&state))),
        None,
    )
}

pub async fn resource_type(State(state): State<AppState>, Path(id): Path<String>) -> ScimResult {
    schema::resource_types(&base(&state))
        .into_iter()
        .find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(&id))
        })
        .map(|r| scim_json(StatusCode::OK, &r, None))
        .ok_or_else(|| ScimError::not_found("resource type"))
}

pub async fn schemas(State(state): State<AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        &list_of(schema::schemas(&base(&state))),
        None,
    )
}

pub async fn schema(State(state): State<AppState>, Path(id): Path<String>) -> ScimResult {
    schema::schemas(&base(&state))
        .into_iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(&id))
        })
        .map(|s| scim_json(StatusCode::OK, &s, None))
        .ok_or_else(|| ScimError::not_found("schema"))
}
