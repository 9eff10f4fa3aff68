//! Fuzz targets (`make fuzz`) for what the SCIM server reads from a provisioning client: User
//! and Group bodies, PATCH bodies and operations, list and `.search` parameters, headers.

use super::document::{
    Doc, Meta, group_write, normalize, parse_attr_list, project, prune, resource_json, user_write,
};
use super::error::ScimError;
use super::patch::{PatchOperation, PatchRequest, apply};
use super::query::{ListParams, Listing};
use super::schema::{ENTERPRISE_URN, MAX_RESULTS, PATCH_URN, Resource};
use super::{if_match, parse_body};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use toolgate_domain::fuzz::{
    config, hostile_string, json_value, key_strategy, raw_bytes, short_hostile_string,
};

/// Attribute names, sub-attributes and URNs of the SCIM schema (and a few it does not have),
/// so that generated documents reach the code behind each one.
const SCIM_KEYS: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "externalId",
    "userName",
    "displayName",
    "nickName",
    "active",
    "title",
    "userType",
    "name",
    "givenName",
    "familyName",
    "formatted",
    "emails",
    "phoneNumbers",
    "addresses",
    "streetAddress",
    "ims",
    "roles",
    "entitlements",
    "x509Certificates",
    "value",
    "type",
    "primary",
    "display",
    "$ref",
    "members",
    "groups",
    "manager",
    "employeeNumber",
    "department",
    "costCenter",
    ENTERPRISE_URN,
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0User",
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
    "urn:ietf:params:scim:schemas:extension:other:1.0:User",
    "name.givenName",
    "emails[type eq \"work\"].value",
    "True",
    "False",
    "work",
];

/// The members of a `.search` body.
const SEARCH_KEYS: &[&str] = &[
    "filter",
    "startIndex",
    "count",
    "attributes",
    "excludedAttributes",
    "sortBy",
    "sortOrder",
];

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![Just(Resource::User), Just(Resource::Group)]
}

/// Values for one SCIM attribute: right and wrong types, Entra's string booleans and arrays.
fn attr_value() -> BoxedStrategy<Value> {
    let multi_item =
        prop::collection::vec((key_strategy(SCIM_KEYS), json_value(1, SCIM_KEYS)), 0..4)
            .prop_map(|e| Value::Object(e.into_iter().collect::<Map<_, _>>()));
    prop_oneof![
        3 => json_value(3, SCIM_KEYS),
        2 => prop::collection::vec(multi_item, 0..4).prop_map(Value::Array),
        1 => prop::sample::select(vec!["True", "false", "FALSE", "", " "]).prop_map(Value::from),
    ]
    .boxed()
}

/// A User or Group body: an object with schema attribute names (in odd cases too), the
/// enterprise extension as an object or not, and sometimes no object at all.
fn scim_body() -> BoxedStrategy<Value> {
    let object = prop::collection::vec((key_strategy(SCIM_KEYS), attr_value()), 0..10)
        .prop_map(|e| Value::Object(e.into_iter().collect::<Map<_, _>>()));
    prop_oneof![
        8 => object,
        1 => json_value(4, SCIM_KEYS),
    ]
    .boxed()
}

/// A SCIM error as a client sees it: a 4xx with a `scimType` and some detail.
fn check_client_error(e: &ScimError) -> Result<(), TestCaseError> {
    prop_assert!(e.status.is_client_error(), "{e:?}");
    prop_assert!(!e.detail.trim().is_empty(), "{e:?}");
    Ok(())
}

/// No null, empty string, empty array or empty object anywhere (what `prune` promises).
fn assert_pruned(v: &Value) -> Result<(), TestCaseError> {
    match v {
        Value::Null => prop_assert!(false, "null kept"),
        Value::String(s) => prop_assert!(!s.is_empty(), "empty string kept"),
        Value::Array(items) => {
            prop_assert!(!items.is_empty(), "empty array kept");
            for i in items {
                assert_pruned(i)?;
            }
        }
        Value::Object(o) => {
            prop_assert!(!o.is_empty(), "empty object kept");
            for v in o.values() {
                assert_pruned(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn meta(resource: Resource) -> Meta<'static> {
    Meta {
        resource,
        id: "2819c223-7f76-453a-919d-413861904646",
        created: chrono::DateTime::UNIX_EPOCH,
        last_modified: chrono::DateTime::UNIX_EPOCH,
        version: 3,
        base: "https://tg.example.com/scim/v2",
    }
}

/// A user as Entra creates one, normalised.
fn sample_user() -> Doc {
    normalize(
        Resource::User,
        json!({"userName": "a@contoso.com", "active": true, "displayName": "A",
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"type": "work", "value": "a@contoso.com", "primary": true},
                       {"type": "home", "value": "a@home.example"}],
            "phoneNumbers": [{"type": "mobile", "value": "+1 555"}],
            ENTERPRISE_URN: {"department": "D", "manager": {"value": "m1"}}}),
    )
    .map(|(doc, _)| doc)
    .unwrap_or_default()
}

fn sample_group() -> Doc {
    let mut doc = Doc::new();
    doc.insert("displayName".into(), json!("Engineers"));
    doc.insert(
        "members".into(),
        json!([{"value": "u1"}, {"value": "u2", "display": "Two"}]),
    );
    doc
}

/// PATCH paths: attribute names, dotted and URN-qualified names, value filters, and junk.
fn patch_path() -> BoxedStrategy<String> {
    let name = prop::sample::select(SCIM_KEYS).prop_map(str::to_string);
    let filter = prop::sample::select(vec![
        "type eq \"work\"",
        "type eq work",
        "value eq \"u1\"",
        "primary eq true",
        "type eq \"work\" and primary eq true",
        "type eq \"x\" or value pr",
        "not (type eq \"work\")",
        "value eq null",
        "type sw \"w\"",
        "value gt 1",
    ]);
    prop_oneof![
        3 => name.clone(),
        2 => (name.clone(), name.clone()).prop_map(|(a, b)| format!("{a}.{b}")),
        1 => name.clone().prop_map(|a| format!("{ENTERPRISE_URN}:{a}")),
        3 => (name.clone(), filter, prop::option::of(name))
            .prop_map(|(a, f, s)| match s {
                Some(s) => format!("{a}[{f}].{s}"),
                None => format!("{a}[{f}]"),
            }),
        2 => short_hostile_string(),
    ]
    .boxed()
}

fn patch_operation() -> BoxedStrategy<PatchOperation> {
    let op = prop_oneof![
        4 => prop::sample::select(vec!["add", "replace", "remove", "Add", "Replace", "Remove", "REMOVE"])
            .prop_map(str::to_string),
        1 => short_hostile_string(),
    ];
    (
        op,
        prop::option::weighted(0.85, patch_path()),
        prop::option::weighted(0.85, attr_value()),
    )
        .prop_map(|(op, path, value)| PatchOperation { op, path, value })
        .boxed()
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    h
}

proptest! {
    #![proptest_config(config(400))]

    /// POST/PUT bodies: an error is a 4xx SCIM error; an accepted body becomes a canonical
    /// document (pruned, without server-owned attributes, unchanged by a second pass) whose
    /// indexed fields and resource JSON can be built.
    #[test]
    fn fuzz_scim_resource_bodies(resource in resource(), body in scim_body()) {
        let (doc, members) = match normalize(resource, body) {
            Ok(found) => found,
            Err(e) => return check_client_error(&e),
        };
        for key in ["id", "meta", "schemas", "members"] {
            prop_assert!(!doc.contains_key(key), "{key} kept: {doc:?}");
        }
        let as_value = Value::Object(doc.clone());
        if !doc.is_empty() {
            assert_pruned(&as_value)?;
        }
        match normalize(resource, as_value.clone()) {
            Ok((again, again_members)) => {
                prop_assert_eq!(&again, &doc);
                prop_assert!(again_members.is_none());
            }
            Err(e) => prop_assert!(false, "a canonical document was refused: {e:?}: {doc:?}"),
        }
        if resource == Resource::User {
            prop_assert!(members.is_none());
            match user_write(&doc) {
                Ok(w) => {
                    prop_assert!(!w.user_name.trim().is_empty());
                    prop_assert!(w.display_name.chars().count() <= 256);
                    prop_assert_eq!(serde_json::from_str::<Value>(&w.doc).ok(), Some(as_value));
                }
                Err(e) => check_client_error(&e)?,
            }
        } else if let Err(e) = group_write(&doc) {
            check_client_error(&e)?;
        }
        let full = resource_json(&doc, &meta(resource), Some(("groups", vec![json!({"value": "g1"})])));
        prop_assert_eq!(project(resource, full.clone(), &[], &[]), full);
    }

    /// The same, from raw request bytes (what `parse_body` sees).
    #[test]
    fn fuzz_scim_resource_raw_bodies(resource in resource(), body in prop_oneof![
        raw_bytes(),
        toolgate_domain::fuzz::deeply_nested_json().prop_map(String::into_bytes),
        scim_body().prop_map(|v| v.to_string().into_bytes()),
    ]) {
        match parse_body::<Value>(&json_headers(), &Bytes::from(body)) {
            Err(e) => check_client_error(&e)?,
            Ok(v) => if let Err(e) = normalize(resource, v) {
                check_client_error(&e)?;
            },
        }
    }

    /// PATCH operations against a real user or group: either applied (the document stays
    /// pruned and its indexed fields can be derived) or refused as a 4xx.
    #[test]
    fn fuzz_scim_patch_operations(
        resource in resource(),
        ops in prop::collection::vec(patch_operation(), 1..6),
    ) {
        let mut doc = match resource {
            Resource::User => sample_user(),
            Resource::Group => sample_group(),
        };
        match apply(resource, &mut doc, ops) {
            Err(e) => check_client_error(&e)?,
            Ok(()) => {
                let mut again = doc.clone();
                prune(&mut again);
                prop_assert_eq!(&again, &doc);
                let _ = match resource {
                    Resource::User => user_write(&doc).map(|_| ()),
                    Resource::Group => group_write(&doc).map(|_| ()),
                };
                let _ = resource_json(&doc, &meta(resource), None);
            }
        }
    }

    /// PATCH bodies as bytes: the `PatchRequest` shape, then the operations.
    #[test]
    fn fuzz_scim_patch_raw_bodies(body in prop_oneof![
        raw_bytes(),
        (prop::collection::vec(json_value(3, SCIM_KEYS), 0..4), any::<bool>()).prop_map(|(ops, schemas)| {
            let mut b = json!({"Operations": ops});
            if schemas {
                b["schemas"] = json!([PATCH_URN]);
            }
            b.to_string().into_bytes()
        }),
    ]) {
        match parse_body::<PatchRequest>(&json_headers(), &Bytes::from(body)) {
            Err(e) => check_client_error(&e)?,
            Ok(req) => {
                let mut doc = sample_user();
                if let Err(e) = apply(Resource::User, &mut doc, req.operations) {
                    check_client_error(&e)?;
                }
            }
        }
    }

    /// List and `.search` parameters: refused as a 4xx, or a ListResponse whose page respects
    /// `startIndex` and `count`.
    #[test]
    fn fuzz_scim_list_params(
        resource in resource(),
        filter in prop::option::of(prop_oneof![
            hostile_string(),
            patch_path().prop_map(|p| format!("{p} pr")),
            Just("userName eq \"a@contoso.com\"".to_string()),
        ]),
        start_index in prop::option::of(any::<i64>()),
        count in prop::option::of(prop_oneof![any::<i64>(), -5..5i64]),
        attributes in prop::option::of(prop_oneof![patch_path(), short_hostile_string()]),
        excluded in prop::option::of(patch_path()),
        sort_by in prop::option::of(patch_path()),
        sort_order in prop::option::of(prop_oneof![
            Just("descending".to_string()),
            Just("Ascending".to_string()),
            short_hostile_string(),
        ]),
    ) {
        let params = ListParams {
            filter,
            start_index,
            count,
            attributes,
            excluded_attributes: excluded,
            sort_by,
            sort_order,
        };
        let listing = match Listing::new(params) {
            Ok(l) => l,
            Err(e) => return check_client_error(&e),
        };
        let _ = listing.index_key(resource);
        let _ = listing.wants("members");
        let all: Vec<Value> = (0..5)
            .map(|i| {
                let mut doc = sample_user();
                doc.insert("userName".into(), json!(format!("u{i}@contoso.com")));
                let id = format!("id-{i}");
                resource_json(&doc, &Meta { id: &id, ..meta(Resource::User) }, None)
            })
            .collect();
        let out = listing.respond(resource, all);
        let total = out["totalResults"].as_u64().unwrap_or(u64::MAX);
        let per_page = out["itemsPerPage"].as_u64().unwrap_or(u64::MAX);
        prop_assert!(total <= 5, "{out}");
        prop_assert!(per_page <= total.min(count.map_or(MAX_RESULTS as u64, |c| c.clamp(0, MAX_RESULTS as i64) as u64)), "{out}");
        prop_assert!(out["startIndex"].as_u64().is_some_and(|s| s >= 1), "{out}");
        prop_assert_eq!(out["Resources"].as_array().map(Vec::len), Some(per_page as usize));
    }

    /// `.search` bodies, `attributes` lists and the headers a SCIM request carries.
    #[test]
    fn fuzz_scim_search_bodies_and_headers(
        body in prop_oneof![raw_bytes(), json_value(3, SEARCH_KEYS).prop_map(|v| v.to_string().into_bytes())],
        content_type in prop::option::of(prop_oneof![
            Just("application/scim+json; charset=utf-8".to_string()),
            Just("Application/JSON".to_string()),
            short_hostile_string(),
        ]),
        if_match_value in prop::option::of(prop_oneof![
            Just("W/\"3\"".to_string()),
            Just("*".to_string()),
            "[ -~]{0,30}",
        ]),
        attrs in prop::option::of(hostile_string()),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [(header::CONTENT_TYPE, &content_type), (header::IF_MATCH, &if_match_value)] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        match parse_body::<ListParams>(&headers, &Bytes::from(body)) {
            Ok(p) => if let Err(e) = Listing::new(p) {
                check_client_error(&e)?;
            },
            Err(e) => check_client_error(&e)?,
        }
        if let Err(e) = if_match(&headers) {
            check_client_error(&e)?;
        }
        if let Err(e) = parse_attr_list(attrs.as_deref()) {
            check_client_error(&e)?;
        }
    }
}
