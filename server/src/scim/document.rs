//! SCIM documents: incoming JSON normalised to canonical attribute names and types (what the
//! store keeps), the indexed fields derived from it, and the resource sent back (with `id`,
//! `schemas`, `meta` and the computed `groups`/`members`), projected by `attributes` /
//! `excludedAttributes`.

use super::error::ScimError;
use super::schema::{
    Attr, ENTERPRISE_URN, Kind, Mutability, Resource, Scope, canonical_urn, coerce, resolve,
    sub_attr,
};
use serde_json::{Map, Value, json};
use toolgate_domain::scim_filter::AttrPath;
use toolgate_domain::store::{GroupWrite, UserWrite};

/// A canonical document: attribute names as the schema spells them, the enterprise extension
/// under its URN, no `id`/`meta`/`schemas`.
pub type Doc = Map<String, Value>;

/// Normalises one attribute value to its definition (multi-valued as arrays, complex with
/// canonical sub-attribute names, Entra's string booleans as booleans).
pub fn normalize_value(attr: &'static Attr, value: Value) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if attr.multi {
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let v = normalize_single(attr, item)?;
            if !v.is_null() {
                out.push(v);
            }
        }
        return Ok(Value::Array(out));
    }
    // Entra sends the manager as `[{"value": id}]` or a bare id.
    let value = match (attr.kind, value) {
        (Kind::Complex, Value::Array(mut items)) if items.len() <= 1 => {
            items.pop().unwrap_or(Value::Null)
        }
        (Kind::Complex, Value::String(s)) if attr.sub.iter().any(|a| a.name == "value") => {
            json!({"value": s})
        }
        (_, v) => v,
    };
    normalize_single(attr, value)
}

fn normalize_single(attr: &'static Attr, value: Value) -> Result<Value, ScimError> {
    if attr.kind != Kind::Complex {
        return coerce(attr, value).map_err(ScimError::invalid_value);
    }
    let Value::Object(obj) = value else {
        // A multi-valued complex attribute given plain values (`"emails": ["a@b"]`) means their
        // `value` (where it has one: a plain address is refused, not stored under a made-up key).
        if attr.multi && value.is_string() && sub_attr(attr, "value").is_some() {
            return Ok(json!({"value": value}));
        }
        return Err(ScimError::invalid_value(format!(
            "attribute {:?} takes an object",
            attr.name
        )));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let Some(sub) = sub_attr(attr, &k) else {
            continue; // Unknown sub-attributes are ignored, as RFC 7644 allows.
        };
        let v = coerce(sub, v).map_err(ScimError::invalid_value)?;
        if !v.is_null() {
            out.insert(sub.name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

/// Normalises a whole incoming resource (POST/PUT body) into a document. Read-only attributes
/// (`id`, `meta`, `groups`) and unknown attributes are dropped; for groups `members` is returned
/// separately.
pub fn normalize(resource: Resource, input: Value) -> Result<(Doc, Option<Value>), ScimError> {
    let Value::Object(obj) = input else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let mut doc = Doc::new();
    let mut members = None;
    for (k, v) in obj {
        let lower = k.to_ascii_lowercase();
        match lower.as_str() {
            "schemas" | "id" | "meta" => continue,
            "externalid" => {
                match v {
                    Value::String(s) => {
                        doc.insert("externalId".into(), Value::String(s));
                    }
                    Value::Null => {}
                    other => {
                        return Err(ScimError::invalid_value(format!(
                            "externalId must be a string, got {other}"
                        )));
                    }
                }
                continue;
            }
            _ => {}
        }
        if let Some(urn) = canonical_urn(&k) {
            let Value::Object(inner) = v else {
                return Err(ScimError::invalid_value(format!("{k} must be an object")));
            };
            for (ik, iv) in inner {
                set_attr(resource, &mut doc, Some(urn), &ik, iv, &mut members)?;
            }
            continue;
        }
        set_attr(resource, &mut doc, None, &k, v, &mut members)?;
    }
    prune(&mut doc);
    Ok((doc, members))
}

fn set_attr(
    resource: Resource,
    doc: &mut Doc,
    urn: Option<&str>,
    name: &str,
    value: Value,
    members: &mut Option<Value>,
) -> Result<(), ScimError> {
    let Some(resolved) = resolve(resource, urn, name) else {
        return Ok(());
    };
    if resource == Resource::Group && resolved.attr.name == "members" {
        *members = Some(normalize_value(resolved.attr, value)?);
        return Ok(());
    }
    if resolved.attr.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let value = normalize_value(resolved.attr, value)?;
    container(doc, resolved.scope).insert(resolved.attr.name.to_string(), value);
    Ok(())
}

/// The object an attribute of `scope` lives in (the extension object is created on demand).
pub fn container(doc: &mut Doc, scope: Scope) -> &mut Doc {
    match scope {
        Scope::Core => doc,
        Scope::Enterprise => {
            let ext = doc
                .entry(ENTERPRISE_URN.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !ext.is_object() {
                *ext = Value::Object(Map::new());
            }
            ext.as_object_mut().expect("just made an object")
        }
    }
}

/// Removes nulls, empty strings, empty objects and empty arrays, recursively: in SCIM an
/// attribute set to "" or null is cleared (Entra clears the manager with `{"value": ""}`).
pub fn prune(doc: &mut Doc) {
    doc.retain(|_, v| prune_value(v));
}

fn prune_value(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => {
            items.retain_mut(prune_value);
            !items.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, v| prune_value(v));
            // A complex value whose `value` was cleared is gone as a whole (manager removal).
            !o.is_empty() && !(o.len() <= 2 && o.contains_key("$ref") && !o.contains_key("value"))
        }
        _ => true,
    }
}

fn str_at<'a>(doc: &'a Doc, key: &str) -> Option<&'a str> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The indexed fields of a user document. `userName` is required; the display name falls back
/// to the formatted, then given + family name, then the user name.
pub fn user_write(doc: &Doc) -> Result<UserWrite, ScimError> {
    let user_name = str_at(doc, "userName")
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?
        .to_string();
    let name = doc.get("name").and_then(Value::as_object);
    let formatted = name
        .and_then(|n| str_at(n, "formatted"))
        .map(str::to_string);
    let given_family = name.map(|n| {
        [str_at(n, "givenName"), str_at(n, "familyName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    });
    let display_name = str_at(doc, "displayName")
        .map(str::to_string)
        .or(formatted)
        .or(given_family.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| user_name.clone());
    Ok(UserWrite {
        user_name,
        display_name: display_name.chars().take(256).collect(),
        external_id: str_at(doc, "externalId").map(str::to_string),
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
        doc: Value::Object(doc.clone()).to_string(),
    })
}

/// The indexed fields of a group document. `displayName` is required.
pub fn group_write(doc: &Doc) -> Result<GroupWrite, ScimError> {
    let display_name = str_at(doc, "displayName")
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?
        .to_string();
    Ok(GroupWrite {
        display_name,
        external_id: str_at(doc, "externalId").map(str::to_string),
        doc: Value::Object(doc.clone()).to_string(),
    })
}

/// Parses a stored document (absent for users created through the admin API).
pub fn stored(doc: Option<&str>) -> Doc {
    doc.and_then(|d| serde_json::from_str::<Doc>(d).ok())
        .unwrap_or_default()
}

/// Metadata for the `meta` attribute.
pub struct Meta<'a> {
    pub resource: Resource,
    pub id: &'a str,
    pub created: chrono::DateTime<chrono::Utc>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    pub version: i64,
    pub base: &'a str,
}

impl Meta<'_> {
    pub fn location(&self) -> String {
        format!("{}/{}/{}", self.base, self.resource.endpoint(), self.id)
    }

    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// The resource as sent: `schemas`, `id`, the document, the computed attribute and `meta`.
pub fn resource_json(doc: &Doc, meta: &Meta<'_>, computed: Option<(&str, Vec<Value>)>) -> Value {
    let mut out = Map::new();
    let mut schemas = vec![Value::String(meta.resource.core_urn().to_string())];
    if doc.contains_key(ENTERPRISE_URN) {
        schemas.push(Value::String(ENTERPRISE_URN.to_string()));
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(meta.id.to_string()));
    for (k, v) in doc {
        out.insert(k.clone(), v.clone());
    }
    if let Some((name, items)) = computed
        && !items.is_empty()
    {
        out.insert(name.to_string(), Value::Array(items));
    }
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    out.insert(
        "meta".into(),
        json!({
            "resourceType": meta.resource.name(),
            "created": fmt(meta.created),
            "lastModified": fmt(meta.last_modified),
            "location": meta.location(),
            "version": meta.etag(),
        }),
    );
    Value::Object(out)
}

/// A parsed `attributes` / `excludedAttributes` list.
pub fn parse_attr_list(list: Option<&str>) -> Result<Vec<AttrPath>, ScimError> {
    let Some(list) = list else { return Ok(vec![]) };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            toolgate_domain::scim_filter::parse_patch_path(s)
                .map(|p| p.path)
                .map_err(|e| ScimError::invalid_syntax(format!("bad attribute name {s:?}: {e}")))
        })
        .collect()
}

/// Where an attribute path points in a resource JSON: (container key or None for top level, key).
fn locate(
    resource: Resource,
    p: &AttrPath,
) -> Option<(Option<&'static str>, String, Option<String>)> {
    // The whole extension: `urn:...:enterprise:2.0:User` parses as uri `...:2.0` + attr `User`.
    if let Some(uri) = p.uri.as_deref()
        && p.sub_attr.is_none()
        && canonical_urn(&format!("{uri}:{}", p.attr)) == Some(ENTERPRISE_URN)
    {
        return Some((None, ENTERPRISE_URN.to_string(), None));
    }
    let top = ["id", "externalId", "meta", "schemas"];
    if p.uri.is_none()
        && let Some(t) = top.iter().find(|t| t.eq_ignore_ascii_case(&p.attr))
    {
        return Some((None, t.to_string(), p.sub_attr.clone()));
    }
    let r = resolve(resource, p.uri.as_deref(), &p.attr)?;
    let scope = match r.scope {
        Scope::Core => None,
        Scope::Enterprise => Some(ENTERPRISE_URN),
    };
    let sub = p
        .sub_attr
        .as_ref()
        .and_then(|s| sub_attr(r.attr, s).map(|a| a.name.to_string()));
    Some((scope, r.attr.name.to_string(), sub))
}

/// Applies `attributes` (keep only these, plus `id` and `schemas`) or `excludedAttributes`
/// (drop these; `id` and `schemas` always stay) to a resource JSON.
pub fn project(
    resource: Resource,
    full: Value,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Value {
    let Value::Object(mut obj) = full else {
        return full;
    };
    if !attributes.is_empty() {
        let mut out = Map::new();
        for key in ["schemas", "id"] {
            if let Some(v) = obj.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        for p in attributes {
            let Some((scope, key, sub)) = locate(resource, p) else {
                continue;
            };
            let src = match scope {
                None => Some(&obj),
                Some(urn) => obj.get(urn).and_then(Value::as_object),
            };
            let Some(v) = src.and_then(|o| o.get(&key)).cloned() else {
                continue;
            };
            let v = match (&sub, v) {
                (Some(sub), Value::Object(o)) => o.get(sub).map(|sv| json!({ sub.clone(): sv })),
                (Some(sub), Value::Array(items)) => Some(Value::Array(
                    items
                        .into_iter()
                        .filter_map(|i| i.get(sub).map(|sv| json!({ sub.clone(): sv })))
                        .collect(),
                )),
                (_, v) => Some(v),
            };
            let Some(v) = v else { continue };
            let dst = match scope {
                None => &mut out,
                Some(urn) => out
                    .entry(urn.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("object"),
            };
            merge_into(dst, &key, v);
        }
        return Value::Object(out);
    }
    for p in excluded {
        let Some((scope, key, sub)) = locate(resource, p) else {
            continue;
        };
        if scope.is_none() && (key == "id" || key == "schemas") {
            continue;
        }
        let target = match scope {
            None => Some(&mut obj),
            Some(urn) => obj.get_mut(urn).and_then(Value::as_object_mut),
        };
        let Some(target) = target else { continue };
        match sub {
            None => {
                target.remove(&key);
            }
            Some(sub) => match target.get_mut(&key) {
                Some(Value::Object(o)) => {
                    o.remove(&sub);
                }
                Some(Value::Array(items)) => {
                    for i in items.iter_mut().filter_map(Value::as_object_mut) {
                        i.remove(&sub);
                    }
                }
                _ => {}
            },
        }
    }
    Value::Object(obj)
}

fn merge_into(dst: &mut Map<String, Value>, key: &str, v: Value) {
    match (dst.get_mut(key), v) {
        (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
        (Some(Value::Array(a)), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                if let (Value::Object(xo), Value::Object(yo)) = (x, y) {
                    xo.extend(yo);
                }
            }
        }
        (_, v) => {
            dst.insert(key.to_string(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_an_entra_create() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
            "externalId": "jyoung",
            "userName": "Test_User@contoso.com",
            "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "Test_User@contoso.com"}],
            "meta": {"resourceType": "User"},
            "Name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName", "extra": 1},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"employeeNumber": "E1", "manager": null},
            "nickName": null
        });
        let (doc, members) = normalize(Resource::User, body).unwrap();
        assert!(members.is_none());
        assert_eq!(doc["active"], json!(true));
        assert_eq!(doc["name"]["givenName"], "givenName");
        assert!(doc["name"].get("extra").is_none());
        assert_eq!(doc[ENTERPRISE_URN]["employeeNumber"], "E1");
        assert!(
            !doc.contains_key("roles")
                && !doc.contains_key("nickName")
                && !doc.contains_key("meta")
        );
        let w = user_write(&doc).unwrap();
        assert_eq!(w.user_name, "Test_User@contoso.com");
        assert_eq!(w.display_name, "givenName familyName");
        assert_eq!(w.external_id.as_deref(), Some("jyoung"));
        assert!(w.active);
    }

    #[test]
    fn user_name_is_required_and_types_are_checked() {
        assert!(
            user_write(
                &normalize(Resource::User, json!({"displayName": "x"}))
                    .unwrap()
                    .0
            )
            .is_err()
        );
        assert!(normalize(Resource::User, json!({"userName": "a", "active": "maybe"})).is_err());
        assert!(normalize(Resource::User, json!({"userName": "a", "name": "flat"})).is_err());
        // Plain values mean `value` only where the attribute has one (found by fuzzing).
        assert!(normalize(Resource::User, json!({"userName": "a", "addresses": "x"})).is_err());
        assert_eq!(
            normalize(Resource::User, json!({"userName": "a", "emails": "a@b"}))
                .unwrap()
                .0["emails"],
            json!([{"value": "a@b"}])
        );
        assert!(normalize(Resource::User, json!([1])).is_err());
    }

    #[test]
    fn group_members_come_apart() {
        let (doc, members) = normalize(
            Resource::Group,
            json!({"displayName": "G", "members": [{"value": "u1", "display": "ignored"}]}),
        )
        .unwrap();
        assert_eq!(group_write(&doc).unwrap().display_name, "G");
        assert_eq!(
            members.unwrap(),
            json!([{"value": "u1"}]),
            "read-only display is dropped"
        );
    }

    #[test]
    fn projection() {
        let full = json!({"schemas": [], "id": "1", "userName": "a", "name": {"givenName": "g", "familyName": "f"},
            "emails": [{"value": "a@b", "type": "work"}], ENTERPRISE_URN: {"department": "d", "employeeNumber": "7"}});
        let attrs = parse_attr_list(Some("userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")).unwrap();
        let p = project(Resource::User, full.clone(), &attrs, &[]);
        assert_eq!(
            p,
            json!({"schemas": [], "id": "1", "userName": "a", "name": {"givenName": "g"}, ENTERPRISE_URN: {"department": "d"}})
        );
        let whole = parse_attr_list(Some(ENTERPRISE_URN)).unwrap();
        let p = project(Resource::User, full.clone(), &[], &whole);
        assert!(p.get(ENTERPRISE_URN).is_none() && p.get("userName").is_some());
        let ex = parse_attr_list(Some("emails, name.familyName, id")).unwrap();
        let p = project(Resource::User, full, &[], &ex);
        assert!(p.get("emails").is_none());
        assert_eq!(p["name"], json!({"givenName": "g"}));
        assert_eq!(p["id"], "1");
    }

    #[test]
    fn pruning_clears_manager_and_empties() {
        let mut doc: Doc = serde_json::from_value(json!({"a": "", "b": null, "c": [], "d": {"value": ""},
            "e": {"$ref": "x", "value": ""}, "keep": "x", "n": {"givenName": "g", "familyName": ""}})).unwrap();
        prune(&mut doc);
        assert_eq!(
            Value::Object(doc),
            json!({"keep": "x", "n": {"givenName": "g"}})
        );
    }
}
