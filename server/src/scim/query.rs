//! Listing: query and `.search` parameters, the filter (with an index fast path for the
//! `attr eq "value"` lookups Entra makes), sorting, paging and the ListResponse.

use super::document::{parse_attr_list, project};
use super::error::ScimError;
use super::schema::{LIST_URN, MAX_RESULTS, Resource};
use serde::Deserialize;
use serde_json::{Value, json};
use toolgate_domain::scim_filter::{AttrPath, CompValue, CompareOp, Filter, matches, parse_filter};
use toolgate_domain::store::DirectoryKey;

/// Query parameters of a list (`GET`) or the body of a `.search` (`POST`). Unknown parameters
/// are ignored: Entra appends flags such as `aadOptscim062020` to every URL.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "list_or_string")]
    pub attributes: Option<String>,
    #[serde(default, deserialize_with = "list_or_string")]
    pub excluded_attributes: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
}

/// `.search` bodies carry attribute lists as arrays; query strings as comma-separated text.
fn list_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::String(s)) => Some(s),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    })
}

/// A prepared list request.
pub struct Listing {
    pub filter: Option<Filter>,
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
    start: usize,
    count: usize,
    sort_by: Option<AttrPath>,
    descending: bool,
}

impl Listing {
    pub fn new(p: ListParams) -> Result<Self, ScimError> {
        let filter = match p.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => {
                Some(parse_filter(f).map_err(|e| ScimError::invalid_filter(format!("{e}")))?)
            }
            None => None,
        };
        let sort_by = match p.sort_by.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => parse_attr_list(Some(s))?.into_iter().next(),
            None => None,
        };
        let descending = match p
            .sort_order
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("ascending") => false,
            Some("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder {other:?} is not ascending or descending"
                )));
            }
        };
        Ok(Listing {
            filter,
            attributes: parse_attr_list(p.attributes.as_deref())?,
            excluded: parse_attr_list(p.excluded_attributes.as_deref())?,
            // RFC 7644 §3.4.2.4: startIndex below 1 counts as 1; count below 0 as 0.
            start: p.start_index.unwrap_or(1).max(1) as usize,
            count: p
                .count
                .unwrap_or(MAX_RESULTS as i64)
                .clamp(0, MAX_RESULTS as i64) as usize,
            sort_by,
            descending,
        })
    }

    /// An index lookup that narrows the candidates: `id`, the name attribute or `externalId`
    /// compared with `eq`, alone or as one side of an `and`. The full filter is applied after.
    pub fn index_key(&self, resource: Resource) -> Option<(DirectoryKey, String)> {
        fn find(f: &Filter, resource: Resource) -> Option<(DirectoryKey, String)> {
            match f {
                Filter::Compare {
                    path,
                    op: CompareOp::Eq,
                    value: CompValue::Str(v),
                } if path.sub_attr.is_none()
                    && path
                        .uri
                        .as_deref()
                        .is_none_or(|u| u.eq_ignore_ascii_case(resource.core_urn())) =>
                {
                    let name_attr = match resource {
                        Resource::User => "userName",
                        Resource::Group => "displayName",
                    };
                    let key = if path.attr.eq_ignore_ascii_case("id") {
                        DirectoryKey::Id
                    } else if path.attr.eq_ignore_ascii_case(name_attr) {
                        DirectoryKey::Name
                    } else if path.attr.eq_ignore_ascii_case("externalId") {
                        DirectoryKey::ExternalId
                    } else {
                        return None;
                    };
                    Some((key, v.clone()))
                }
                Filter::And(a, b) => find(a, resource).or_else(|| find(b, resource)),
                _ => None,
            }
        }
        self.filter.as_ref().and_then(|f| find(f, resource))
    }

    /// Filters, sorts, pages and projects full resources into a ListResponse.
    pub fn respond(&self, resource: Resource, all: Vec<Value>) -> Value {
        let mut hits: Vec<Value> = match &self.filter {
            Some(f) => all.into_iter().filter(|r| matches(f, r)).collect(),
            None => all,
        };
        if let Some(key) = &self.sort_by {
            let sort_key = |r: &Value| -> String {
                key.lookup(r)
                    .first()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_lowercase)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default()
            };
            hits.sort_by_cached_key(sort_key);
            if self.descending {
                hits.reverse();
            }
        }
        let total = hits.len();
        let page: Vec<Value> = hits
            .into_iter()
            .skip(self.start - 1)
            .take(self.count)
            .map(|r| {
                // `.search` at the root mixes users and groups: each is projected by its own schema.
                let own = match r["meta"]["resourceType"].as_str() {
                    Some("Group") => Resource::Group,
                    Some("User") => Resource::User,
                    _ => resource,
                };
                project(own, r, &self.attributes, &self.excluded)
            })
            .collect();
        json!({
            "schemas": [LIST_URN],
            "totalResults": total,
            "startIndex": self.start,
            "itemsPerPage": page.len(),
            "Resources": page,
        })
    }

    /// Whether the `members` of groups must be built (not excluded, and asked for or by default).
    pub fn wants(&self, attr: &str) -> bool {
        let named = |list: &[AttrPath]| list.iter().any(|p| p.attr.eq_ignore_ascii_case(attr));
        if !self.attributes.is_empty() {
            return named(&self.attributes) || self.filter_mentions(attr);
        }
        !named(&self.excluded) || self.filter_mentions(attr)
    }

    fn filter_mentions(&self, attr: &str) -> bool {
        self.filter.as_ref().is_some_and(|f| {
            f.to_string()
                .to_ascii_lowercase()
                .contains(&attr.to_ascii_lowercase())
        })
    }
}
