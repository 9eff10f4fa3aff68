//! Shared parts of the fuzz targets (every test named `fuzz_…`, `make fuzz`): the case budget and
//! generators of hostile input — odd Unicode, control characters, very long text, arbitrary JSON.
//!
//! CI runs each target with the small fixed number of cases it asks [`config`] for; setting
//! `PROPTEST_CASES` (as `make fuzz` does) runs that many cases per target instead.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// The configuration of one fuzz target: `ci_cases` cases, unless `PROPTEST_CASES` is set.
/// (`ProptestConfig::with_cases` would ignore the variable: only `ProptestConfig::default()`
/// reads it, and `with_cases` then overrides the count.)
pub fn config(ci_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = ci_cases;
    }
    config
}

/// Text that trips up careless string handling: case mapping that changes the length (`İ`,
/// `ß`), zero-width and bidi controls, combining marks, surrogate-free extremes, NUL.
pub const ODD_TEXT: &[&str] = &[
    "",
    " ",
    "\0",
    "\t\r\n",
    "\u{7f}",
    "\u{85}",
    "\u{200b}",
    "\u{200d}",
    "\u{202e}",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "e\u{301}",
    "İ",
    "ß",
    "ﬃ",
    "Σ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "🦀",
    "\\",
    "\"",
    "'",
    "%00",
    "%2e%2e",
    "&amp;",
    "<script>",
    "${jndi:x}",
    "../",
];

/// Any string, weighted towards the awkward: arbitrary Unicode, control characters, the
/// [`ODD_TEXT`] pieces, and now and then a very long run (up to 64 KiB).
pub fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => short_hostile_string(),
        1 => long_string(),
    ]
    .boxed()
}

/// [`hostile_string`] without the very long runs (for the many leaves of a document).
pub fn short_hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        3 => "[ -~]{0,24}",
        2 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]{1,6}",
        3 => prop::collection::vec(prop::sample::select(ODD_TEXT), 1..6).prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// A long run of one piece of text: 1 KiB to 64 KiB.
pub fn long_string() -> BoxedStrategy<String> {
    prop_oneof![
        (prop::sample::select(ODD_TEXT), 64..4096usize).prop_map(|(s, n)| s.repeat(n)),
        ("[a-z]", 1_024..65_536usize).prop_map(|(s, n)| s.repeat(n)),
    ]
    .boxed()
}

/// Numbers at and beyond the edges: `i64`/`u64` extremes, tiny and huge floats, negative zero.
pub fn edge_number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        prop::sample::select(vec![
            i64::MIN as f64,
            u64::MAX as f64,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            1e300,
            -1e-300,
            0.1,
        ])
        .prop_map(|f| Number::from_f64(f).unwrap_or_else(|| Number::from(0))),
        any::<f64>().prop_map(|f| Number::from_f64(f).unwrap_or_else(|| Number::from(0))),
    ]
    .boxed()
}

/// Arbitrary JSON up to `depth` levels of arrays and objects, with hostile strings and keys
/// (`keys` are mixed in so that objects sometimes hit the names a parser looks for).
pub fn json_value(depth: u32, keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        edge_number().prop_map(Value::Number),
        short_hostile_string().prop_map(Value::String),
        prop::sample::select(keys).prop_map(|k| Value::String(k.to_string())),
    ];
    let key = key_strategy(keys);
    leaf.prop_recursive(depth, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// Object keys: mostly the given names (in odd cases too), sometimes anything.
pub fn key_strategy(keys: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_string),
        1 => prop::sample::select(keys).prop_map(|k| k.to_ascii_uppercase()),
        2 => short_hostile_string(),
    ]
    .boxed()
}

/// JSON text nested `depth` levels deep (`[[[…]]]` or `{"a":{"a":…}}`), beyond what parsers
/// should recurse into.
pub fn deeply_nested_json() -> BoxedStrategy<String> {
    (1..5_000usize, any::<bool>(), any::<bool>())
        .prop_map(|(depth, arrays, closed)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            let mut s = open.repeat(depth);
            s.push('1');
            if closed {
                s.push_str(&close.repeat(depth));
            }
            s
        })
        .boxed()
}

/// Raw bytes: arbitrary, or text that is not UTF-8 in the middle of something JSON-like.
pub fn raw_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (prop::collection::vec(any::<u8>(), 0..16), "[ -~]{0,32}").prop_map(|(junk, text)| {
            let mut out = b"{\"".to_vec();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&junk);
            out.extend_from_slice(b"\": 1}");
            out
        }),
    ]
    .boxed()
}

/// Mutates a text: deletes a span and inserts one of `tokens` somewhere (near misses of a
/// valid document, which reach deeper than random text).
pub fn mutate_text(text: String, tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        any::<prop::sample::Index>(),
        0..8usize,
        prop::sample::select(tokens),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(at, delete, token, token_at)| {
            let mut chars: Vec<char> = text.chars().collect();
            let start = at.index(chars.len() + 1);
            let end = (start + delete).min(chars.len());
            chars.drain(start..end);
            let insert = token_at.index(chars.len() + 1);
            chars.splice(insert..insert, token.chars());
            chars.into_iter().collect()
        })
}

/// URL-ish text: schemes right and wrong, userinfo, IP literals in odd spellings, ports, dot
/// segments (also percent-encoded), backslashes, queries, fragments, or anything at all.
pub fn url_like() -> BoxedStrategy<String> {
    let scheme = prop::sample::select(vec![
        "https://",
        "https://",
        "http://",
        "HTTPS://",
        "javascript:",
        "data:",
        "file://",
        "com.example.app:/",
        "ftp://",
        "https:",
        "https:/",
        "//",
        "",
    ]);
    let userinfo = prop::sample::select(vec!["", "", "", "user@", "user:pw@", "@", "a%40b@"]);
    let host = prop::sample::select(vec![
        "app.example.com",
        "app.example.com",
        "127.0.0.1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "0x7f.1",
        "2130706433",
        "0177.0.0.1",
        "169.254.169.254",
        "[::ffff:127.0.0.1]",
        "[fe80::1%25eth0]",
        "10.0.0.1",
        "xn--nxasmq6b.example",
        "éxample.com",
        "exa mple.com",
        "%41pp.example.com",
        "",
        "[",
        "example.com.",
        "a..b",
    ]);
    let port = prop::sample::select(vec![
        "", "", "", ":443", ":80", ":8080", ":0", ":65536", ":x",
    ]);
    let segment = prop::sample::select(vec![
        "client.json",
        "cb",
        "callback",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "",
        "a b",
        "%00",
        "é",
        "\\",
        "..;",
        "~user",
    ]);
    let tail = prop::sample::select(vec![
        "",
        "",
        "?a=1",
        "?",
        "#frag",
        "#",
        "?x=1#y",
        "?redirect=https://evil.example",
    ]);
    let built = (
        scheme,
        userinfo,
        host,
        port,
        prop::collection::vec(segment, 0..4),
        tail,
    )
        .prop_map(|(scheme, userinfo, host, port, segments, tail)| {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            format!("{scheme}{userinfo}{host}{port}{path}{tail}")
        });
    prop_oneof![
        6 => built,
        1 => short_hostile_string(),
        1 => long_string().prop_map(|s| format!("https://app.example.com/{s}")),
    ]
    .boxed()
}
