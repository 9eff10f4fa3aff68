//! Fuzz targets (`make fuzz`) for the JSON-RPC framing of `POST /mcp`: rmcp's parsing of a
//! client message, and the gateway's own look at the body that decides the scope it needs.

use crate::mcp::calls_a_tool;
use proptest::prelude::*;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Map, Value, json};
use toolgate_domain::fuzz::{
    config, deeply_nested_json, json_value, raw_bytes, short_hostile_string,
};

/// Method names a client sends (and near misses of them).
const METHODS: &[&str] = &[
    "tools/call",
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "notifications/initialized",
    "notifications/cancelled",
    "resources/read",
    "resources/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "Tools/call",
    "tools/call ",
    " tools/call",
    "tools/call\u{0}",
    "tools//call",
    "toolgate__request_elevation",
];

/// The members of a JSON-RPC message and of `tools/call` parameters.
const JSONRPC_KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "result",
    "error",
    "name",
    "arguments",
    "_meta",
    "progressToken",
    "protocolVersion",
    "capabilities",
    "clientInfo",
    "cursor",
    "uri",
];

/// A message as a client (or an attacker) might build it: every member optional, right or
/// wrong types, `tools/call` parameters that fit or nearly fit.
fn message() -> BoxedStrategy<Value> {
    let jsonrpc = prop_oneof![
        8 => Just(Some(json!("2.0"))),
        1 => prop::sample::select(vec![json!("1.0"), json!(2.0), json!(null), json!("2.0 ")]).prop_map(Some),
        1 => Just(None),
    ];
    let id = prop_oneof![
        4 => any::<i64>().prop_map(|n| Some(json!(n))),
        2 => short_hostile_string().prop_map(|s| Some(json!(s))),
        1 => any::<u64>().prop_map(|n| Some(json!(n))),
        1 => prop::sample::select(vec![json!(null), json!(1.5), json!({}), json!([1]), json!(true)]).prop_map(Some),
        2 => Just(None),
    ];
    let method = prop_oneof![
        6 => prop::sample::select(METHODS).prop_map(|m| Some(json!(m))),
        1 => short_hostile_string().prop_map(|m| Some(json!(m))),
        1 => prop::sample::select(vec![json!(null), json!(1), json!(["tools/call"]), json!({"tools/call": 1})]).prop_map(Some),
        1 => Just(None),
    ];
    let call_params = (
        prop_oneof![
            Just(json!("up__echo")),
            short_hostile_string().prop_map(Value::from),
            json_value(1, JSONRPC_KEYS),
        ],
        prop::option::of(json_value(4, JSONRPC_KEYS)),
    )
        .prop_map(|(name, arguments)| {
            let mut p = Map::new();
            p.insert("name".into(), name);
            if let Some(a) = arguments {
                p.insert("arguments".into(), a);
            }
            Value::Object(p)
        });
    let params = prop_oneof![
        3 => call_params.prop_map(Some),
        2 => json_value(4, JSONRPC_KEYS).prop_map(Some),
        2 => Just(None),
    ];
    let extra = prop::collection::vec(
        (
            prop::sample::select(JSONRPC_KEYS).prop_map(str::to_string),
            json_value(2, JSONRPC_KEYS),
        ),
        0..2,
    );
    (jsonrpc, id, method, params, extra)
        .prop_map(|(jsonrpc, id, method, params, extra)| {
            let mut m = Map::new();
            for (k, v) in extra {
                m.insert(k, v);
            }
            for (k, v) in [
                ("jsonrpc", jsonrpc),
                ("id", id),
                ("method", method),
                ("params", params),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
        .boxed()
}

/// Ways to write the same message that a careless reader of the bytes would miss: escapes in
/// the method name, a second `method` member, batches, byte-order marks, whitespace, trailing
/// junk, pretty printing.
fn encode(message: Value, other: Value, trick: u8, dup_method: &str) -> Vec<u8> {
    let text = message.to_string();
    let dup = json!(dup_method).to_string();
    let with_member_first = |t: &str| match t.strip_prefix('{') {
        Some("}") => format!("{{\"method\":{dup}}}"),
        Some(rest) => format!("{{\"method\":{dup},{rest}"),
        None => t.to_string(),
    };
    let with_member_last = |t: &str| match t.strip_suffix('}') {
        Some("{") => format!("{{\"method\":{dup}}}"),
        Some(rest) => format!("{rest},\"method\":{dup}}}"),
        None => t.to_string(),
    };
    let out = match trick % 12 {
        0 => text,
        1 => text.replace("tools/call", "tools\\/call"),
        2 => text.replace("\"tools/call\"", "\"\\u0074ools/call\""),
        3 => with_member_first(&text),
        4 => with_member_last(&text),
        5 => format!("[{text}]"),
        6 => format!("[{other},{text}]"),
        7 => format!("\u{feff}{text}"),
        8 => format!(" \r\n\t{text}\n "),
        9 => format!("{text}{other}"),
        10 => serde_json::to_string_pretty(&message).unwrap_or(text),
        _ => text.replace("\"method\"", "\"\\u006dethod\""),
    };
    out.into_bytes()
}

/// What rmcp makes of a body, as the `/mcp` service does.
fn rmcp_request_method(body: &[u8]) -> Option<(bool, String)> {
    match serde_json::from_slice::<ClientJsonRpcMessage>(body).ok()? {
        JsonRpcMessage::Request(r) => Some((
            matches!(r.request, ClientRequest::CallToolRequest(_)),
            r.request.method().to_string(),
        )),
        _ => None,
    }
}

/// The security property: whatever rmcp would dispatch as a tool call, the scope check sees
/// as one (else a token without `mcp:tools` could call tools). Any message rmcp parses also
/// survives its own serialisation.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let peek = calls_a_tool(body);
    if let Some((typed_call, method)) = rmcp_request_method(body) {
        prop_assert!(
            !(typed_call || method == "tools/call") || peek,
            "rmcp reads a tools/call the scope check misses: {}",
            String::from_utf8_lossy(body)
        );
    }
    if let Ok(msg) = serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        let first = serde_json::to_value(&msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again: ClientJsonRpcMessage = serde_json::from_value(first.clone())
            .map_err(|e| TestCaseError::fail(format!("{e}: {first}")))?;
        prop_assert_eq!(serde_json::to_value(&again).ok(), Some(first));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    /// Structured messages written plainly and with every trick.
    #[test]
    fn fuzz_jsonrpc_framing_messages(
        message in message(),
        other in message(),
        trick in any::<u8>(),
        dup in prop::sample::select(METHODS),
    ) {
        let body = encode(message.clone(), other, trick, dup);
        check_body(&body)?;
        if trick % 12 == 0 {
            // Written plainly, the peek is exact for a single message.
            let is_call = message.get("method") == Some(&json!("tools/call"));
            prop_assert_eq!(calls_a_tool(&body), is_call, "{}", message);
        }
    }

    /// Raw bytes, deep nesting and arbitrary JSON documents.
    #[test]
    fn fuzz_jsonrpc_framing_raw(body in prop_oneof![
        raw_bytes(),
        deeply_nested_json().prop_map(String::into_bytes),
        json_value(5, JSONRPC_KEYS).prop_map(|v| v.to_string().into_bytes()),
    ]) {
        check_body(&body)?;
    }
}
