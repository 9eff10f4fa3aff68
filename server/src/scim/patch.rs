//! SCIM PATCH (RFC 7644 §3.5.2) on canonical documents, with what Microsoft Entra sends in both
//! of its modes: op names in any case, string booleans, `emails[type eq "work"].value` paths that
//! create the element when missing, path-less `replace` with dotted and URN keys, the manager
//! as an array or cleared with `{"value": ""}`, and `members` changes with and without filters.

use super::document::{Doc, container, normalize_value, prune};
use super::error::ScimError;
use super::schema::{Attr, Kind, Mutability, Resource, canonical_urn, resolve, sub_attr};
use serde::Deserialize;
use serde_json::{Map, Value};
use toolgate_domain::scim_filter::{
    CompValue, CompareOp, Filter, PatchPath, matches, parse_patch_path,
};

/// One PATCH operation as sent.
#[derive(Debug, Deserialize)]
pub struct PatchOperation {
    pub op: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A PATCH request body.
#[derive(Debug, Deserialize)]
pub struct PatchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<PatchOperation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Applies every operation to `doc` in order; on any error nothing is kept (the caller works on
/// a copy).
pub fn apply(resource: Resource, doc: &mut Doc, ops: Vec<PatchOperation>) -> Result<(), ScimError> {
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "at most {MAX_OPERATIONS} operations per PATCH"
        )));
    }
    for o in ops {
        let op = match o.op.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            other => {
                return Err(ScimError::invalid_syntax(format!(
                    "unknown PATCH op {other:?}"
                )));
            }
        };
        match o.path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            Some(path) => apply_path(resource, doc, op, path, o.value)?,
            None => apply_pathless(resource, doc, op, o.value)?,
        }
    }
    prune(doc);
    Ok(())
}

/// `add`/`replace` without a path: every key of the value object is an attribute, a dotted
/// `attr.sub`, a URN-qualified attribute, or a schema URN whose value holds extension attributes.
fn apply_pathless(
    resource: Resource,
    doc: &mut Doc,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    if op == Op::Remove {
        return Err(ScimError::no_target("remove needs a path"));
    }
    let Some(Value::Object(obj)) = value else {
        return Err(ScimError::invalid_value(
            "an operation without a path needs an object value",
        ));
    };
    for (k, v) in obj {
        if matches!(k.to_ascii_lowercase().as_str(), "id" | "schemas" | "meta") {
            continue;
        }
        if let Some(urn) = canonical_urn(&k) {
            let Value::Object(inner) = v else {
                return Err(ScimError::invalid_value(format!("{k} must be an object")));
            };
            for (ik, iv) in inner {
                if matches!(ik.to_ascii_lowercase().as_str(), "id" | "schemas" | "meta") {
                    continue;
                }
                apply_path(resource, doc, op, &format!("{urn}:{ik}"), Some(iv))?;
            }
            continue;
        }
        apply_path(resource, doc, op, &k, Some(v))?;
    }
    Ok(())
}

fn apply_path(
    resource: Resource,
    doc: &mut Doc,
    op: Op,
    path: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    if path.eq_ignore_ascii_case("externalId") {
        return set_external_id(doc, op, value);
    }
    if let Some(urn) = canonical_urn(path) {
        // The whole extension as the path: its value holds extension attributes.
        return match (op, value) {
            (Op::Remove, _) => {
                doc.remove(urn);
                Ok(())
            }
            (_, Some(Value::Object(inner))) => {
                for (k, v) in inner {
                    if matches!(k.to_ascii_lowercase().as_str(), "id" | "schemas" | "meta") {
                        continue;
                    }
                    apply_path(resource, doc, op, &format!("{urn}:{k}"), Some(v))?;
                }
                Ok(())
            }
            _ => Err(ScimError::invalid_value(format!(
                "{path} takes an object value"
            ))),
        };
    }
    let parsed: PatchPath = parse_patch_path(path)
        .map_err(|e| ScimError::invalid_path(format!("bad path {path:?}: {e}")))?;
    let resolved = resolve(resource, parsed.path.uri.as_deref(), &parsed.path.attr)
        .ok_or_else(|| ScimError::invalid_path(format!("no attribute {path:?}")))?;
    let attr = resolved.attr;
    if attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("{} is read-only", attr.name)));
    }
    // The sub-attribute can come from `attr.sub` or from `attr[filter].sub`.
    let sub_name = parsed
        .path
        .sub_attr
        .as_deref()
        .or(parsed.sub_attr.as_deref());
    let sub = match sub_name {
        Some(s) => Some(sub_attr(attr, s).ok_or_else(|| {
            ScimError::invalid_path(format!("no sub-attribute {s:?} of {}", attr.name))
        })?),
        None => None,
    };
    if parsed.filter.is_some() && !attr.multi {
        return Err(ScimError::invalid_filter(format!(
            "{} is not multi-valued",
            attr.name
        )));
    }
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "{path}: add and replace need a value"
        )));
    }
    let holder = container(doc, resolved.scope);
    match (parsed.filter, sub) {
        (None, None) => whole(holder, attr, op, value),
        (None, Some(sub)) => sub_everywhere(holder, attr, sub, op, value),
        (Some(filter), sub) => filtered(holder, attr, &filter, sub, op, value),
    }
}

fn set_external_id(doc: &mut Doc, op: Op, value: Option<Value>) -> Result<(), ScimError> {
    match (op, value) {
        (Op::Remove, _) | (_, Some(Value::Null)) => {
            doc.remove("externalId");
        }
        (_, Some(Value::String(s))) => {
            doc.insert("externalId".into(), Value::String(s));
        }
        (_, other) => {
            return Err(ScimError::invalid_value(format!(
                "externalId must be a string, got {other:?}"
            )));
        }
    }
    Ok(())
}

/// Equality of two values of a multi-valued attribute: by `value` when both have one.
fn same_item(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Only one element may be primary: a new primary clears the others.
fn fix_primary(items: &mut [Value], newest_primary: Option<usize>) {
    if let Some(keep) = newest_primary {
        for (i, item) in items.iter_mut().enumerate() {
            if i != keep
                && let Some(o) = item.as_object_mut()
                && o.get("primary") == Some(&Value::Bool(true))
            {
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

fn whole(
    holder: &mut Doc,
    attr: &'static Attr,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = attr.name.to_string();
    match op {
        Op::Remove => match (attr.multi, value) {
            // Entra without the flag: remove the listed members (or values) only.
            (true, Some(v)) if !v.is_null() => {
                let gone = normalize_value(attr, v)?;
                let gone = gone.as_array().cloned().unwrap_or_default();
                if let Some(Value::Array(items)) = holder.get_mut(&key) {
                    items.retain(|i| !gone.iter().any(|g| same_item(i, g)));
                }
            }
            _ => {
                holder.remove(&key);
            }
        },
        Op::Add | Op::Replace => {
            let v = normalize_value(attr, value.unwrap_or(Value::Null))?;
            if attr.multi {
                let new_items = v.as_array().cloned().unwrap_or_default();
                let mut items = match (op, holder.remove(&key)) {
                    (Op::Add, Some(Value::Array(existing))) => existing,
                    _ => vec![],
                };
                let mut newest_primary = None;
                for item in new_items {
                    let primary = item.get("primary") == Some(&Value::Bool(true));
                    let pos = match items.iter().position(|i| same_item(i, &item)) {
                        Some(p) => {
                            merge(&mut items[p], item);
                            p
                        }
                        None => {
                            items.push(item);
                            items.len() - 1
                        }
                    };
                    if primary {
                        newest_primary = Some(pos);
                    }
                }
                fix_primary(&mut items, newest_primary);
                holder.insert(key, Value::Array(items));
            } else if attr.kind == Kind::Complex && op == Op::Add {
                match holder.get_mut(&key) {
                    Some(existing) if existing.is_object() => merge(existing, v),
                    _ => {
                        holder.insert(key, v);
                    }
                }
            } else if attr.kind == Kind::Complex {
                // Replace of a complex single value: the given sub-attributes replace or add; an
                // empty `value` clears it (Entra's manager removal).
                let clears = v.get("value").is_some_and(|x| x.as_str() == Some(""));
                if clears || v.is_null() {
                    holder.remove(&key);
                } else {
                    match holder.get_mut(&key) {
                        Some(existing) if existing.is_object() => merge(existing, v),
                        _ => {
                            holder.insert(key, v);
                        }
                    }
                }
            } else {
                holder.insert(key, v);
            }
        }
    }
    Ok(())
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                a.insert(k, v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `attr.sub` without a filter: on a single complex value, the sub-attribute; on a multi-valued
/// one, the sub-attribute of every element.
fn sub_everywhere(
    holder: &mut Doc,
    attr: &'static Attr,
    sub: &'static Attr,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = attr.name.to_string();
    let v = match op {
        Op::Remove => Value::Null,
        _ => super::schema::coerce(sub, value.unwrap_or(Value::Null))
            .map_err(ScimError::invalid_value)?,
    };
    if attr.multi {
        if let Some(Value::Array(items)) = holder.get_mut(&key) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                set_sub(item, sub, v.clone());
            }
        }
        return Ok(());
    }
    let entry = holder
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    set_sub(entry.as_object_mut().expect("object"), sub, v);
    Ok(())
}

fn set_sub(obj: &mut Map<String, Value>, sub: &'static Attr, v: Value) {
    if v.is_null() {
        obj.remove(sub.name);
    } else {
        obj.insert(sub.name.to_string(), v);
    }
}

/// `attr[filter]` and `attr[filter].sub` on a multi-valued attribute.
fn filtered(
    holder: &mut Doc,
    attr: &'static Attr,
    filter: &Filter,
    sub: Option<&'static Attr>,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = attr.name.to_string();
    let items = holder
        .entry(key.clone())
        .or_insert_with(|| Value::Array(vec![]));
    if !items.is_array() {
        *items = Value::Array(vec![]);
    }
    let items = items.as_array_mut().expect("array");
    let hits: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches(filter, i))
        .map(|(n, _)| n)
        .collect();
    match (op, sub) {
        (Op::Remove, None) => {
            let mut n = 0;
            items.retain(|_| {
                let keep = !hits.contains(&n);
                n += 1;
                keep
            });
        }
        (Op::Remove, Some(sub)) => {
            for &h in &hits {
                if let Some(o) = items[h].as_object_mut() {
                    o.remove(sub.name);
                }
            }
        }
        (_, Some(sub)) => {
            let v = super::schema::coerce(sub, value.unwrap_or(Value::Null))
                .map_err(ScimError::invalid_value)?;
            if hits.is_empty() {
                // Entra replaces `emails[type eq "work"].value` on users that have no work email
                // yet: create the element the filter describes.
                let mut item = equality_terms(filter).ok_or_else(|| {
                    ScimError::no_target(format!("no {key} value matches the filter"))
                })?;
                item.insert(sub.name.to_string(), v);
                items.push(Value::Object(item));
            } else {
                for &h in &hits {
                    if let Some(o) = items[h].as_object_mut() {
                        set_sub(o, sub, v.clone());
                    }
                }
            }
        }
        (_, None) => {
            let v = normalize_value(attr, value.unwrap_or(Value::Null))?;
            let replacement = v
                .as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(Value::Null);
            if hits.is_empty() {
                return Err(ScimError::no_target(format!(
                    "no {key} value matches the filter"
                )));
            }
            for &h in &hits {
                if op == Op::Replace {
                    items[h] = replacement.clone();
                } else {
                    merge(&mut items[h], replacement.clone());
                }
            }
        }
    }
    Ok(())
}

/// The `attr eq "x" and attr2 eq "y"` terms of a filter as an object, or `None` when the filter
/// is anything else (then no element can be created from it).
fn equality_terms(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub_attr.is_none() && path.uri.is_none() => {
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            let mut m = Map::new();
            m.insert(path.attr.clone(), v);
            Some(m)
        }
        Filter::And(a, b) => {
            let mut m = equality_terms(a)?;
            m.extend(equality_terms(b)?);
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::document::normalize;
    use crate::scim::schema::ENTERPRISE_URN;
    use serde_json::json;

    fn user() -> Doc {
        normalize(
            Resource::User,
            json!({"userName": "a@contoso.com", "active": true, "name": {"givenName": "A", "familyName": "B"},
                "emails": [{"type": "work", "value": "a@contoso.com", "primary": true}]}),
        )
        .unwrap()
        .0
    }

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value::<PatchRequest>(
            json!({"schemas": [crate::scim::schema::PATCH_URN], "Operations": v}),
        )
        .unwrap()
        .operations
    }

    #[test]
    fn entra_user_updates_without_the_flag() {
        let mut d = user();
        apply(Resource::User, &mut d, ops(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@contoso.com"},
            {"op": "Replace", "path": "name.familyName", "value": "C"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "42"},
            {"op": "Add", "path": "manager", "value": [{"$ref": null, "value": "mgr-1"}]},
            {"op": "Replace", "path": "userName", "value": "renamed@contoso.com"},
        ]))).unwrap();
        assert_eq!(d["emails"][0]["value"], "new@contoso.com");
        assert_eq!(d["name"]["familyName"], "C");
        assert_eq!(d["active"], json!(false));
        assert_eq!(d[ENTERPRISE_URN]["employeeNumber"], "42");
        assert_eq!(d[ENTERPRISE_URN]["manager"]["value"], "mgr-1");
        assert_eq!(d["userName"], "renamed@contoso.com");
        // Manager removal as Entra sends it.
        apply(Resource::User, &mut d, ops(json!([
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": ""}}
        ]))).unwrap();
        assert!(d[ENTERPRISE_URN].get("manager").is_none(), "{d:?}");
    }

    #[test]
    fn pathless_replace_with_dotted_and_urn_keys() {
        let mut d = user();
        apply(
            Resource::User,
            &mut d,
            ops(json!([{"op": "replace", "value": {
                "displayName": "X", "name.givenName": "Y", "active": false,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Z",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}
            }}])),
        )
        .unwrap();
        assert_eq!(d["displayName"], "X");
        assert_eq!(d["name"]["givenName"], "Y");
        assert_eq!(d["name"]["familyName"], "B");
        assert_eq!(d["active"], json!(false));
        assert_eq!(d[ENTERPRISE_URN]["employeeNumber"], "Z");
        assert_eq!(d[ENTERPRISE_URN]["department"], "D");
    }

    #[test]
    fn filtered_paths_create_and_remove() {
        let mut d = user();
        apply(Resource::User, &mut d, ops(json!([
            {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
            {"op": "add", "path": "emails", "value": [{"type": "home", "value": "h@x", "primary": true}]},
        ]))).unwrap();
        assert_eq!(
            d["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        assert_eq!(d["emails"].as_array().unwrap().len(), 2);
        assert_eq!(
            d["emails"][0]["primary"],
            json!(false),
            "a new primary clears the old one"
        );
        apply(
            Resource::User,
            &mut d,
            ops(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])),
        )
        .unwrap();
        assert_eq!(d["emails"].as_array().unwrap().len(), 1);
        apply(
            Resource::User,
            &mut d,
            ops(json!([{"op": "remove", "path": "phoneNumbers"}])),
        )
        .unwrap();
        assert!(d.get("phoneNumbers").is_none());
    }

    #[test]
    fn group_members_in_every_form() {
        let mut d: Doc =
            serde_json::from_value(json!({"displayName": "G", "members": [{"value": "u1"}]}))
                .unwrap();
        apply(Resource::Group, &mut d, ops(json!([
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u2"}, {"value": "u3"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
            {"op": "remove", "path": "members[value eq \"u3\"]"},
            {"op": "Replace", "path": "displayName", "value": "G2"},
        ]))).unwrap();
        assert_eq!(d["members"], json!([{"value": "u2"}]));
        assert_eq!(d["displayName"], "G2");
        apply(
            Resource::Group,
            &mut d,
            ops(json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]}])),
        )
        .unwrap();
        assert_eq!(d["members"], json!([{"value": "u9"}]));
    }

    #[test]
    fn bad_operations_are_scim_errors() {
        let cases = [
            json!([{"op": "move", "path": "userName", "value": "x"}]),
            json!([{"op": "remove"}]),
            json!([{"op": "add", "path": "nonsense", "value": "x"}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
            json!([{"op": "add", "path": "userName[value eq \"x\"]", "value": "x"}]),
            json!([{"op": "replace", "path": "active", "value": "perhaps"}]),
            json!([{"op": "replace", "path": "emails[type eq \"nope\"]", "value": {"value": "x"}}]),
            json!([{"op": "add", "path": "userName"}]),
            json!([{"op": "add", "path": "emails[", "value": "x"}]),
        ];
        for c in cases {
            let mut d = user();
            let e = apply(Resource::User, &mut d, ops(c.clone())).unwrap_err();
            assert_eq!(e.status, 400, "{c}");
            assert!(e.scim_type.is_some(), "{c}");
        }
    }
}
