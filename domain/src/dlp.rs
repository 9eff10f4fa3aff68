//! Data-loss prevention: detectors for secrets and personal data in tool traffic, and the
//! settings that say what to do with a finding (redact, block, log only).
//!
//! The settings types ([`DlpSettings`], [`DlpAction`], [`CustomDetector`]) compile everywhere
//! (the dashboard edits them in wasm); the `Scanner` needs the `ssr` feature.
//!
//! # Detectors
//!
//! | name | what it matches |
//! |------|-----------------|
//! | `email` | `local@domain.tld` |
//! | `phone` | `+` and 8-15 digits in groups (`+44 20 7946 0958`), or a North-American number *with separators* (`415-555-0132`, `(415) 555-0132`) |
//! | `payment_card` | 13-19 digits, contiguous or in groups of 3-6 split by one kind of separator, first group of 4; Luhn-valid and with a plausible issuer prefix (first digit 2-6; 13 digits only for 4) |
//! | `iban` | country, check digits and up to 30 alphanumerics, compact or in groups of 4; mod-97 checksum, and the registry length for countries it knows |
//! | `us_ssn` | `ddd-dd-dddd` except area 000, 666, 9xx, group 00 and serial 0000 |
//! | `aws_access_key` | `AKIA`/`ASIA` and 16 uppercase alphanumerics |
//! | `github_token` | `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` and 36+ alphanumerics; `github_pat_` tokens |
//! | `gitlab_token` | `glpat-` and 20+ characters |
//! | `slack_token` | `xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-` tokens |
//! | `private_key` | a `-----BEGIN ... PRIVATE KEY-----` block through its `-----END` line |
//! | `jwt` | three base64url segments, the first starting `eyJ` |
//! | `high_entropy_secret` | a random-looking token right after a secret keyword (below) |
//!
//! Trade-offs, chosen to keep false positives down on ordinary tool output:
//!
//! - `phone` needs a leading `+` or North-American separators, so bare digit runs (order
//!   numbers, IDs, timestamps) are never phones; a phone written as `4155550132` is missed.
//! - `payment_card` digit groups must look like card groups, so two dates or an ID list that
//!   happen to pass Luhn are not flagged; a card printed as `4111 11111111 1111` is missed.
//! - `high_entropy_secret` only looks at a token of 20+ characters from the base64/hex alphabet
//!   that directly follows a keyword (`secret`, `token`, `password`, `passwd`, `passphrase`,
//!   `api_key`, `access_key`, `private_key`, `credential`, `authorization`, `bearer`, `key=`,
//!   possibly inside an identifier such as `AWS_SECRET_ACCESS_KEY=`) and a separator
//!   (`=`, `:`, quotes, blanks), or that is the whole value of a JSON member whose key contains
//!   such a keyword. The token must mix letters and digits, must not contain a run of 10+
//!   lowercase letters (words, identifiers), must not be a UUID, and its Shannon entropy must be
//!   at least 3.0 bits per character for hex and 3.5 otherwise. Identifiers that name
//!   pagination state (`nextPageToken`, `cursor_token`, `sync_token`...) are skipped, so paging
//!   keeps working. Weak passwords (`hunter2`) and secrets in prose without a keyword are
//!   missed; a hex digest (git SHA) right after `token:` is flagged.
//! - A `high_entropy_secret` token that runs into another detector's match is judged by the
//!   part before it; one that starts inside another match is dropped.
//! - A private key block without an `-----END` line (truncated output) is redacted over its
//!   base64 body, at most 16 KiB from the `BEGIN` line; so is a block whose `END` is further.
//!
//! # Scanning
//!
//! One `RegexSet` pass over each string says which detectors can match; a string without
//! candidates costs that one pass, and only the detectors the set reports run their own regex
//! and validation. Matches of different detectors that overlap keep the earliest (then the
//! longest), so redacted output is well-formed. When redacting, a string with findings is
//! rescanned after redaction until a pass finds nothing (at most 4 passes): a match hidden by
//! another (overlapping text, or context that belonged to the other match) is caught, and
//! redaction is idempotent. Candidates are streamed, not collected; the only copy of the text
//! is the one redacted output (a rescan that finds nothing allocates nothing). JSON is walked
//! with an explicit stack (no recursion), scanning string values and never object keys.
//!
//! Custom patterns share the prefilter set; a custom pattern using Unicode classes or `\b`
//! can make the set slower on non-ASCII text (the built-ins use ASCII classes only).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What to do with a call whose traffic has findings. Ordered by strictness:
/// `LogOnly < Redact < Block`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DlpAction {
    /// Count the findings in the audit event and pass the traffic unchanged.
    #[default]
    LogOnly,
    /// Replace each finding with `[REDACTED:<detector>]`.
    Redact,
    /// Refuse the response (or the call, when arguments are scanned).
    Block,
}

/// Names of the built-in detectors, in scanning order.
pub const BUILTIN_DETECTORS: &[&str] = &[
    "email",
    "phone",
    "payment_card",
    "iban",
    "us_ssn",
    "aws_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "private_key",
    "jwt",
    "high_entropy_secret",
];

/// Longest custom detector pattern, in characters.
pub const MAX_CUSTOM_PATTERN_LEN: usize = 1_000;
/// Longest custom detector name.
pub const MAX_CUSTOM_NAME_LEN: usize = 40;
/// Most custom detectors one settings object may define.
pub const MAX_CUSTOM_DETECTORS: usize = 64;

/// An admin-defined detector: matches of `pattern` (Rust `regex` syntax) are findings of type
/// `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomDetector {
    /// Finding type, `[a-z0-9_]{1,40}`, distinct from the built-in names.
    pub name: String,
    /// The regular expression; it must not match the empty string.
    pub pattern: String,
}

/// DLP configuration: which detectors run and what happens on a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DlpSettings {
    /// Master switch; a disabled configuration scans nothing.
    pub enabled: bool,
    /// Enabled built-in detectors (names from [`BUILTIN_DETECTORS`]).
    pub detectors: Vec<String>,
    /// Admin-defined detectors; all of them run while DLP is enabled.
    pub custom: Vec<CustomDetector>,
    /// Action for connectors without an entry in `connector_actions`.
    pub default_action: DlpAction,
    /// Action by connector name.
    pub connector_actions: BTreeMap<String, DlpAction>,
    /// Action by group name; a caller's groups can only make the action stricter.
    pub group_actions: BTreeMap<String, DlpAction>,
    /// Also scan tool-call arguments (responses are always scanned).
    pub scan_arguments: bool,
}

impl Default for DlpSettings {
    fn default() -> Self {
        DlpSettings {
            enabled: true,
            detectors: BUILTIN_DETECTORS.iter().map(|d| (*d).to_owned()).collect(),
            custom: Vec::new(),
            default_action: DlpAction::Redact,
            connector_actions: BTreeMap::new(),
            group_actions: BTreeMap::new(),
            scan_arguments: false,
        }
    }
}

impl DlpSettings {
    /// Checks names (known detectors; custom names are [a-z0-9_]{1,40} and do not clash with
    /// builtins) and that custom patterns compile (only when ssr; without ssr just the name
    /// checks) and are at most 1,000 chars; Err(message) describing the first problem.
    ///
    /// Also rejects duplicate custom names, more than [`MAX_CUSTOM_DETECTORS`] custom
    /// detectors, and (with `ssr`) patterns that match the empty string.
    pub fn validate(&self) -> Result<(), String> {
        for d in &self.detectors {
            if !BUILTIN_DETECTORS.contains(&d.as_str()) {
                return Err(format!(
                    "unknown DLP detector {d:?}; known detectors: {}",
                    BUILTIN_DETECTORS.join(", ")
                ));
            }
        }
        if self.custom.len() > MAX_CUSTOM_DETECTORS {
            return Err(format!(
                "at most {MAX_CUSTOM_DETECTORS} custom DLP detectors, got {}",
                self.custom.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for c in &self.custom {
            validate_custom_name(&c.name)?;
            if !seen.insert(c.name.as_str()) {
                return Err(format!("duplicate custom DLP detector name {:?}", c.name));
            }
            if c.pattern.is_empty() {
                return Err(format!(
                    "custom DLP detector {:?} has an empty pattern",
                    c.name
                ));
            }
            let chars = c.pattern.chars().count();
            if chars > MAX_CUSTOM_PATTERN_LEN {
                return Err(format!(
                    "custom DLP detector {:?}: pattern is {chars} characters, at most \
                     {MAX_CUSTOM_PATTERN_LEN} allowed",
                    c.name
                ));
            }
            #[cfg(feature = "ssr")]
            scanner::compile_custom(&c.pattern)
                .map_err(|e| format!("custom DLP detector {:?}: {e}", c.name))?;
        }
        Ok(())
    }

    /// The action for a call: the strictest of the connector's action (or default_action when
    /// the connector has none) and the actions of any of the caller's groups that have one.
    pub fn action_for(&self, connector: &str, groups: &[&str]) -> DlpAction {
        let base = self
            .connector_actions
            .get(connector)
            .copied()
            .unwrap_or(self.default_action);
        groups
            .iter()
            .filter_map(|g| self.group_actions.get(*g).copied())
            .fold(base, DlpAction::max)
    }
}

fn validate_custom_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CUSTOM_NAME_LEN {
        return Err(format!(
            "custom DLP detector name must be 1-{MAX_CUSTOM_NAME_LEN} characters, got {}",
            name.chars().count()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "custom DLP detector name {name:?} may contain only a-z, 0-9 and '_'"
        ));
    }
    if BUILTIN_DETECTORS.contains(&name) {
        return Err(format!(
            "custom DLP detector name {name:?} clashes with a built-in detector"
        ));
    }
    Ok(())
}

/// Findings of one scan: detector name -> number of matches. Never holds the matched text.
pub type Findings = BTreeMap<String, u64>;

/// Adds the counts of `from` to `into`.
pub fn merge_findings(into: &mut Findings, from: Findings) {
    for (name, n) in from {
        *into.entry(name).or_insert(0) += n;
    }
}

/// The text a redacted match of `detector` is replaced with: `[REDACTED:<detector>]`.
pub fn redaction_marker(detector: &str) -> String {
    format!("[REDACTED:{detector}]")
}

#[cfg(feature = "ssr")]
pub use scanner::Scanner;

#[cfg(feature = "ssr")]
mod scanner {
    use std::iter::Peekable;

    use regex::{Captures, Regex, RegexBuilder, RegexSet, RegexSetBuilder};
    use serde_json::Value;

    use super::{BUILTIN_DETECTORS, DlpSettings, Findings, redaction_marker};

    /// Compiled-size limit for one custom pattern.
    const CUSTOM_SIZE_LIMIT: usize = 1 << 20;
    /// Compiled-size limit for a built-in pattern and for the prefilter set.
    const SET_SIZE_LIMIT: usize = 64 << 20;
    /// Lazy-DFA cache per search thread.
    const DFA_SIZE_LIMIT: usize = 8 << 20;
    /// Most scanning passes over one string when redacting (see `Scanner::scan`).
    const MAX_PASSES: usize = 4;
    /// Longest private key block redacted from one `BEGIN` line.
    const MAX_PEM_LEN: usize = 16 * 1024;
    /// Shortest `high_entropy_secret` token.
    const MIN_SECRET_LEN: usize = 20;
    /// Entropy threshold (bits per character) for tokens that are not hex.
    const ENTROPY_THRESHOLD: f64 = 3.5;
    /// Entropy threshold for hex-only tokens (their alphabet allows at most 4 bits).
    const HEX_ENTROPY_THRESHOLD: f64 = 3.0;
    /// Identifier parts that mark pagination or sync state rather than a credential.
    const NOT_SECRET_HINTS: &[&str] = &["page", "cursor", "continuation", "next", "resume", "sync"];

    const EMAIL: &str = r"[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?-u:\b)";
    const PHONE: &str = r"\+[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,6})){1,7}|(?:1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}";
    const PAYMENT_CARD: &str = r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,}(?-u:\b)";
    const IBAN: &str =
        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)";
    const US_SSN: &str = r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)";
    const AWS_ACCESS_KEY: &str = r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)";
    const GITHUB_TOKEN: &str =
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})(?-u:\b)";
    const GITLAB_TOKEN: &str = r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*";
    const SLACK_TOKEN: &str = r"(?-u:\b)xox[abprs]-[A-Za-z0-9_-]{10,}";
    const PRIVATE_KEY: &str = r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----";
    const JWT: &str = r"(?-u:\b)eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]*";
    const HIGH_ENTROPY_SECRET: &str = concat!(
        r#"(?:(?i-u:secret|token|passw(?:or)?d|passphrase|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization)"#,
        r#"[A-Za-z0-9_-]{0,24}[ \t\r\n"'=:\\]{1,6}(?:(?i-u:bearer|basic|token) +)?"#,
        r#"|(?i-u:bearer) +|(?i-u:key) ?=[ "']{0,2})"#,
        r#"([A-Za-z0-9+/_.-]{20,}={0,2})"#,
    );
    const SECRET_KEY_HINT: &str = r"(?i-u:secret|token|passw(?:or)?d|passphrase|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization)";

    /// IBAN lengths by country (SWIFT IBAN registry); other countries need only 15-34
    /// characters and a valid checksum.
    pub(super) const IBAN_LENGTHS: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NL", 18),
        ("NO", 15),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("SA", 24),
        ("SC", 31),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
    ];

    /// How a detector turns regex matches into findings.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Kind {
        /// Every non-empty match is a finding.
        Plain,
        Phone,
        PaymentCard,
        Iban,
        UsSsn,
        PrivateKey,
        HighEntropy,
    }

    pub(super) fn builtin(name: &str) -> Option<(Kind, &'static str)> {
        Some(match name {
            "email" => (Kind::Plain, EMAIL),
            "phone" => (Kind::Phone, PHONE),
            "payment_card" => (Kind::PaymentCard, PAYMENT_CARD),
            "iban" => (Kind::Iban, IBAN),
            "us_ssn" => (Kind::UsSsn, US_SSN),
            "aws_access_key" => (Kind::Plain, AWS_ACCESS_KEY),
            "github_token" => (Kind::Plain, GITHUB_TOKEN),
            "gitlab_token" => (Kind::Plain, GITLAB_TOKEN),
            "slack_token" => (Kind::Plain, SLACK_TOKEN),
            "private_key" => (Kind::PrivateKey, PRIVATE_KEY),
            "jwt" => (Kind::Plain, JWT),
            "high_entropy_secret" => (Kind::HighEntropy, HIGH_ENTROPY_SECRET),
            _ => return None,
        })
    }

    /// Compiles a custom detector pattern with the limits scanning uses.
    pub(super) fn compile_custom(pattern: &str) -> Result<Regex, String> {
        let re = RegexBuilder::new(pattern)
            .size_limit(CUSTOM_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid pattern: {e}"))?;
        if re.is_match("") {
            return Err("pattern matches the empty string".to_owned());
        }
        Ok(re)
    }

    struct Detector {
        name: String,
        marker: String,
        kind: Kind,
        re: Regex,
    }

    /// A byte range `[start, end)` of the scanned string.
    type Span = (usize, usize);
    /// A candidate match: its span, and whether it failed its detector's rule about the
    /// character before it. Such a candidate still counts when it starts exactly where an
    /// accepted match ends: that character is then replaced by a marker (`]`), and redacting
    /// the redacted text again must not find it then (idempotence).
    type Cand = (usize, usize, bool);
    type Stream<'a> = Peekable<Box<dyn Iterator<Item = Cand> + 'a>>;

    /// Compiled DLP detectors. `Send + Sync`; build once per settings change and share in an
    /// `Arc`.
    pub struct Scanner {
        /// Prefilter: pattern `i` is `detectors[i]`'s regex. `None` when nothing is enabled.
        set: Option<RegexSet>,
        detectors: Vec<Detector>,
        /// Index of `high_entropy_secret` in `detectors`, when enabled.
        entropy: Option<usize>,
        /// Matches JSON member names whose string value is itself checked as a secret.
        key_hint: Option<Regex>,
        /// Strings shorter than this cannot hold a finding (6 for `a@b.co`; 1 with custom
        /// detectors).
        min_len: usize,
    }

    impl std::fmt::Debug for Scanner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Scanner")
                .field(
                    "detectors",
                    &self.detectors.iter().map(|d| &d.name).collect::<Vec<_>>(),
                )
                .finish()
        }
    }

    impl Scanner {
        /// Compiles the enabled detectors; Err(message) for a bad custom pattern.
        ///
        /// Runs [`DlpSettings::validate`] first. A disabled configuration gives a scanner that
        /// finds nothing.
        pub fn new(settings: &DlpSettings) -> Result<Scanner, String> {
            settings.validate()?;
            let mut detectors = Vec::new();
            if settings.enabled {
                for name in BUILTIN_DETECTORS {
                    if !settings.detectors.iter().any(|d| d == name) {
                        continue;
                    }
                    let (kind, pattern) = builtin(name)
                        .ok_or_else(|| format!("built-in DLP detector {name:?} has no pattern"))?;
                    let re = RegexBuilder::new(pattern)
                        .size_limit(SET_SIZE_LIMIT)
                        .dfa_size_limit(DFA_SIZE_LIMIT)
                        .build()
                        .map_err(|e| format!("built-in DLP detector {name:?}: {e}"))?;
                    detectors.push(Detector {
                        name: (*name).to_owned(),
                        marker: redaction_marker(name),
                        kind,
                        re,
                    });
                }
                for c in &settings.custom {
                    let re = compile_custom(&c.pattern)
                        .map_err(|e| format!("custom DLP detector {:?}: {e}", c.name))?;
                    detectors.push(Detector {
                        name: c.name.clone(),
                        marker: redaction_marker(&c.name),
                        kind: Kind::Plain,
                        re,
                    });
                }
            }
            let set = if detectors.is_empty() {
                None
            } else {
                let set = RegexSetBuilder::new(detectors.iter().map(|d| d.re.as_str()))
                    .size_limit(SET_SIZE_LIMIT)
                    .dfa_size_limit(DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("DLP detectors do not compile together: {e}"))?;
                Some(set)
            };
            let entropy = detectors.iter().position(|d| d.kind == Kind::HighEntropy);
            let key_hint = match entropy {
                Some(_) => {
                    Some(Regex::new(SECRET_KEY_HINT).map_err(|e| format!("secret key hint: {e}"))?)
                }
                None => None,
            };
            let min_len = if settings.custom.is_empty() { 6 } else { 1 };
            Ok(Scanner {
                set,
                detectors,
                entropy,
                key_hint,
                min_len,
            })
        }

        /// True when no detector is enabled (scans find nothing).
        pub fn is_empty(&self) -> bool {
            self.detectors.is_empty()
        }

        /// Names of the enabled detectors, built-ins first.
        pub fn detector_names(&self) -> impl Iterator<Item = &str> {
            self.detectors.iter().map(|d| d.name.as_str())
        }

        /// Scans one string; returns Some(redacted) only when redact is true and something was
        /// found; adds counts to findings.
        ///
        /// Redacting is idempotent: the redacted text is rescanned until nothing new turns up,
        /// so in rare inputs where one match hides another (overlapping text, or context that
        /// belongs to the other match) a redacting scan counts more than a log-only scan.
        pub fn scan_str(&self, s: &str, redact: bool, findings: &mut Findings) -> Option<String> {
            self.scan(s, redact, findings, false)
        }

        /// Scans every string (values, not object keys) inside a JSON value recursively
        /// (iteratively is better: no stack overflow on deep JSON), redacting in place when
        /// `redact`; returns the findings.
        ///
        /// A string that is the whole value of a member whose name contains a secret keyword
        /// (`"api_key": "..."`, `"client_secret": "..."`) is also checked as a
        /// `high_entropy_secret` candidate on its own.
        pub fn scan_json(&self, v: &mut Value, redact: bool) -> Findings {
            let mut findings = Findings::new();
            self.scan_json_into(v, redact, &mut findings);
            findings
        }

        /// Like [`Scanner::scan_json`], adding to existing findings.
        pub fn scan_json_into(&self, v: &mut Value, redact: bool, findings: &mut Findings) {
            if self.is_empty() {
                return;
            }
            let mut stack: Vec<(&mut Value, bool)> = vec![(v, false)];
            while let Some((v, hint)) = stack.pop() {
                match v {
                    Value::String(s) => {
                        if let Some(r) = self.scan(s, redact, findings, hint) {
                            *s = r;
                        }
                    }
                    Value::Array(items) => stack.extend(items.iter_mut().map(|x| (x, hint))),
                    Value::Object(members) => {
                        for (k, x) in members.iter_mut() {
                            let hint = self.is_secret_key(k);
                            stack.push((x, hint));
                        }
                    }
                    Value::Null | Value::Bool(_) | Value::Number(_) => {}
                }
            }
        }

        fn is_secret_key(&self, key: &str) -> bool {
            self.key_hint
                .as_ref()
                .is_some_and(|re| re.is_match(key) && !names_pagination(key.as_bytes()))
        }

        /// Candidate spans of one detector, sorted by start, validated.
        fn candidates<'a>(&'a self, d: &'a Detector, hay: &'a str) -> Stream<'a> {
            let re = &d.re;
            let it: Box<dyn Iterator<Item = Cand> + 'a> = match d.kind {
                Kind::Plain => Box::new(
                    re.find_iter(hay)
                        .filter(|m| !m.is_empty())
                        .map(|m| (m.start(), m.end(), false)),
                ),
                Kind::Phone => Box::new(
                    re.find_iter(hay)
                        .filter_map(move |m| phone_span(hay.as_bytes(), m.start(), m.end())),
                ),
                Kind::PaymentCard => Box::new(
                    re.find_iter(hay)
                        .flat_map(move |m| card_spans(hay.as_bytes(), m.start(), m.end()))
                        .map(|(s, e)| (s, e, false)),
                ),
                Kind::Iban => Box::new(
                    re.find_iter(hay)
                        .filter_map(move |m| iban_span(hay.as_bytes(), m.start(), m.end()))
                        .map(|(s, e)| (s, e, false)),
                ),
                Kind::UsSsn => Box::new(
                    re.find_iter(hay)
                        .filter_map(move |m| ssn_cand(hay.as_bytes(), m.start(), m.end())),
                ),
                Kind::PrivateKey => {
                    Box::new(private_key_spans(re, hay).map(|(s, e)| (s, e, false)))
                }
                Kind::HighEntropy => Box::new(
                    re.captures_iter(hay)
                        .filter_map(move |c| entropy_span(hay.as_bytes(), &c))
                        .map(|(s, e)| (s, e, false)),
                ),
            };
            it.peekable()
        }

        /// Scans `hay`; when redacting, rescans the redacted text until a pass finds nothing
        /// (at most [`MAX_PASSES`] passes), so redaction is idempotent: a match that another
        /// match hid (its text overlapped one, or its context was part of one) is found once the
        /// other is replaced by its marker. A pass that finds nothing allocates nothing.
        fn scan(
            &self,
            hay: &str,
            redact: bool,
            findings: &mut Findings,
            key_hint: bool,
        ) -> Option<String> {
            let mut out = self.scan_once(hay, redact, findings, key_hint)?;
            for _ in 1..MAX_PASSES {
                match self.scan_once(&out, true, findings, false) {
                    Some(next) => out = next,
                    None => break,
                }
            }
            Some(out)
        }

        /// One pass: candidates of the detectors the prefilter reports, merged into
        /// non-overlapping findings.
        fn scan_once(
            &self,
            hay: &str,
            redact: bool,
            findings: &mut Findings,
            key_hint: bool,
        ) -> Option<String> {
            let set = self.set.as_ref()?;
            if hay.len() < self.min_len {
                return None;
            }
            let whole = match self.entropy {
                Some(i) if key_hint => {
                    whole_value_secret(hay.as_bytes()).map(|(s, e)| (i, (s, e, false)))
                }
                _ => None,
            };
            let matched = set.matches(hay);
            if !matched.matched_any() && whole.is_none() {
                return None;
            }
            let mut streams: Vec<(usize, Stream<'_>)> = Vec::new();
            let mut entropy_stream: Option<(usize, Stream<'_>)> = None;
            for i in matched.iter() {
                let Some(d) = self.detectors.get(i) else {
                    continue;
                };
                if Some(i) == self.entropy {
                    if whole.is_none() {
                        entropy_stream = Some((i, self.candidates(d, hay)));
                    }
                } else {
                    streams.push((i, self.candidates(d, hay)));
                }
            }
            if let Some((i, sp)) = whole {
                let once: Box<dyn Iterator<Item = Cand> + '_> = Box::new(std::iter::once(sp));
                entropy_stream = Some((i, once.peekable()));
            }

            let mut out = Output::new(hay, redact);
            // Greatest end of any non-entropy candidate seen: entropy candidates must not
            // overlap one (chosen or not).
            let mut other_end = 0usize;
            loop {
                let mut best: Option<(usize, Cand)> = None;
                for (k, (_, st)) in streams.iter_mut().enumerate() {
                    if let Some(&sp) = st.peek() {
                        let better = match best {
                            None => true,
                            Some((_, b)) => sp.0 < b.0 || (sp.0 == b.0 && sp.1 > b.1),
                        };
                        if better {
                            best = Some((k, sp));
                        }
                    }
                }
                let next_start = best.map_or(usize::MAX, |(_, sp)| sp.0);
                if let Some((i, es)) = entropy_stream.as_mut()
                    && let Some(&sp) = es.peek()
                    && sp.0 < next_start
                {
                    es.next();
                    // A token running into the next candidate is judged by the part before it
                    // (what a second pass would see once that candidate is redacted).
                    let span = secret_prefix(hay.as_bytes(), sp.0, sp.1.min(next_start));
                    if let Some(span) = span
                        && sp.0 >= other_end
                        && let Some(d) = self.detectors.get(*i)
                    {
                        out.accept(span, d, findings);
                    }
                    continue;
                }
                let Some((k, sp)) = best else {
                    break;
                };
                let Some((i, st)) = streams.get_mut(k) else {
                    break;
                };
                st.next();
                let (start, end, needs_adjacent) = sp;
                if needs_adjacent && !out.ends_at(start) {
                    continue;
                }
                other_end = other_end.max(end);
                if let Some(d) = self.detectors.get(*i) {
                    out.accept((start, end), d, findings);
                }
            }
            out.finish()
        }
    }

    /// Accepted matches: counts them and builds the redacted copy.
    struct Output<'h> {
        hay: &'h str,
        redact: bool,
        out: Option<String>,
        copied: usize,
        /// End of the last accepted match, if any.
        last_end: Option<usize>,
    }

    impl<'h> Output<'h> {
        fn new(hay: &'h str, redact: bool) -> Self {
            Output {
                hay,
                redact,
                out: None,
                copied: 0,
                last_end: None,
            }
        }

        /// Whether an accepted match ends at `pos`.
        fn ends_at(&self, pos: usize) -> bool {
            self.last_end == Some(pos)
        }

        /// Takes `sp` unless it overlaps an earlier accepted span.
        fn accept(&mut self, sp: Span, d: &Detector, findings: &mut Findings) {
            let (s, e) = sp;
            if s < self.last_end.unwrap_or(0)
                || s >= e
                || !self.hay.is_char_boundary(s)
                || !self.hay.is_char_boundary(e)
            {
                return;
            }
            self.last_end = Some(e);
            match findings.get_mut(d.name.as_str()) {
                Some(n) => *n += 1,
                None => {
                    findings.insert(d.name.clone(), 1);
                }
            }
            if self.redact {
                let hay = self.hay;
                let out = self
                    .out
                    .get_or_insert_with(|| String::with_capacity(hay.len()));
                out.push_str(hay.get(self.copied..s).unwrap_or_default());
                out.push_str(&d.marker);
                self.copied = e;
            }
        }

        fn finish(self) -> Option<String> {
            let mut out = self.out?;
            out.push_str(self.hay.get(self.copied..).unwrap_or_default());
            Some(out)
        }
    }

    fn byte_at(b: &[u8], i: usize) -> Option<u8> {
        b.get(i).copied()
    }

    fn is_word(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_'
    }

    /// Phone validation: digit count (8-15 for `+` numbers: the longest prefix that ends after
    /// a digit group, is not followed by a letter or digit, and has at most 15 digits) and what
    /// surrounds the match.
    fn phone_span(b: &[u8], s: usize, e: usize) -> Option<Cand> {
        let m = b.get(s..e)?;
        let prev = s.checked_sub(1).and_then(|p| byte_at(b, p));
        if m.first() == Some(&b'+') {
            let prev_bad = prev.is_some_and(|p| is_word(p) || p == b'+');
            let mut digits = 0usize;
            let mut best: Option<(usize, usize)> = None;
            for (i, c) in m.iter().enumerate() {
                if !c.is_ascii_digit() {
                    continue;
                }
                digits += 1;
                if digits > 15 {
                    break;
                }
                let mut end = s + i + 1;
                match byte_at(b, end) {
                    Some(n) if n.is_ascii_digit() => continue,
                    Some(b')') if end < e => end += 1,
                    _ => {}
                }
                if !byte_at(b, end).is_some_and(is_word) {
                    best = Some((end, digits));
                }
            }
            let (end, digits) = best?;
            (digits >= 8).then_some((s, end, prev_bad))
        } else {
            if byte_at(b, e).is_some_and(is_word) {
                return None;
            }
            let prev_bad = prev.is_some_and(|p| is_word(p) || matches!(p, b'+' | b'-' | b'.'));
            Some((s, e, prev_bad))
        }
    }

    pub(super) fn luhn_ok(digits: &[u8]) -> bool {
        let mut sum = 0u32;
        for (i, d) in digits.iter().rev().enumerate() {
            let mut v = u32::from(d.wrapping_sub(b'0'));
            if i % 2 == 1 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        sum.is_multiple_of(10)
    }

    fn card_number_ok(digits: &[u8]) -> bool {
        let plausible_prefix = match digits.first() {
            Some(b'4') => true,
            Some(b'2' | b'3' | b'5' | b'6') => digits.len() >= 14,
            _ => false,
        };
        (13..=19).contains(&digits.len()) && plausible_prefix && luhn_ok(digits)
    }

    /// Card numbers inside a run of digits and separators: the whole run when it has no
    /// separators, else windows of card-like groups (all split by the same separator).
    fn card_spans(b: &[u8], s: usize, e: usize) -> Vec<Span> {
        let Some(run) = b.get(s..e) else {
            return Vec::new();
        };
        // (start, end, separator before) of each digit group, positions relative to `s`.
        let mut groups: Vec<(usize, usize, u8)> = Vec::new();
        let mut i = 0;
        let mut sep = 0u8;
        while i < run.len() {
            if run[i].is_ascii_digit() {
                let start = i;
                while i < run.len() && run[i].is_ascii_digit() {
                    i += 1;
                }
                groups.push((start, i, sep));
            } else {
                sep = run[i];
                i += 1;
            }
        }
        let mut found = Vec::new();
        if groups.len() == 1 {
            if card_number_ok(run) {
                found.push((s, e));
            }
            return found;
        }
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        let mut g = 0;
        while g < groups.len() {
            let mut best_end = None;
            let (first_start, first_end, _) = groups[g];
            if first_end - first_start == 4 {
                digits.clear();
                let mut window_sep = 0u8;
                for (j, &(gs, ge, gsep)) in groups.iter().enumerate().skip(g) {
                    if j > g {
                        if window_sep == 0 {
                            window_sep = gsep;
                        } else if gsep != window_sep {
                            break;
                        }
                        if !(3..=6).contains(&(ge - gs)) {
                            break;
                        }
                    }
                    digits.extend_from_slice(run.get(gs..ge).unwrap_or_default());
                    if digits.len() > 19 {
                        break;
                    }
                    if j > g && card_number_ok(&digits) {
                        best_end = Some((j, ge));
                    }
                }
            } else if (13..=19).contains(&(first_end - first_start))
                && card_number_ok(run.get(first_start..first_end).unwrap_or_default())
            {
                best_end = Some((g, first_end));
            }
            match best_end {
                Some((j, end)) => {
                    found.push((s + first_start, s + end));
                    g = j + 1;
                }
                None => g += 1,
            }
        }
        found
    }

    /// IBAN validation: registry length (cutting trailing groups the regex took from following
    /// text), then the mod-97 checksum.
    fn iban_span(b: &[u8], s: usize, e: usize) -> Option<Span> {
        let m = b.get(s..e)?;
        let country = m.get(..2)?;
        let expected = IBAN_LENGTHS
            .iter()
            .find(|(c, _)| c.as_bytes() == country)
            .map(|(_, n)| *n);
        let alnum = m.iter().filter(|c| c.is_ascii_alphanumeric()).count();
        let want = match expected {
            Some(n) => n,
            None if (15..=34).contains(&alnum) => alnum,
            None => return None,
        };
        if alnum < want {
            return None;
        }
        // End of the `want`-th alphanumeric.
        let mut seen = 0;
        let mut end = 0;
        for (i, c) in m.iter().enumerate() {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen == want {
                    end = i + 1;
                    break;
                }
            }
        }
        if byte_at(b, s + end).is_some_and(is_word) {
            return None;
        }
        let chars: Vec<u8> = m[..end]
            .iter()
            .copied()
            .filter(u8::is_ascii_alphanumeric)
            .collect();
        let (head, tail) = chars.split_at(4);
        let mut rem = 0u32;
        for &c in tail.iter().chain(head) {
            rem = match c {
                b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
                b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
                _ => return None,
            };
        }
        (rem == 1).then_some((s, s + end))
    }

    fn ssn_cand(b: &[u8], s: usize, e: usize) -> Option<Cand> {
        let m = b.get(s..e)?;
        if m.len() != 11 {
            return None;
        }
        let (area, group, serial) = (&m[0..3], &m[4..6], &m[7..11]);
        let prev = s.checked_sub(1).and_then(|p| byte_at(b, p));
        let next_is_digit_after_sep = matches!(byte_at(b, e), Some(b'-' | b'.'))
            && byte_at(b, e + 1).is_some_and(|c| c.is_ascii_digit());
        let ok = area != b"000"
            && area != b"666"
            && area[0] != b'9'
            && group != b"00"
            && serial != b"0000"
            && !next_is_digit_after_sep;
        ok.then_some((s, e, matches!(prev, Some(b'-' | b'.'))))
    }

    /// Private key blocks: from each `BEGIN` line to the end of its `-----END ...-----` line
    /// when one follows within [`MAX_PEM_LEN`], else over the base64 body (truncated keys).
    /// Remembers how far it searched for `END` so the work stays linear.
    fn private_key_spans<'a>(re: &'a Regex, hay: &'a str) -> impl Iterator<Item = Span> + 'a {
        const END: &str = "-----END";
        let b = hay.as_bytes();
        let mut pos = 0usize;
        let mut no_end_until = 0usize;
        std::iter::from_fn(move || {
            let m = re.find_at(hay, pos)?;
            let (s, header_end) = (m.start(), m.end());
            let cap = floor_char_boundary(hay, s.saturating_add(MAX_PEM_LEN));
            let from =
                floor_char_boundary(hay, header_end.max(no_end_until.saturating_sub(END.len())));
            let found = hay.get(from..cap).and_then(|w| w.find(END));
            let end = match found {
                Some(i) => {
                    let mut e = from + i + END.len();
                    let limit = e + 60;
                    while e < limit
                        && byte_at(b, e).is_some_and(|c| {
                            c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
                        })
                    {
                        e += 1;
                    }
                    let limit = e + 5;
                    while e < limit && byte_at(b, e) == Some(b'-') {
                        e += 1;
                    }
                    // Never end inside a word (see `Cand`).
                    while e > 0
                        && byte_at(b, e - 1).is_some_and(is_word)
                        && byte_at(b, e).is_some_and(is_word)
                    {
                        e += 1;
                    }
                    e
                }
                None => {
                    no_end_until = cap;
                    let mut e = header_end;
                    while e < cap
                        && byte_at(b, e).is_some_and(|c| {
                            c.is_ascii_alphanumeric()
                                || matches!(
                                    c,
                                    b'+' | b'/' | b'=' | b'\\' | b'-' | b':' | b',' | b'_'
                                )
                                || c.is_ascii_whitespace()
                        })
                    {
                        e += 1;
                    }
                    e
                }
            };
            pos = end.max(header_end);
            Some((s, end))
        })
    }

    fn floor_char_boundary(s: &str, mut i: usize) -> usize {
        if i >= s.len() {
            return s.len();
        }
        while i > 0 && !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    /// The token after a keyword, unvalidated: the merge checks the part of it that does not
    /// run into another detector's match with [`secret_prefix`].
    fn entropy_span(b: &[u8], caps: &Captures<'_>) -> Option<Span> {
        let whole = caps.get(0)?;
        let tok = caps.get(1)?;
        if keyword_names_pagination(b, whole.start()) {
            return None;
        }
        Some((tok.start(), tok.end()))
    }

    /// `b[s..e]` without trailing dots, when it is secret-like.
    fn secret_prefix(b: &[u8], s: usize, mut e: usize) -> Option<Span> {
        while e > s && byte_at(b, e - 1) == Some(b'.') {
            e -= 1;
        }
        secret_like(b.get(s..e)?).then_some((s, e))
    }

    /// A JSON value that is, as a whole (minus surrounding blanks), a secret-like token.
    fn whole_value_secret(b: &[u8]) -> Option<Span> {
        let s = b.iter().position(|c| !c.is_ascii_whitespace())?;
        let e = b.iter().rposition(|c| !c.is_ascii_whitespace())? + 1;
        let tok = b.get(s..e)?;
        let body_len = tok.len() - tok.iter().rev().take(2).take_while(|&&c| c == b'=').count();
        let body_ok = tok[..body_len]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'.' | b'-'));
        (body_ok && secret_like(tok)).then_some((s, e))
    }

    fn is_uuid(t: &[u8]) -> bool {
        t.len() == 36
            && t.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }

    pub(super) fn shannon_entropy(t: &[u8]) -> f64 {
        let mut counts = [0u32; 256];
        for &c in t {
            counts[usize::from(c)] += 1;
        }
        let n = t.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2()
            })
            .sum()
    }

    /// The token heuristics of `high_entropy_secret` (see the module docs).
    pub(super) fn secret_like(t: &[u8]) -> bool {
        if t.len() < MIN_SECRET_LEN || is_uuid(t) {
            return false;
        }
        let has_digit = t.iter().any(u8::is_ascii_digit);
        let has_alpha = t.iter().any(u8::is_ascii_alphabetic);
        if !has_digit || !has_alpha {
            return false;
        }
        let mut run = 0;
        for c in t {
            run = if c.is_ascii_lowercase() { run + 1 } else { 0 };
            if run >= 10 {
                return false;
            }
        }
        let threshold = if t.iter().all(u8::is_ascii_hexdigit) {
            HEX_ENTROPY_THRESHOLD
        } else {
            ENTROPY_THRESHOLD
        };
        shannon_entropy(t) >= threshold
    }

    fn is_ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
    }

    /// Whether the identifier around the keyword at `kw` names pagination/sync state.
    fn keyword_names_pagination(b: &[u8], kw: usize) -> bool {
        let mut start = kw;
        while start > 0 && kw - start < 64 && byte_at(b, start - 1).is_some_and(is_ident) {
            start -= 1;
        }
        let mut end = kw;
        while end - kw < 64 && byte_at(b, end).is_some_and(is_ident) {
            end += 1;
        }
        b.get(start..end).is_some_and(names_pagination)
    }

    fn names_pagination(ident: &[u8]) -> bool {
        NOT_SECRET_HINTS.iter().any(|w| {
            ident
                .windows(w.len())
                .any(|win| win.eq_ignore_ascii_case(w.as_bytes()))
        })
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::scanner::{IBAN_LENGTHS, builtin, luhn_ok, secret_like, shannon_entropy};
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn scanner() -> &'static Scanner {
        static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
        SCANNER.get_or_init(|| {
            Scanner::new(&DlpSettings::default()).expect("default settings compile")
        })
    }

    /// Redacted text and findings of one string.
    fn redact(s: &Scanner, text: &str) -> (String, Findings) {
        let mut f = Findings::new();
        let out = s
            .scan_str(text, true, &mut f)
            .unwrap_or_else(|| text.to_owned());
        (out, f)
    }

    fn found(s: &Scanner, text: &str) -> Vec<String> {
        let mut f = Findings::new();
        s.scan_str(text, false, &mut f);
        f.into_keys().collect()
    }

    #[test]
    fn scanner_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Scanner>();
        shareable::<std::sync::Arc<Scanner>>();
    }

    #[test]
    fn every_builtin_has_a_pattern() {
        for name in BUILTIN_DETECTORS {
            assert!(builtin(name).is_some(), "{name}");
        }
        let s = scanner();
        assert_eq!(s.detector_names().collect::<Vec<_>>(), BUILTIN_DETECTORS);
    }

    #[test]
    fn iban_table_has_sane_lengths() {
        for (c, n) in IBAN_LENGTHS {
            assert!(c.len() == 2 && (15..=34).contains(n), "{c} {n}");
        }
    }

    #[test]
    fn luhn_and_entropy_helpers() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(luhn_ok(b"79927398713"));
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(secret_like(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
        assert!(!secret_like(b"550e8400-e29b-41d4-a716-446655440000"));
        assert!(!secret_like(b"aaaaaaaaaaaaaaaaaaaaaaaa1"));
    }

    /// (detector, text, should be found)
    const TABLE: &[(&str, &str, bool)] = &[
        // email
        ("email", "contact alice.smith+tag@example.co.uk today", true),
        ("email", "mail bob@mail.example.com.", true),
        ("email", "user@localhost has no domain", false),
        ("email", "follow @alice on the forum", false),
        ("email", "version 1.2.3 released", false),
        // phone
        ("phone", "call +44 20 7946 0958 now", true),
        ("phone", "call +1 (415) 555-0132", true),
        ("phone", "office: 415-555-0132", true),
        ("phone", "office: (415) 555-0132", true),
        ("phone", "mobile +4915112345678", true),
        ("phone", "order 4155550132 shipped", false),
        ("phone", "on 2024-01-15 at 10:30", false),
        ("phone", "x+12345678 is arithmetic", false),
        ("phone", "total 1,234,567.89 EUR", false),
        // payment_card
        ("payment_card", "card 4111 1111 1111 1111 exp 12/29", true),
        ("payment_card", "card 4111-1111-1111-1111", true),
        ("payment_card", "card 4111111111111111", true),
        ("payment_card", "amex 3782 822463 10005", true),
        ("payment_card", "mc 5555555555554444", true),
        ("payment_card", "card 4111 1111 1111 1112", false),
        ("payment_card", "card 4111111111111112", false),
        ("payment_card", "id 1234567890123452", false),
        ("payment_card", "ts 1700000000000 ms", false),
        ("payment_card", "dates 2024-01-15 2024-01-16", false),
        ("payment_card", "long 41111111111111111111111", false),
        // iban
        ("iban", "pay to GB82 WEST 1234 5698 7654 32 please", true),
        ("iban", "pay to GB82WEST12345698765432", true),
        ("iban", "DE89 3704 0044 0532 0130 00", true),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606", true),
        ("iban", "BE68 5390 0754 7034 SENT", true),
        ("iban", "pay to GB82 WEST 1234 5698 7654 33 please", false),
        ("iban", "pay to GB83WEST12345698765432", false),
        ("iban", "code AB12CDEF34567890XYZ", false),
        // us_ssn
        ("us_ssn", "ssn 123-45-6789", true),
        ("us_ssn", "ssn: 078-05-1120.", true),
        ("us_ssn", "ssn 000-12-3456", false),
        ("us_ssn", "ssn 666-12-3456", false),
        ("us_ssn", "ssn 912-34-5678", false),
        ("us_ssn", "ssn 123-00-6789", false),
        ("us_ssn", "ssn 123-45-0000", false),
        ("us_ssn", "part 1123-45-6789", false),
        // aws_access_key
        ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE", true),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A,", true),
        ("aws_access_key", "AKIAIOSFODNN7EXAMPL", false),
        ("aws_access_key", "XAKIAIOSFODNN7EXAMPLE", false),
        ("aws_access_key", "akiaiosfodnn7example", false),
        // github_token
        (
            "github_token",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            true,
        ),
        (
            "github_token",
            "GITHUB_TOKEN=ghs_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            true,
        ),
        (
            "github_token",
            "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTU",
            true,
        ),
        ("github_token", "ghp_short", false),
        (
            "github_token",
            "ghx_abcdefghijklmnopqrstuvwxyz0123456789",
            false,
        ),
        // gitlab_token
        ("gitlab_token", "token glpat-xXxXxXxXxXxXxXxXxXxX", true),
        ("gitlab_token", "glpat-short", false),
        // slack_token
        (
            "slack_token",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            true,
        ),
        ("slack_token", "xoxp-1234567890-abcdef", true),
        ("slack_token", "xoxz-123456789012", false),
        ("slack_token", "xoxb-1", false),
        // private_key
        (
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----",
            true,
        ),
        (
            "private_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk",
            true,
        ),
        ("private_key", "-----BEGIN PRIVATE KEY-----", true),
        (
            "private_key",
            "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQAD",
            false,
        ),
        ("private_key", "-----BEGIN CERTIFICATE-----\nMIIB", false),
        ("private_key", "store your private key safely", false),
        // jwt
        (
            "jwt",
            "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            true,
        ),
        ("jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", true),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9 alone", false),
        ("jwt", "file.name.ext and a.b.c", false),
        // high_entropy_secret
        (
            "high_entropy_secret",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            true,
        ),
        (
            "high_entropy_secret",
            "\"client_secret\": \"8f14e45fceea167a5a36dedd4bea2543\"",
            true,
        ),
        ("high_entropy_secret", "password=Xk9#", false),
        (
            "high_entropy_secret",
            "password: Zq3vN8rT1mWx7LpK2sYh4bGd",
            true,
        ),
        (
            "high_entropy_secret",
            "Authorization: Bearer a8Fk2Lq9Zx7Vn3Mp5Rt1Wy6Hs4",
            true,
        ),
        (
            "high_entropy_secret",
            "Authorization: Basic dXNlcjpwYXNzd29yZDEyMzQ1Ng==",
            true,
        ),
        (
            "high_entropy_secret",
            "url?key=Q2xpZW50SWQ6MTIzNDU2Nzg5MEFC",
            true,
        ),
        (
            "high_entropy_secret",
            "token: 550e8400-e29b-41d4-a716-446655440000",
            false,
        ),
        (
            "high_entropy_secret",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            false,
        ),
        (
            "high_entropy_secret",
            "random Zq3vN8rT1mWx7LpK2sYh4bGd without keyword",
            false,
        ),
        (
            "high_entropy_secret",
            "password: aaaaaaaaaaaaaaaaaaaaaaaa11",
            false,
        ),
        (
            "high_entropy_secret",
            "token: getUserAuthenticationToken2",
            false,
        ),
        (
            "high_entropy_secret",
            "\"nextPageToken\": \"CiAKGjBpNDd2Nmp1ZkxmWjN1cDIwZA\"",
            false,
        ),
        (
            "high_entropy_secret",
            "the secret of great documentation is writing",
            false,
        ),
    ];

    #[test]
    fn detector_table() {
        let s = scanner();
        for (det, text, expected) in TABLE {
            let got = found(s, text);
            assert_eq!(
                got.iter().any(|g| g == det),
                *expected,
                "{det} on {text:?}: found {got:?}"
            );
        }
    }

    #[test]
    fn ordinary_prose_and_ids_are_clean() {
        let s = scanner();
        for text in [
            "The quick brown fox jumps over the lazy dog. It was 2024-01-15 at 10:30:00Z.",
            "Order #1234567 shipped to 221B Baker Street, London NW1 6XE on 15/01/2024.",
            "Request 550e8400-e29b-41d4-a716-446655440000 took 123 ms; status 200.",
            "Merged 3f786850e387550fdab836ed7e6dc881de23001b into main (sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855).",
            "Pricing: 1,299.00 USD per seat; 10% off for 100+ seats. Version 3.14.159.",
            "The API key rotation doc explains how secrets and tokens expire.",
            "{\"id\": 42, \"name\": \"widget\", \"tags\": [\"a\", \"b\"], \"ratio\": 0.75}",
            "",
            "ünïcödé téxt with émojis 🎉 and 中文字符",
        ] {
            assert_eq!(found(s, text), Vec::<String>::new(), "{text:?}");
        }
    }

    #[test]
    fn redaction_is_exact() {
        let s = scanner();
        let cases = [
            (
                "mail alice@example.com or bob@example.org.",
                "mail [REDACTED:email] or [REDACTED:email].",
            ),
            (
                "card 4111 1111 1111 1111, ssn 123-45-6789",
                "card [REDACTED:payment_card], ssn [REDACTED:us_ssn]",
            ),
            (
                "IBAN GB82 WEST 1234 5698 7654 32 ok",
                "IBAN [REDACTED:iban] ok",
            ),
            (
                "AKIAIOSFODNN7EXAMPLE/ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "[REDACTED:aws_access_key]/[REDACTED:github_token]",
            ),
            (
                "password: Zq3vN8rT1mWx7LpK2sYh4bGd.",
                "password: [REDACTED:high_entropy_secret].",
            ),
            (
                "key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\ndone",
                "key:\n[REDACTED:private_key]\ndone",
            ),
            (
                "call +44 20 7946 0958 4111 1111 1111 1111",
                "call [REDACTED:phone] [REDACTED:payment_card]",
            ),
            ("é alice@example.com ü", "é [REDACTED:email] ü"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(s, input).0, want, "{input:?}");
        }
        // Log only: counted, not rewritten.
        let mut f = Findings::new();
        assert_eq!(
            s.scan_str("a@example.com b@example.com", false, &mut f),
            None
        );
        assert_eq!(f, Findings::from([("email".to_owned(), 2)]));
        // Nothing found: no copy.
        let mut f = Findings::new();
        assert_eq!(s.scan_str("nothing here", true, &mut f), None);
        assert!(f.is_empty());
    }

    #[test]
    fn overlapping_matches_keep_one() {
        let s = scanner();
        // The JWT also looks like a secret after "token:"; only the JWT is reported.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let (out, f) = redact(s, &format!("token: {jwt}"));
        assert_eq!(out, "token: [REDACTED:jwt]");
        assert_eq!(f, Findings::from([("jwt".to_owned(), 1)]));
        // A card number right before an email domain: earliest match wins, output well-formed.
        let (out, _) = redact(s, "4111 1111 1111 1111@example.com");
        assert_eq!(out, "[REDACTED:payment_card]@example.com");
        // The GitHub token after a keyword is a github_token, not a generic secret.
        let (out, f) = redact(s, "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(out, "token=[REDACTED:github_token]");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn private_key_without_end_is_capped() {
        let s = scanner();
        let body = "QUJD".repeat(10_000);
        let text = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}");
        let (out, f) = redact(s, &text);
        assert_eq!(f.get("private_key"), Some(&1));
        assert!(out.starts_with("[REDACTED:private_key]"));
        // The rest beyond the cap remains, bounded.
        assert!(out.len() < text.len());
        // Many BEGIN lines without END stay linear (would time out if quadratic).
        let many = "-----BEGIN PRIVATE KEY-----\"".repeat(40_000);
        let mut f = Findings::new();
        s.scan_str(&many, true, &mut f);
        assert_eq!(f.get("private_key"), Some(&40_000));
    }

    #[test]
    fn nested_json_is_scanned_keys_untouched() {
        let s = scanner();
        let mut v = json!({
            "content": [
                {"type": "text", "text": "Reach me at alice@example.com"},
                {"type": "text", "text": "nothing"}
            ],
            "structuredContent": {
                "alice@example.com": "key is an email but keys are untouched",
                "users": [
                    {"name": "Bob", "email": "bob@example.org", "card": "4111111111111111", "age": 42},
                    {"name": "Eve", "notes": ["ssn 123-45-6789", null, true, 1.5]}
                ],
                "api_key": "Zq3vN8rT1mWx7LpK2sYh4bGd",
                "nextPageToken": "CiAKGjBpNDd2Nmp1ZkxmWjN1cDIwZA",
                "request_id": "550e8400-e29b-41d4-a716-446655440000"
            }
        });
        let f = s.scan_json(&mut v, true);
        assert_eq!(
            f,
            Findings::from([
                ("email".to_owned(), 2),
                ("high_entropy_secret".to_owned(), 1),
                ("payment_card".to_owned(), 1),
                ("us_ssn".to_owned(), 1),
            ])
        );
        assert_eq!(
            v,
            json!({
                "content": [
                    {"type": "text", "text": "Reach me at [REDACTED:email]"},
                    {"type": "text", "text": "nothing"}
                ],
                "structuredContent": {
                    "alice@example.com": "key is an email but keys are untouched",
                    "users": [
                        {"name": "Bob", "email": "[REDACTED:email]", "card": "[REDACTED:payment_card]", "age": 42},
                        {"name": "Eve", "notes": ["ssn [REDACTED:us_ssn]", null, true, 1.5]}
                    ],
                    "api_key": "[REDACTED:high_entropy_secret]",
                    "nextPageToken": "CiAKGjBpNDd2Nmp1ZkxmWjN1cDIwZA",
                    "request_id": "550e8400-e29b-41d4-a716-446655440000"
                }
            })
        );
        // Log only leaves the value alone but counts the same.
        let mut v2 = json!(["alice@example.com", {"k": "bob@example.org"}]);
        let before = v2.clone();
        let f = s.scan_json(&mut v2, false);
        assert_eq!(f, Findings::from([("email".to_owned(), 2)]));
        assert_eq!(v2, before);
    }

    #[test]
    fn deep_json_does_not_overflow() {
        let s2 = scanner();
        let mut v = json!("alice@example.com");
        for _ in 0..10_000 {
            v = Value::Array(vec![v]);
        }
        // A small stack: recursion over 10,000 levels would overflow it.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let f = s2.scan_json(&mut v, true);
                (f, v)
            })
            .expect("spawn");
        let (f, mut v) = handle.join().expect("scan thread");
        assert_eq!(f, Findings::from([("email".to_owned(), 1)]));
        // Take the value apart iteratively (dropping it recursively could overflow too).
        let mut depth = 0;
        loop {
            match v {
                Value::Array(mut items) => match items.pop() {
                    Some(inner) => {
                        v = inner;
                        depth += 1;
                    }
                    None => break,
                },
                Value::String(ref text) => {
                    assert_eq!(text, "[REDACTED:email]");
                    break;
                }
                _ => panic!("unexpected value"),
            }
        }
        assert_eq!(depth, 10_000);
    }

    #[test]
    fn custom_detectors() {
        let settings = DlpSettings {
            detectors: vec!["email".to_owned()],
            custom: vec![CustomDetector {
                name: "employee_id".to_owned(),
                pattern: r"\bEMP-[0-9]{6}\b".to_owned(),
            }],
            ..DlpSettings::default()
        };
        settings.validate().expect("valid");
        let s = Scanner::new(&settings).expect("compiles");
        let (out, f) = redact(&s, "EMP-123456 (alice@example.com), not EMP-12345");
        assert_eq!(
            out,
            "[REDACTED:employee_id] ([REDACTED:email]), not EMP-12345"
        );
        assert_eq!(
            f,
            Findings::from([("email".to_owned(), 1), ("employee_id".to_owned(), 1)])
        );
        // Disabled built-ins do not run.
        assert!(found(&s, "card 4111111111111111").is_empty());
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let with_custom = |name: &str, pattern: &str| DlpSettings {
            custom: vec![CustomDetector {
                name: name.to_owned(),
                pattern: pattern.to_owned(),
            }],
            ..DlpSettings::default()
        };
        for (settings, needle) in [
            (with_custom("bad", "(unclosed"), "invalid pattern"),
            (with_custom("bad", "a*"), "empty string"),
            (with_custom("bad", ""), "empty pattern"),
            (with_custom("bad", &"a".repeat(1_001)), "at most 1000"),
            (with_custom("Bad", "x"), "only a-z"),
            (with_custom("", "x"), "1-40"),
            (with_custom(&"a".repeat(41), "x"), "1-40"),
            (with_custom("email", "x"), "clashes"),
            (
                DlpSettings {
                    detectors: vec!["credit_card".to_owned()],
                    ..DlpSettings::default()
                },
                "unknown DLP detector",
            ),
            (
                DlpSettings {
                    custom: vec![
                        CustomDetector {
                            name: "x".to_owned(),
                            pattern: "x".to_owned(),
                        },
                        CustomDetector {
                            name: "x".to_owned(),
                            pattern: "y".to_owned(),
                        },
                    ],
                    ..DlpSettings::default()
                },
                "duplicate",
            ),
        ] {
            let err = settings.validate().expect_err(needle);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            let err = Scanner::new(&settings).expect_err(needle);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
        DlpSettings::default()
            .validate()
            .expect("defaults are valid");
        with_custom("ok_1", &"a".repeat(1_000))
            .validate()
            .expect("1000 chars is fine");
    }

    #[test]
    fn disabled_settings_scan_nothing() {
        let s = Scanner::new(&DlpSettings {
            enabled: false,
            ..DlpSettings::default()
        })
        .expect("compiles");
        assert!(s.is_empty());
        let mut v = json!({"a": "alice@example.com"});
        assert!(s.scan_json(&mut v, true).is_empty());
    }

    #[test]
    fn action_for_takes_the_strictest() {
        let settings = DlpSettings {
            default_action: DlpAction::Redact,
            connector_actions: BTreeMap::from([
                ("github".to_owned(), DlpAction::LogOnly),
                ("hr".to_owned(), DlpAction::Block),
            ]),
            group_actions: BTreeMap::from([
                ("contractors".to_owned(), DlpAction::Block),
                ("auditors".to_owned(), DlpAction::LogOnly),
            ]),
            ..DlpSettings::default()
        };
        assert!(DlpAction::LogOnly < DlpAction::Redact && DlpAction::Redact < DlpAction::Block);
        assert_eq!(settings.action_for("other", &[]), DlpAction::Redact);
        assert_eq!(settings.action_for("github", &[]), DlpAction::LogOnly);
        assert_eq!(
            settings.action_for("github", &["auditors"]),
            DlpAction::LogOnly
        );
        assert_eq!(
            settings.action_for("github", &["unknown"]),
            DlpAction::LogOnly
        );
        assert_eq!(
            settings.action_for("github", &["auditors", "contractors"]),
            DlpAction::Block
        );
        // A group cannot relax the connector's action.
        assert_eq!(settings.action_for("hr", &["auditors"]), DlpAction::Block);
        assert_eq!(
            settings.action_for("other", &["auditors"]),
            DlpAction::Redact
        );
    }

    #[test]
    fn settings_serde() {
        let s: DlpSettings = serde_json::from_str("{}").expect("defaults");
        assert_eq!(s, DlpSettings::default());
        assert!(s.enabled && !s.scan_arguments);
        assert_eq!(s.default_action, DlpAction::Redact);
        assert_eq!(s.detectors.len(), BUILTIN_DETECTORS.len());
        let s: DlpSettings = serde_json::from_value(json!({
            "default_action": "log_only",
            "connector_actions": {"hr": "block"},
            "custom": [{"name": "x", "pattern": "y"}]
        }))
        .expect("parses");
        assert_eq!(s.default_action, DlpAction::LogOnly);
        assert_eq!(s.connector_actions.get("hr"), Some(&DlpAction::Block));
        let back: DlpSettings =
            serde_json::from_value(serde_json::to_value(&s).expect("serializes")).expect("parses");
        assert_eq!(back, s);
        assert_eq!(
            serde_json::to_value(DlpAction::Redact).ok(),
            Some(json!("redact"))
        );
        let mut total = Findings::from([("email".to_owned(), 1)]);
        merge_findings(
            &mut total,
            Findings::from([("email".to_owned(), 2), ("jwt".to_owned(), 1)]),
        );
        assert_eq!(
            total,
            Findings::from([("email".to_owned(), 3), ("jwt".to_owned(), 1)])
        );
    }

    /// Text made of fragments that look like findings, near-misses and glue.
    fn fragmenty() -> impl Strategy<Value = String> {
        let frag = prop_oneof![
            Just("alice@example.com".to_owned()),
            Just("4111 1111 1111 1111".to_owned()),
            Just("4111111111111111".to_owned()),
            Just("+44 20 7946 0958".to_owned()),
            Just("415-555-0132".to_owned()),
            Just("GB82 WEST 1234 5698 7654 32".to_owned()),
            Just("123-45-6789".to_owned()),
            Just("AKIAIOSFODNN7EXAMPLE".to_owned()),
            Just("ghp_abcdefghijklmnopqrstuvwxyz0123456789".to_owned()),
            Just("glpat-xXxXxXxXxXxXxXxXxXxX".to_owned()),
            Just("xoxb-123456789012-abc".to_owned()),
            Just("-----BEGIN RSA PRIVATE KEY-----\nMIIB".to_owned()),
            Just("-----END RSA PRIVATE KEY-----".to_owned()),
            Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh".to_owned()),
            Just("token: ".to_owned()),
            Just("password=".to_owned()),
            Just("\"api_key\": \"".to_owned()),
            Just("[REDACTED:email]".to_owned()),
            "[A-Za-z0-9+/]{0,30}",
            "[0-9]{1,6}",
            "[ .:=@\"()+\\-_\n]{0,3}",
            "\\PC{0,4}",
        ];
        prop::collection::vec(frag, 0..12).prop_map(|v| v.concat())
    }

    fn assert_idempotent(s: &Scanner, input: &str) -> Result<(), TestCaseError> {
        let (once, _) = redact(s, input);
        let mut again = Findings::new();
        let twice = s.scan_str(&once, true, &mut again);
        prop_assert!(
            again.is_empty(),
            "second pass over {:?} found {:?} in {:?}",
            input,
            again,
            once
        );
        prop_assert_eq!(twice, None);
        Ok(())
    }

    proptest! {
        #[test]
        fn scan_never_panics(input in any::<String>()) {
            let s = scanner();
            let mut f = Findings::new();
            let _ = s.scan_str(&input, true, &mut f);
            let _ = s.scan_str(&input, false, &mut f);
            let mut v = Value::String(input);
            let _ = s.scan_json(&mut v, true);
        }

        #[test]
        fn redaction_is_idempotent_on_any_text(input in any::<String>()) {
            assert_idempotent(scanner(), &input)?;
        }

        #[test]
        fn redaction_is_idempotent_on_finding_like_text(input in fragmenty()) {
            assert_idempotent(scanner(), &input)?;
            // Redacting finds at least what log-only finds (more only where one match hid
            // another).
            let s = scanner();
            let mut log_only = Findings::new();
            let mut redacting = Findings::new();
            let _ = s.scan_str(&input, false, &mut log_only);
            let _ = s.scan_str(&input, true, &mut redacting);
            for (name, n) in &log_only {
                prop_assert!(redacting.get(name).is_some_and(|m| m >= n), "{name}: {log_only:?} vs {redacting:?}");
            }
        }
    }
}
