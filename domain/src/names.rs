//! Naming rules shared by the API, the dashboard forms and the proxy: connector names, the
//! `{connector}__{tool}` names agents see, user and group names, header names.

/// Separator between connector and tool in the names agents see.
pub const TOOL_SEPARATOR: &str = "__";
/// Longest exposed tool name many MCP clients accept.
pub const MAX_EXPOSED_TOOL_NAME: usize = 64;

/// A connector name is 1-32 of `[a-z0-9-]`: it cannot contain `_`, so the first `__` in an
/// exposed tool name always ends the connector part (no collision tricks with `a__b`).
pub fn validate_connector_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!(
            "connector name must be 1-32 characters, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "connector name {name:?} may contain only a-z, 0-9 and '-'"
        ));
    }
    Ok(())
}

/// A tool name as MCP allows it: 1-128 of `[A-Za-z0-9_.-]`.
pub fn is_valid_upstream_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The name an agent sees for `tool` on `connector`, or `None` when it would not fit the
/// `^[a-zA-Z0-9_-]{1,64}$` form that common clients accept (such tools are not exposed).
pub fn exposed_tool_name(connector: &str, tool: &str) -> Option<String> {
    let name = format!("{connector}{TOOL_SEPARATOR}{tool}");
    let fits = name.len() <= MAX_EXPOSED_TOOL_NAME
        && tool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        && !tool.is_empty();
    fits.then_some(name)
}

/// Splits an exposed name into `(connector, tool)`; `None` when it has no valid connector part.
pub fn split_exposed_tool_name(name: &str) -> Option<(&str, &str)> {
    let (connector, tool) = name.split_once(TOOL_SEPARATOR)?;
    if validate_connector_name(connector).is_err() || tool.is_empty() {
        return None;
    }
    Some((connector, tool))
}

/// User names: 1-256 characters, no whitespace or control characters.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err("user_name must be 1-256 characters".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("user_name may not contain spaces or control characters".into());
    }
    Ok(())
}

/// Display names (users and groups): 1-256 characters, no control characters, not blank.
pub fn validate_display_name(field: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 256 {
        return Err(format!("{field} must be 1-256 characters and not blank"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{field} may not contain control characters"));
    }
    Ok(())
}

/// HTTP header names for connector credentials: an RFC 9110 token, at most 128 characters, and
/// none of the headers the transport itself controls.
pub fn validate_header_name(name: &str) -> Result<(), String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
    {
        return Err(format!(
            "header name {name:?} is not a valid HTTP header name"
        ));
    }
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ];
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {name:?} is set by the gateway and cannot be configured"
        ));
    }
    Ok(())
}

/// Header values: visible ASCII and spaces, at most 8 KiB.
pub fn validate_header_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > 8192
        || !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "value of header {name:?} must be printable ASCII, at most 8 KiB"
        ));
    }
    Ok(())
}

/// Upstream URLs: absolute http(s) with a host, no userinfo or fragment, at most 2048 characters.
pub fn validate_upstream_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "url must start with http:// or https://".to_string())?;
    if url.len() > 2048 {
        return Err("url must be at most 2048 characters".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("url must name a host".into());
    }
    if authority.contains('@') {
        return Err("url may not contain credentials; put them in headers".into());
    }
    if url.contains('#') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url may not contain a fragment, spaces or control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_names() {
        assert!(validate_connector_name("github").is_ok());
        assert!(validate_connector_name("jira-cloud-2").is_ok());
        assert!(validate_connector_name("").is_err());
        assert!(validate_connector_name("GitHub").is_err());
        assert!(validate_connector_name("a_b").is_err());
        assert!(validate_connector_name(&"a".repeat(33)).is_err());
        assert!(validate_connector_name(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn exposed_names_round_trip_and_cannot_collide() {
        let name = exposed_tool_name("github", "create_pr").unwrap();
        assert_eq!(name, "github__create_pr");
        assert_eq!(
            split_exposed_tool_name(&name),
            Some(("github", "create_pr"))
        );
        // A tool whose own name contains "__" stays inside its connector.
        let tricky = exposed_tool_name("a", "b__c").unwrap();
        assert_eq!(split_exposed_tool_name(&tricky), Some(("a", "b__c")));
        // A connector part that is not a valid connector name is rejected.
        assert_eq!(split_exposed_tool_name("A__b"), None);
        assert_eq!(split_exposed_tool_name("nounderscore"), None);
        assert_eq!(split_exposed_tool_name("github__"), None);
    }

    #[test]
    fn exposed_names_respect_client_limits() {
        assert!(exposed_tool_name("c", &"t".repeat(61)).is_some());
        assert!(exposed_tool_name("c", &"t".repeat(62)).is_none());
        assert!(exposed_tool_name("c", "has.dot").is_none());
        assert!(is_valid_upstream_tool_name("has.dot"));
        assert!(!is_valid_upstream_tool_name("has space"));
    }

    #[test]
    fn urls_and_headers() {
        assert!(validate_upstream_url("http://127.0.0.1:3001/mcp").is_ok());
        assert!(validate_upstream_url("https://mcp.example.com/").is_ok());
        assert!(validate_upstream_url("ftp://x").is_err());
        assert!(validate_upstream_url("http://user:pw@host/").is_err());
        assert!(validate_upstream_url("http:///path").is_err());
        assert!(validate_header_name("Authorization").is_ok());
        assert!(validate_header_name("X-Api-Key").is_ok());
        assert!(validate_header_name("Bad Header").is_err());
        assert!(validate_header_name("Host").is_err());
        assert!(validate_header_value("a", "Bearer x").is_ok());
        assert!(validate_header_value("a", "line\nbreak").is_err());
    }

    #[test]
    fn user_and_display_names() {
        assert!(validate_user_name("alice@example.com").is_ok());
        assert!(validate_user_name("a b").is_err());
        assert!(validate_display_name("display_name", "Senior Engineers").is_ok());
        assert!(validate_display_name("display_name", "   ").is_err());
    }
}
