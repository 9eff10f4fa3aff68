//! The SCIM schemas Toolgate serves (RFC 7643 core User and Group, the enterprise User extension):
//! one table drives the `/Schemas` documents, attribute-name canonicalisation, type coercion and
//! mutability checks.

use serde_json::{Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Attribute data types (RFC 7643 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
}

/// Mutability (RFC 7643 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
}

/// One attribute definition.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub sub: &'static [Attr],
    /// For references: what they may point at (RFC 7643 §7 `referenceTypes`).
    pub ref_types: &'static [&'static str],
    /// Suggested values (RFC 7643 §7 `canonicalValues`).
    pub canonical: &'static [&'static str],
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        sub: &[],
        ref_types: &[],
        canonical: &[],
        description,
    }
}

const fn b(name: &'static str, description: &'static str) -> Attr {
    Attr {
        kind: Kind::Boolean,
        ..s(name, description)
    }
}

const fn r(
    name: &'static str,
    ref_types: &'static [&'static str],
    description: &'static str,
) -> Attr {
    Attr {
        kind: Kind::Reference,
        ref_types,
        ..s(name, description)
    }
}

const fn complex(
    name: &'static str,
    multi: bool,
    sub: &'static [Attr],
    description: &'static str,
) -> Attr {
    Attr {
        kind: Kind::Complex,
        multi,
        sub,
        ..s(name, description)
    }
}

/// Sub-attributes of the usual multi-valued complex attributes (emails, phoneNumbers, ...).
const MULTI_SUB: &[Attr] = &[
    s("value", "The value."),
    s("display", "A human-readable name."),
    s("type", "A label indicating the function, e.g. 'work'."),
    b("primary", "Whether this is the primary value."),
];

const NAME_SUB: &[Attr] = &[
    s("formatted", "The full name."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "The honorific prefix(es)."),
    s("honorificSuffix", "The honorific suffix(es)."),
];

const ADDRESS_SUB: &[Attr] = &[
    s("formatted", "The full mailing address."),
    s("streetAddress", "The street address."),
    s("locality", "The city or locality."),
    s("region", "The state or region."),
    s("postalCode", "The postal code."),
    s("country", "The country."),
    s("type", "A label, e.g. 'work'."),
    b("primary", "Whether this is the primary address."),
];

const GROUP_REF_SUB: &[Attr] = &[
    Attr {
        mutability: Mutability::ReadOnly,
        case_exact: true,
        ..s("value", "The group's id.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..r("$ref", &["Group"], "The group's URI.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("display", "The group's display name.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        canonical: &["direct", "indirect"],
        ..s("type", "direct or indirect.")
    },
];

const MEMBER_SUB: &[Attr] = &[
    Attr {
        mutability: Mutability::Immutable,
        case_exact: true,
        ..s("value", "The member's id.")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..r("$ref", &["User", "Group"], "The member's URI.")
    },
    Attr {
        mutability: Mutability::Immutable,
        canonical: &["User", "Group"],
        ..s("type", "User or Group.")
    },
];

const MANAGER_SUB: &[Attr] = &[
    Attr {
        case_exact: true,
        ..s("value", "The manager's id.")
    },
    r("$ref", &["User"], "The manager's URI."),
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("displayName", "The manager's display name.")
    },
];

/// Core User attributes (RFC 7643 §4.1), without `id`, `externalId` and `meta`.
pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..s("userName", "Unique identifier for the user, e.g. the UPN.")
    },
    complex(
        "name",
        false,
        NAME_SUB,
        "The components of the user's name.",
    ),
    s("displayName", "The name shown for the user."),
    s("nickName", "The casual name."),
    r(
        "profileUrl",
        &["external"],
        "A URI of the user's online profile.",
    ),
    s("title", "The user's title."),
    s("userType", "The relationship to the organisation."),
    s(
        "preferredLanguage",
        "The preferred written or spoken language.",
    ),
    s("locale", "The default location for localisation."),
    s("timezone", "The time zone, in IANA form."),
    b("active", "Whether the user may use Toolgate."),
    complex("emails", true, MULTI_SUB, "Email addresses."),
    complex("phoneNumbers", true, MULTI_SUB, "Phone numbers."),
    complex("ims", true, MULTI_SUB, "Instant messaging addresses."),
    complex("photos", true, MULTI_SUB, "URLs of photos."),
    complex(
        "addresses",
        true,
        ADDRESS_SUB,
        "Physical mailing addresses.",
    ),
    Attr {
        mutability: Mutability::ReadOnly,
        ..complex(
            "groups",
            true,
            GROUP_REF_SUB,
            "Groups the user belongs to (read-only).",
        )
    },
    complex("entitlements", true, MULTI_SUB, "Entitlements."),
    complex("roles", true, MULTI_SUB, "Roles."),
    complex("x509Certificates", true, MULTI_SUB, "X.509 certificates."),
];

/// Enterprise User extension attributes (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "The employee number."),
    s("costCenter", "The cost centre."),
    s("organization", "The organisation."),
    s("division", "The division."),
    s("department", "The department."),
    complex("manager", false, MANAGER_SUB, "The user's manager."),
];

/// Core Group attributes (RFC 7643 §4.2), without `id`, `externalId` and `meta`.
pub const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..s("displayName", "The group's name.")
    },
    complex("members", true, MEMBER_SUB, "The group's members."),
];

/// Which kind of resource a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn core_urn(self) -> &'static str {
        match self {
            Resource::User => USER_URN,
            Resource::Group => GROUP_URN,
        }
    }

    pub fn attrs(self) -> &'static [Attr] {
        match self {
            Resource::User => USER_ATTRS,
            Resource::Group => GROUP_ATTRS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::User => "User",
            Resource::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Resource::User => "Users",
            Resource::Group => "Groups",
        }
    }
}

/// Where an attribute lives in a document: the top level, or the enterprise extension object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Core,
    Enterprise,
}

/// A resolved attribute: its scope and definition.
#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    pub scope: Scope,
    pub attr: &'static Attr,
}

/// The misspelt extension URN some Entra payloads carry (`...enterprise:2.0User`).
const ENTERPRISE_URN_MISSPELT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0user";

/// Normalises a schema URN (case-insensitive; Entra's misspelling of the enterprise URN fixed).
pub fn canonical_urn(urn: &str) -> Option<&'static str> {
    let l = urn.to_ascii_lowercase();
    if l == USER_URN.to_ascii_lowercase() {
        Some(USER_URN)
    } else if l == GROUP_URN.to_ascii_lowercase() {
        Some(GROUP_URN)
    } else if l == ENTERPRISE_URN.to_ascii_lowercase() || l == ENTERPRISE_URN_MISSPELT {
        Some(ENTERPRISE_URN)
    } else {
        None
    }
}

/// Finds an attribute by name (case-insensitively), in the given URN's schema or, without a URN,
/// in the core schema and then (for users) the enterprise extension, as Entra writes `manager`.
pub fn resolve(resource: Resource, urn: Option<&str>, name: &str) -> Option<Resolved> {
    let find = |attrs: &'static [Attr]| attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name));
    let core = || {
        find(resource.attrs()).map(|attr| Resolved {
            scope: Scope::Core,
            attr,
        })
    };
    let ent = || {
        (resource == Resource::User)
            .then(|| find(ENTERPRISE_ATTRS))
            .flatten()
            .map(|attr| Resolved {
                scope: Scope::Enterprise,
                attr,
            })
    };
    match urn.map(canonical_urn) {
        None => core().or_else(ent),
        Some(Some(u)) if u == resource.core_urn() => core(),
        Some(Some(ENTERPRISE_URN)) => ent(),
        _ => None,
    }
}

/// A sub-attribute definition by name (case-insensitively).
pub fn sub_attr(attr: &'static Attr, name: &str) -> Option<&'static Attr> {
    attr.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Coerces a value to an attribute's type: Entra's `"True"`/`"False"` strings become booleans;
/// anything that cannot be coerced is an error naming the attribute.
pub fn coerce(attr: &Attr, value: Value) -> Result<Value, String> {
    match (attr.kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (Kind::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Value::Bool(true))
        }
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Value::Bool(false))
        }
        (Kind::String | Kind::Reference, Value::String(s)) => Ok(Value::String(s)),
        (Kind::String, v @ (Value::Number(_) | Value::Bool(_))) => Ok(Value::String(v.to_string())),
        (Kind::Complex, v @ Value::Object(_)) => Ok(v),
        (_, v) => Err(format!(
            "attribute {:?} cannot take the value {v}",
            attr.name
        )),
    }
}

fn attr_json(a: &Attr) -> Value {
    let kind = match a.kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference => "reference",
    };
    let mutability = match a.mutability {
        Mutability::ReadWrite => "readWrite",
        Mutability::ReadOnly => "readOnly",
        Mutability::Immutable => "immutable",
    };
    let mut o = json!({
        "name": a.name,
        "type": kind,
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if a.kind == Kind::Reference {
        o["referenceTypes"] = json!(a.ref_types);
    }
    if !a.canonical.is_empty() {
        o["canonicalValues"] = json!(a.canonical);
    }
    if !a.sub.is_empty() {
        o["subAttributes"] = Value::Array(a.sub.iter().map(attr_json).collect());
    }
    o
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// The `/Schemas` documents.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_json(USER_URN, "User", "User account", USER_ATTRS, base),
        schema_json(
            ENTERPRISE_URN,
            "EnterpriseUser",
            "Enterprise user",
            ENTERPRISE_ATTRS,
            base,
        ),
        schema_json(GROUP_URN, "Group", "Group", GROUP_ATTRS, base),
    ]
}

/// The `/ResourceTypes` documents.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "description": "User account",
            "schema": USER_URN,
            "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Group",
            "schema": GROUP_URN, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// Most resources one list response returns.
pub const MAX_RESULTS: usize = 1000;

/// The `/ServiceProviderConfig` document.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/toolgate/toolgate/blob/main/docs/scim.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A SCIM token created in Toolgate (Settings > Provisioning, or `toolgate token create --role scim`).",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}
