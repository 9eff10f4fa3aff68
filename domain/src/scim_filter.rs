//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parser, canonical printer and an
//! evaluator over resources as JSON, with the quirks Microsoft Entra sends (unquoted values, `"False"`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag_no_case, take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{not, recognize, value};
use nom::error::{ErrorKind, ParseError};
use nom::sequence::{pair, terminated};
use nom::{IResult, Parser};
use serde_json::{Number, Value};

/// Deepest nesting of `( )`, `not ( )` and `[ ]` a filter may have; deeper input is rejected
/// so that the recursive parser cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// Deepest tree a parsed filter may have (chained `and`/`or` count one level per operand): it
/// bounds the recursion of `Display`, `matches` and `Drop` on parsed filters.
pub const MAX_TREE_DEPTH: usize = 256;

/// Schema URNs with this prefix name attributes at the top level of a resource.
const CORE_SCHEMA_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";
/// Attributes whose string comparisons are case-sensitive (by the last path segment).
const CASE_EXACT_ATTRIBUTES: [&str; 4] = ["id", "externalId", "value", "$ref"];

/// An attribute path: `attr`, `attr.subAttr`, optionally prefixed by a schema URN
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN without the `:` that joins it to the attribute name.
    pub uri: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

/// A comparison operator of `attrPath op value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The right-hand side of a comparison. Entra's unquoted words parse as `Str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompValue {
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]` optionally followed by `.subAttr` only in PATCH paths, not here.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH `path`: `attr`, `attr.sub`, `urn:…:attr(.sub)`, `attr[filter]`, `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPath {
    pub path: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after `]`; a plain `attr.sub` keeps its sub-attribute in `path`.
    pub sub_attr: Option<String>,
}

/// Why a filter or PATCH path did not parse: what was expected at which (1-based, in characters)
/// column. The SCIM layer returns it as `invalidFilter` / `invalidPath` detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    pub message: String,
}

/// Parses a SCIM filter such as `userName eq "bjensen" and emails[type eq "work"]`.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    fn whole(i: &str) -> PResult<'_, Filter> {
        let (i, _) = ws(i)?;
        let (i, (filter, _)) = or_expr(i, Ctx::default())?;
        let (i, _) = ws(i)?;
        if !i.is_empty() {
            return Err(nom::Err::Error(PErr::expected(
                i,
                "`and`, `or` or the end of the filter",
            )));
        }
        Ok((i, filter))
    }
    whole(input)
        .map(|(_, filter)| filter)
        .map_err(|e| to_filter_error(input, e))
}

/// Parses a PATCH operation's `path`, e.g. `emails[type eq "work"].value` or `name.familyName`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    fn whole(i: &str) -> PResult<'_, PatchPath> {
        let (i, _) = ws(i)?;
        let (i, path) = label("an attribute name", attr_path).parse(i)?;
        let (i, filter, sub_attr) = match i.strip_prefix('[') {
            Some(inner) => {
                let ctx = Ctx {
                    nesting: 1,
                    in_value_path: true,
                };
                let (i, (filter, _)) = group(inner, ctx, ']', "`]`")?;
                let (i, sub_attr) = match i.strip_prefix('.') {
                    Some(rest) => {
                        let (i, name) = attr_name(rest)?;
                        (i, Some(name.to_owned()))
                    }
                    None => (i, None),
                };
                (i, Some(filter), sub_attr)
            }
            None => (i, None, None),
        };
        let (i, _) = ws(i)?;
        if !i.is_empty() {
            let what = match (&filter, &sub_attr) {
                (None, _) => "`[` or the end of the path",
                (Some(_), None) => "`.` and a sub-attribute, or the end of the path",
                (Some(_), Some(_)) => "the end of the path",
            };
            return Err(nom::Err::Error(PErr::expected(i, what)));
        }
        Ok((
            i,
            PatchPath {
                path,
                filter,
                sub_attr,
            },
        ))
    }
    whole(input)
        .map(|(_, path)| path)
        .map_err(|e| to_filter_error(input, e))
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Parse error: the furthest position reached and what would have been accepted there.
#[derive(Debug)]
struct PErr<'a> {
    /// The rest of the input where parsing failed (always a suffix of the whole input).
    at: &'a str,
    expected: Vec<&'static str>,
    /// A complete description that replaces the "expected ..." form.
    message: Option<String>,
}

impl<'a> PErr<'a> {
    fn expected(at: &'a str, what: &'static str) -> Self {
        Self {
            at,
            expected: vec![what],
            message: None,
        }
    }

    fn message(at: &'a str, message: impl Into<String>) -> Self {
        Self {
            at,
            expected: Vec::new(),
            message: Some(message.into()),
        }
    }
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        Self {
            at: input,
            expected: Vec::new(),
            message: None,
        }
    }

    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    /// Keeps the alternative that got further; at a tie, merges what each expected.
    fn or(mut self, other: Self) -> Self {
        match self.at.len().cmp(&other.at.len()) {
            Ordering::Less => self,
            Ordering::Greater => other,
            Ordering::Equal if self.message.is_some() => self,
            Ordering::Equal if other.message.is_some() => other,
            Ordering::Equal => {
                for what in other.expected {
                    if !self.expected.contains(&what) {
                        self.expected.push(what);
                    }
                }
                self
            }
        }
    }
}

type PResult<'a, O> = IResult<&'a str, O, PErr<'a>>;
/// A parsed filter with the depth of its tree.
type Node = (Filter, usize);

#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    nesting: usize,
    /// Inside `attr[...]`, where RFC 7644 allows no further value path.
    in_value_path: bool,
}

impl Ctx {
    fn deeper<'a>(self, at: &'a str) -> Result<Self, nom::Err<PErr<'a>>> {
        if self.nesting >= MAX_NESTING {
            return Err(nom::Err::Failure(PErr::message(
                at,
                format!("filter nests deeper than {MAX_NESTING} levels"),
            )));
        }
        Ok(Self {
            nesting: self.nesting + 1,
            ..self
        })
    }
}

fn to_filter_error(input: &str, err: nom::Err<PErr<'_>>) -> FilterError {
    let e = match err {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        nom::Err::Incomplete(_) => PErr::message("", "incomplete input"),
    };
    let offset = input.len().saturating_sub(e.at.len());
    let column = input.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
    let found = describe_found(e.at);
    let message = match e.message {
        Some(message) => format!("{message} at column {column}"),
        None if e.expected.is_empty() => format!("unexpected {found} at column {column}"),
        None => format!(
            "expected {} at column {column}, found {found}",
            join_alternatives(&e.expected)
        ),
    };
    FilterError { message }
}

fn describe_found(at: &str) -> String {
    if at.is_empty() {
        return "end of input".to_owned();
    }
    let token = at.split(is_ws).next().unwrap_or_default();
    if token.is_empty() {
        return "whitespace".to_owned();
    }
    let short: String = token.chars().take(24).collect();
    if short.len() < token.len() {
        format!("`{short}…`")
    } else {
        format!("`{short}`")
    }
}

fn join_alternatives(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Replaces an error that made no progress by "expected `what`".
fn label<'a, O, P>(
    what: &'static str,
    mut parser: P,
) -> impl Parser<&'a str, Output = O, Error = PErr<'a>>
where
    P: Parser<&'a str, Output = O, Error = PErr<'a>>,
{
    move |i: &'a str| -> PResult<'a, O> {
        match parser.parse(i) {
            Err(nom::Err::Error(e)) if e.message.is_none() && e.at.len() >= i.len() => {
                Err(nom::Err::Error(PErr::expected(i, what)))
            }
            other => other,
        }
    }
}

/// Turns a recoverable error into a failure: used once a construct is committed to.
fn commit<'a, T>(result: PResult<'a, T>) -> PResult<'a, T> {
    result.map_err(|e| match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    })
}

fn check_depth(depth: usize, at: &str) -> Result<usize, nom::Err<PErr<'_>>> {
    if depth > MAX_TREE_DEPTH {
        return Err(nom::Err::Failure(PErr::message(
            at,
            format!(
                "filter is too complex (more than {MAX_TREE_DEPTH} levels of `and`, `or`, `not` and `[...]`)"
            ),
        )));
    }
    Ok(depth)
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn ws(i: &str) -> PResult<'_, &str> {
    take_while(is_ws).parse(i)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_urn_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_' | '$')
}

/// A case-insensitive keyword not followed by a word character (`and` but not `android`).
fn keyword<'a>(kw: &'static str) -> impl Parser<&'a str, Output = &'a str, Error = PErr<'a>> {
    terminated(
        tag_no_case(kw),
        not(satisfy(|c: char| c.is_ascii_alphanumeric() || c == '_')),
    )
}

/// `ALPHA *(nameChar)` or `$ref`.
fn attr_name(i: &str) -> PResult<'_, &str> {
    label(
        "an attribute name",
        alt((
            tag_no_case("$ref"),
            recognize(pair(
                satisfy(|c: char| c.is_ascii_alphabetic()),
                take_while(is_name_char),
            )),
        )),
    )
    .parse(i)
}

/// `name` optionally followed by `.subName`.
fn name_and_sub(i: &str) -> PResult<'_, (&str, Option<&str>)> {
    let (i, name) = attr_name(i)?;
    match i.strip_prefix('.') {
        Some(rest) => {
            let (i, sub) = attr_name(rest)?;
            Ok((i, (name, Some(sub))))
        }
        None => Ok((i, (name, None))),
    }
}

/// `[urn ":"] name ["." subName]`; in a URN the attribute follows the last colon.
fn attr_path(i: &str) -> PResult<'_, AttrPath> {
    let is_urn = i.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    if !is_urn {
        let (rest, (name, sub)) = name_and_sub(i)?;
        return Ok((
            rest,
            AttrPath {
                uri: None,
                attr: name.to_owned(),
                sub_attr: sub.map(str::to_owned),
            },
        ));
    }
    let (rest, run) = take_while1(is_urn_char).parse(i)?;
    let colon = run.rfind(':').unwrap_or(3);
    let uri = &run[..colon];
    if uri.len() <= "urn".len() {
        return Err(nom::Err::Error(PErr::message(
            i,
            "expected a schema URN and `:attribute` (such as `urn:ietf:params:scim:schemas:core:2.0:User:userName`)",
        )));
    }
    let (after, (name, sub)) = name_and_sub(&i[colon + 1..])?;
    if after.len() != rest.len() {
        return Err(nom::Err::Error(PErr::expected(
            after,
            "the end of the attribute path (one `.subAttribute` at most)",
        )));
    }
    Ok((
        rest,
        AttrPath {
            uri: Some(uri.to_owned()),
            attr: name.to_owned(),
            sub_attr: sub.map(str::to_owned),
        },
    ))
}

/// `filter ("or" filter)*`, left-associative.
fn or_expr(i: &str, ctx: Ctx) -> PResult<'_, Node> {
    let (mut i, (mut acc, mut depth)) = and_expr(i, ctx)?;
    loop {
        let Ok((rest, (_, kw))) = (ws, keyword("or")).parse(i) else {
            break;
        };
        let (rest, _) = ws(rest)?;
        let (rest, (rhs, rhs_depth)) = commit(and_expr(rest, ctx))?;
        depth = check_depth(depth.max(rhs_depth) + 1, kw)?;
        acc = Filter::Or(Box::new(acc), Box::new(rhs));
        i = rest;
    }
    Ok((i, (acc, depth)))
}

/// `filter ("and" filter)*`, left-associative.
fn and_expr(i: &str, ctx: Ctx) -> PResult<'_, Node> {
    let (mut i, (mut acc, mut depth)) = unary(i, ctx)?;
    loop {
        let Ok((rest, (_, kw))) = (ws, keyword("and")).parse(i) else {
            break;
        };
        let (rest, _) = ws(rest)?;
        let (rest, (rhs, rhs_depth)) = commit(unary(rest, ctx))?;
        depth = check_depth(depth.max(rhs_depth) + 1, kw)?;
        acc = Filter::And(Box::new(acc), Box::new(rhs));
        i = rest;
    }
    Ok((i, (acc, depth)))
}

/// `not ( filter )`, `( filter )` or an attribute expression.
fn unary(i: &str, ctx: Ctx) -> PResult<'_, Node> {
    if let Ok((rest, _)) = (keyword("not"), ws, char('(')).parse(i) {
        let (rest, (inner, depth)) = group(rest, ctx.deeper(i)?, ')', "`)`")?;
        let depth = check_depth(depth + 1, i)?;
        return Ok((rest, (Filter::Not(Box::new(inner)), depth)));
    }
    if let Some(rest) = i.strip_prefix('(') {
        return group(rest, ctx.deeper(i)?, ')', "`)`");
    }
    label("an attribute name, `(` or `not (`", |i| attr_expr(i, ctx)).parse(i)
}

/// The inside of `( … )` or `[ … ]` after the opening bracket, including the closing one.
fn group<'a>(i: &'a str, ctx: Ctx, close: char, close_label: &'static str) -> PResult<'a, Node> {
    let (i, _) = ws(i)?;
    let (i, node) = commit(or_expr(i, ctx))?;
    let (i, _) = ws(i)?;
    let (i, _) = commit(label(close_label, char(close)).parse(i))?;
    Ok((i, node))
}

const OPERATOR_LABEL: &str =
    "`[`, `pr` or a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le)";

/// `attrPath pr`, `attrPath op value` or `attrPath [ filter ]`.
fn attr_expr(i: &str, ctx: Ctx) -> PResult<'_, Node> {
    let (rest, path) = attr_path(i)?;
    let (rest, _) = ws(rest)?;
    if let Some(inner) = rest.strip_prefix('[') {
        if ctx.in_value_path {
            return Err(nom::Err::Failure(PErr::message(
                rest,
                "value filters `attr[...]` cannot be nested",
            )));
        }
        let inner_ctx = Ctx {
            in_value_path: true,
            ..ctx.deeper(rest)?
        };
        let (after, (filter, depth)) = group(inner, inner_ctx, ']', "`]`")?;
        let depth = check_depth(depth + 1, rest)?;
        let filter = Filter::ValuePath {
            path,
            filter: Box::new(filter),
        };
        return Ok((after, (filter, depth)));
    }
    let (rest, op) = label(OPERATOR_LABEL, operator).parse(rest)?;
    let Some(op) = op else {
        return Ok((rest, (Filter::Present(path), 1)));
    };
    let (rest, _) = ws(rest)?;
    let (rest, value) = commit(comp_value(rest))?;
    Ok((rest, (Filter::Compare { path, op, value }, 1)))
}

/// A comparison operator, or `None` for `pr`.
fn operator(i: &str) -> PResult<'_, Option<CompareOp>> {
    alt((
        value(Some(CompareOp::Eq), keyword("eq")),
        value(Some(CompareOp::Ne), keyword("ne")),
        value(Some(CompareOp::Co), keyword("co")),
        value(Some(CompareOp::Sw), keyword("sw")),
        value(Some(CompareOp::Ew), keyword("ew")),
        value(Some(CompareOp::Gt), keyword("gt")),
        value(Some(CompareOp::Ge), keyword("ge")),
        value(Some(CompareOp::Lt), keyword("lt")),
        value(Some(CompareOp::Le), keyword("le")),
        value(None, keyword("pr")),
    ))
    .parse(i)
}

/// A JSON string, number, `true`/`false`/`null` (any case), or, as Entra sends them, a bare
/// word up to whitespace, `)` or `]`, taken as a string.
fn comp_value(i: &str) -> PResult<'_, CompValue> {
    if i.starts_with('"') {
        let (rest, s) = json_string(i)?;
        return Ok((rest, CompValue::Str(s)));
    }
    let (rest, word) = label(
        "a value (a \"string\", a number, true, false or null)",
        take_while1(|c: char| !is_ws(c) && c != ')' && c != ']'),
    )
    .parse(i)?;
    let value = if word.eq_ignore_ascii_case("true") {
        CompValue::Bool(true)
    } else if word.eq_ignore_ascii_case("false") {
        CompValue::Bool(false)
    } else if word.eq_ignore_ascii_case("null") {
        CompValue::Null
    } else if let Some(n) = parse_json_number(word) {
        CompValue::Num(n)
    } else {
        CompValue::Str(word.to_owned())
    };
    Ok((rest, value))
}

/// A JSON string literal starting at `i` (which begins with `"`), unescaped by serde_json.
fn json_string(i: &str) -> PResult<'_, String> {
    let bytes = i.as_bytes();
    let mut end = 1;
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => {
                // `end` is at an ASCII quote, so both slices fall on character boundaries.
                return match serde_json::from_str::<String>(&i[..=end]) {
                    Ok(s) => Ok((&i[end + 1..], s)),
                    Err(_) => Err(nom::Err::Failure(PErr::message(
                        i,
                        "invalid string (bad escape or control character)",
                    ))),
                };
            }
            _ => end += 1,
        }
    }
    Err(nom::Err::Failure(PErr::message(i, "unterminated string")))
}

/// A number in JSON syntax. Integers stay integers; others are parsed by `f64::from_str`, which
/// rounds correctly (serde_json without `float_roundtrip` may not), so printing round-trips.
fn parse_json_number(s: &str) -> Option<Number> {
    let b = s.as_bytes();
    let digits_from = |mut k: usize| {
        while b.get(k).is_some_and(u8::is_ascii_digit) {
            k += 1;
        }
        k
    };
    let mut k = usize::from(b.first() == Some(&b'-'));
    match b.get(k) {
        Some(b'0') => k += 1,
        Some(b'1'..=b'9') => k = digits_from(k + 1),
        _ => return None,
    }
    let mut integral = true;
    if b.get(k) == Some(&b'.') {
        let end = digits_from(k + 1);
        if end == k + 1 {
            return None;
        }
        k = end;
        integral = false;
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let end = digits_from(k);
        if end == k {
            return None;
        }
        k = end;
        integral = false;
    }
    if k != b.len() {
        return None;
    }
    if integral {
        if let Ok(u) = s.parse::<u64>() {
            return Some(u.into());
        }
        if let Ok(n) = s.parse::<i64>() {
            return Some(n.into());
        }
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

// ---------------------------------------------------------------------------------------------
// Canonical text
// ---------------------------------------------------------------------------------------------

impl CompareOp {
    /// The operator's keyword in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Binding strength for printing: `or` < `and` < everything else.
fn precedence(filter: &Filter) -> u8 {
    match filter {
        Filter::Or(..) => 0,
        Filter::And(..) => 1,
        _ => 2,
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({operand})")
    } else {
        write!(f, "{operand}")
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            // Left-associative: a right operand of the same strength needs parentheses.
            Filter::And(l, r) => {
                write_operand(f, l, precedence(l) < 1)?;
                f.write_str(" and ")?;
                write_operand(f, r, precedence(r) <= 1)
            }
            Filter::Or(l, r) => {
                write_operand(f, l, false)?;
                f.write_str(" or ")?;
                write_operand(f, r, precedence(r) == 0)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

impl AttrPath {
    /// The value(s) at this path in `resource` (attribute names matched case-insensitively; a URN
    /// prefix selects the extension object keyed by that URN; the core User/Group URNs select the
    /// top level). Multi-valued attributes flatten (emails.value -> every email's value).
    pub fn lookup<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        let base = match &self.uri {
            None => Some(resource),
            Some(uri) => get_ci(resource, uri).or_else(|| {
                uri.get(..CORE_SCHEMA_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(CORE_SCHEMA_PREFIX))
                    .then_some(resource)
            }),
        };
        let Some(top) = base.and_then(|base| get_ci(base, &self.attr)) else {
            return out;
        };
        match (&self.sub_attr, top) {
            (None, top) => push_flat(&mut out, top),
            (Some(sub), Value::Array(items)) => {
                for item in items {
                    if let Some(v) = get_ci(item, sub) {
                        push_flat(&mut out, v);
                    }
                }
            }
            (Some(sub), top) => {
                if let Some(v) = get_ci(top, sub) {
                    push_flat(&mut out, v);
                }
            }
        }
        out
    }

    /// Whether string comparisons on this path are case-sensitive: by its last segment, as
    /// `id`, `externalId`, `value` (e.g. group members' ids) and `$ref` are caseExact.
    fn is_case_exact(&self) -> bool {
        let last = self.sub_attr.as_deref().unwrap_or(&self.attr);
        CASE_EXACT_ATTRIBUTES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(last))
    }
}

fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn push_flat<'a>(out: &mut Vec<&'a Value>, value: &'a Value) {
    match value {
        Value::Array(items) => out.extend(items),
        other => out.push(other),
    }
}

/// Evaluates a filter against a SCIM resource as JSON (e.g. a User with "userName", "name": {..},
/// "emails": [{..}], and the enterprise extension under its URN key).
///
/// A comparison on a multi-valued attribute matches if any value does; a complex value compared
/// without a sub-attribute stands for its `value`. `ne` is the negation of `eq`, so it is true
/// for an absent attribute, and `eq null` is true for an absent or null one.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::Compare { path, op, value } => compare(path, *op, value, resource),
        Filter::Present(path) => path.lookup(resource).into_iter().any(is_present),
        Filter::And(l, r) => matches(l, resource) && matches(r, resource),
        Filter::Or(l, r) => matches(l, resource) || matches(r, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::ValuePath { path, filter } => path
            .lookup(resource)
            .into_iter()
            .any(|element| matches(filter, element)),
    }
}

fn compare(path: &AttrPath, op: CompareOp, value: &CompValue, resource: &Value) -> bool {
    let case_exact = path.is_case_exact();
    let candidates: Vec<&Value> = path
        .lookup(resource)
        .into_iter()
        .filter_map(|v| {
            if v.is_object() {
                get_ci(v, "value")
            } else {
                Some(v)
            }
        })
        .collect();
    let eq = |candidates: &[&Value]| match value {
        CompValue::Null => candidates.is_empty() || candidates.iter().any(|v| v.is_null()),
        _ => candidates
            .iter()
            .any(|v| compare_one(v, CompareOp::Eq, value, case_exact)),
    };
    match op {
        CompareOp::Eq => eq(&candidates),
        CompareOp::Ne => !eq(&candidates),
        _ => candidates
            .iter()
            .any(|v| compare_one(v, op, value, case_exact)),
    }
}

/// One attribute value against the filter's value; `ne` is handled by the caller.
fn compare_one(attr: &Value, op: CompareOp, value: &CompValue, case_exact: bool) -> bool {
    match (value, attr) {
        (CompValue::Str(s), Value::String(a)) => compare_str(a, s, op, case_exact),
        (CompValue::Num(n), Value::Number(a)) => ordering_matches(compare_numbers(a, n), op),
        (CompValue::Num(n), Value::String(a)) => {
            parse_json_number(a).is_some_and(|a| ordering_matches(compare_numbers(&a, n), op))
        }
        (CompValue::Str(s), Value::Number(a)) => {
            parse_json_number(s).is_some_and(|n| ordering_matches(compare_numbers(a, &n), op))
        }
        (CompValue::Bool(b), Value::Bool(a)) => op == CompareOp::Eq && a == b,
        // Entra sends booleans as "True"/"False" strings (without aadOptscim062020).
        (CompValue::Str(s), Value::Bool(a)) => op == CompareOp::Eq && parse_bool(s) == Some(*a),
        (CompValue::Bool(b), Value::String(a)) => op == CompareOp::Eq && parse_bool(a) == Some(*b),
        (CompValue::Null, Value::Null) => op == CompareOp::Eq,
        _ => false,
    }
}

fn compare_str(attr: &str, value: &str, op: CompareOp, case_exact: bool) -> bool {
    let (a, v): (Cow<'_, str>, Cow<'_, str>) = if case_exact {
        (attr.into(), value.into())
    } else {
        (attr.to_lowercase().into(), value.to_lowercase().into())
    };
    match op {
        CompareOp::Eq => a == v,
        CompareOp::Ne => a != v,
        CompareOp::Co => a.contains(&*v),
        CompareOp::Sw => a.starts_with(&*v),
        CompareOp::Ew => a.ends_with(&*v),
        CompareOp::Gt => a > v,
        CompareOp::Ge => a >= v,
        CompareOp::Lt => a < v,
        CompareOp::Le => a <= v,
    }
}

fn ordering_matches(ordering: Option<Ordering>, op: CompareOp) -> bool {
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Ne => ordering.is_ne(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `pr`: not null, "", [] or {}; a complex value counts only if one of its members is not blank
/// (Entra clears a manager with `{"value": ""}`).
fn is_present(value: &Value) -> bool {
    match value {
        Value::Object(members) => members.values().any(|v| !is_blank(v)),
        other => !is_blank(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn path(attr: &str) -> AttrPath {
        AttrPath {
            uri: None,
            attr: attr.to_owned(),
            sub_attr: None,
        }
    }

    fn sub(attr: &str, sub_attr: &str) -> AttrPath {
        AttrPath {
            sub_attr: Some(sub_attr.to_owned()),
            ..path(attr)
        }
    }

    fn urn(uri: &str, attr: &str) -> AttrPath {
        AttrPath {
            uri: Some(uri.to_owned()),
            ..path(attr)
        }
    }

    fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare { path, op, value }
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.to_owned())
    }

    fn eq_str(attr: &str, v: &str) -> Filter {
        cmp(path(attr), CompareOp::Eq, s(v))
    }

    fn pr(attr: &str) -> Filter {
        Filter::Present(path(attr))
    }

    fn and(l: Filter, r: Filter) -> Filter {
        Filter::And(Box::new(l), Box::new(r))
    }

    fn or(l: Filter, r: Filter) -> Filter {
        Filter::Or(Box::new(l), Box::new(r))
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn value_path(attr: &str, f: Filter) -> Filter {
        Filter::ValuePath {
            path: path(attr),
            filter: Box::new(f),
        }
    }

    fn parse(input: &str) -> Filter {
        match parse_filter(input) {
            Ok(f) => f,
            Err(e) => panic!("{input:?} did not parse: {e}"),
        }
    }

    fn parse_err(input: &str) -> String {
        match parse_filter(input) {
            Ok(f) => panic!("{input:?} parsed as {f:?}"),
            Err(e) => e.message,
        }
    }

    /// A user as Entra provisions it, as the store would render it.
    fn entra_user() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                ENTERPRISE
            ],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "jyoung",
            "userName": "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081",
            "active": true,
            "displayName": "Jamie Young",
            "title": "Tour Guide",
            "userType": "Employee",
            "emails": [
                {"value": "Jamie.Young@Example.com", "type": "work", "primary": true},
                {"value": "jamie@example.org", "type": "home", "primary": false}
            ],
            "ims": [{"value": "jamie@foo.com", "type": "xmpp"}],
            "name": {"givenName": "Jamie", "familyName": "Young", "formatted": "Jamie Young"},
            "roles": [],
            "nickName": null,
            "loginCount": 42,
            ENTERPRISE: {
                "employeeNumber": "701984",
                "department": "Tour Operations",
                "manager": {
                    "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                    "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d"
                }
            },
            "meta": {
                "resourceType": "User",
                "created": "2011-08-01T18:29:49.793Z",
                "lastModified": "2011-08-01T18:29:49.793Z"
            }
        })
    }

    fn group_resource() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Group1",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "$ref": null},
                {"value": "902c246b-6245-4190-8e05-00816be7344a"}
            ]
        })
    }

    #[test]
    fn rfc_7644_examples_parse_and_print_canonically() {
        // (input, canonical text): every example filter of RFC 7644 §3.4.2.2.
        let cases = [
            (r#"userName eq "bjensen""#, r#"userName eq "bjensen""#),
            (
                r#"name.familyName co "O'Malley""#,
                r#"name.familyName co "O'Malley""#,
            ),
            (r#"userName sw "J""#, r#"userName sw "J""#),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            ),
            ("title pr", "title pr"),
            (
                r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
                r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            ),
            (
                r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
                r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            ),
            (
                r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
                r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            ),
            (
                r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
                r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            ),
            (
                r#"title pr and userType eq "Employee""#,
                r#"title pr and userType eq "Employee""#,
            ),
            (
                r#"title pr or userType eq "Intern""#,
                r#"title pr or userType eq "Intern""#,
            ),
            (
                r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
                r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            ),
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            ),
            (
                r#"userType eq "Employee" and (emails.type eq "work")"#,
                r#"userType eq "Employee" and emails.type eq "work""#,
            ),
            (
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            ),
            (
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            ),
        ];
        for (input, canonical) in cases {
            let filter = parse(input);
            assert_eq!(filter.to_string(), canonical, "canonical form of {input:?}");
            assert_eq!(parse(canonical), filter, "round trip of {input:?}");
        }
    }

    #[test]
    fn rfc_examples_build_the_expected_trees() {
        assert_eq!(
            parse(r#"title pr and userType eq "Employee""#),
            and(pr("title"), eq_str("userType", "Employee"))
        );
        assert_eq!(
            parse(
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#
            ),
            and(
                cmp(path("userType"), CompareOp::Ne, s("Employee")),
                not(or(
                    cmp(path("emails"), CompareOp::Co, s("example.com")),
                    cmp(sub("emails", "value"), CompareOp::Co, s("example.org")),
                ))
            )
        );
        assert_eq!(
            parse(
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#
            ),
            or(
                value_path(
                    "emails",
                    and(
                        eq_str("type", "work"),
                        cmp(path("value"), CompareOp::Co, s("@example.com"))
                    )
                ),
                value_path(
                    "ims",
                    and(
                        eq_str("type", "xmpp"),
                        cmp(path("value"), CompareOp::Co, s("@foo.com"))
                    )
                ),
            )
        );
        assert_eq!(
            parse(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#),
            cmp(
                sub("meta", "lastModified"),
                CompareOp::Gt,
                s("2011-05-13T04:42:34Z")
            )
        );
    }

    #[test]
    fn entra_filters() {
        assert_eq!(
            parse(r#"userName eq "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081""#),
            eq_str("userName", "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081")
        );
        // Unquoted values run to whitespace, `)` or `]` and are strings.
        assert_eq!(
            parse("externalId eq jyoung"),
            eq_str("externalId", "jyoung")
        );
        assert_eq!(
            parse("userName eq Test_User_dfeef4c5-5681-4387-b016-bdf221e82081"),
            eq_str("userName", "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081")
        );
        assert_eq!(
            parse(r#"displayName eq "Group1""#),
            eq_str("displayName", "Group1")
        );
        assert_eq!(
            parse("externalId eq jyoung and (userName eq a@b.c)"),
            and(eq_str("externalId", "jyoung"), eq_str("userName", "a@b.c"))
        );
        assert_eq!(
            parse("members[value eq 2819c223]"),
            value_path("members", eq_str("value", "2819c223"))
        );
        // A bare word prints quoted, so the canonical form is plain RFC 7644.
        assert_eq!(
            parse("externalId eq jyoung").to_string(),
            r#"externalId eq "jyoung""#
        );
    }

    #[test]
    fn urn_prefixed_paths() {
        assert_eq!(
            parse(&format!("{ENTERPRISE}:manager pr")),
            Filter::Present(urn(ENTERPRISE, "manager"))
        );
        assert_eq!(
            parse(&format!(r#"{ENTERPRISE}:employeeNumber eq "701984""#)),
            cmp(
                urn(ENTERPRISE, "employeeNumber"),
                CompareOp::Eq,
                s("701984")
            )
        );
        assert_eq!(
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "Jamie""#),
            cmp(
                AttrPath {
                    uri: Some("urn:ietf:params:scim:schemas:core:2.0:User".to_owned()),
                    attr: "name".to_owned(),
                    sub_attr: Some("givenName".to_owned()),
                },
                CompareOp::Eq,
                s("Jamie")
            )
        );
        assert_eq!(
            parse(&format!("{ENTERPRISE}:manager.$ref pr")),
            Filter::Present(AttrPath {
                sub_attr: Some("$ref".to_owned()),
                ..urn(ENTERPRISE, "manager")
            })
        );
        // An attribute merely named `urn` is no URN.
        assert_eq!(parse("urn.x pr"), Filter::Present(sub("urn", "x")));
    }

    #[test]
    fn precedence_and_associativity() {
        let (a, b, c) = (pr("a"), pr("b"), pr("c"));
        assert_eq!(
            parse("a pr or b pr and c pr"),
            or(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(
            parse("a pr and b pr or c pr"),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            parse("a pr or b pr or c pr"),
            or(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            parse("a pr and b pr and c pr"),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(parse("not (a pr) and b pr"), and(not(a.clone()), b.clone()));
        assert_eq!(
            parse("(a pr or b pr) and c pr"),
            and(or(a.clone(), b.clone()), c.clone())
        );
        // Printing keeps the structure with as few parentheses as it needs.
        assert_eq!(
            or(a.clone(), or(b.clone(), c.clone())).to_string(),
            "a pr or (b pr or c pr)"
        );
        assert_eq!(
            and(a.clone(), and(b.clone(), c.clone())).to_string(),
            "a pr and (b pr and c pr)"
        );
        assert_eq!(
            and(or(a.clone(), b.clone()), c.clone()).to_string(),
            "(a pr or b pr) and c pr"
        );
        assert_eq!(
            or(and(a.clone(), b.clone()), c.clone()).to_string(),
            "a pr and b pr or c pr"
        );
        assert_eq!(not(not(a)).to_string(), "not (not (a pr))");
    }

    #[test]
    fn values_keywords_and_whitespace() {
        let num = |n: Number| CompValue::Num(n);
        let cases = [
            (
                "active eq TRUE",
                cmp(path("active"), CompareOp::Eq, CompValue::Bool(true)),
            ),
            (
                "active Eq False",
                cmp(path("active"), CompareOp::Eq, CompValue::Bool(false)),
            ),
            (
                "nickName EQ Null",
                cmp(path("nickName"), CompareOp::Eq, CompValue::Null),
            ),
            ("n gt 42", cmp(path("n"), CompareOp::Gt, num(42u64.into()))),
            (
                "n lt -3",
                cmp(path("n"), CompareOp::Lt, num((-3i64).into())),
            ),
            (
                "n ge 1.5e3",
                cmp(
                    path("n"),
                    CompareOp::Ge,
                    num(Number::from_f64(1500.0).unwrap()),
                ),
            ),
            // Not JSON numbers, so bare words.
            ("n le 12abc", cmp(path("n"), CompareOp::Le, s("12abc"))),
            ("n le 01", cmp(path("n"), CompareOp::Le, s("01"))),
            ("n eq 1e999", cmp(path("n"), CompareOp::Eq, s("1e999"))),
            // A quoted keyword is a string.
            (
                r#"active eq "true""#,
                cmp(path("active"), CompareOp::Eq, s("true")),
            ),
            (
                r#"a eq "q\"b\\s\u00e9\n""#,
                cmp(path("a"), CompareOp::Eq, s("q\"b\\s\u{e9}\n")),
            ),
            (r#"a eq """#, cmp(path("a"), CompareOp::Eq, s(""))),
            (
                "  \tuserName   eq \"x\"   AND  title PR  ",
                and(eq_str("userName", "x"), pr("title")),
            ),
            ("(a pr)and(b pr)", and(pr("a"), pr("b"))),
            ("not(a pr)", not(pr("a"))),
            (
                "emails [ type eq work ]",
                value_path("emails", eq_str("type", "work")),
            ),
            // Keywords are attribute names where an attribute is expected.
            ("not pr and and pr", and(pr("not"), pr("and"))),
            ("$ref eq x", eq_str("$ref", "x")),
        ];
        for (input, expected) in cases {
            let filter = parse(input);
            assert_eq!(filter, expected, "{input:?}");
            assert_eq!(
                parse(&filter.to_string()),
                filter,
                "round trip of {input:?}"
            );
        }
    }

    #[test]
    fn filter_errors_say_what_was_expected_where() {
        let deep_parens = format!("{}a pr{}", "(".repeat(65), ")".repeat(65));
        let deep_not = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        let long_chain = vec!["a pr"; MAX_TREE_DEPTH + 2].join(" or ");
        let cases: [(&str, &[&str]); 20] = [
            (
                "userName eq",
                &["expected a value", "column 12", "end of input"],
            ),
            (
                "userName zz \"x\"",
                &["comparison operator", "column 10", "`zz`"],
            ),
            (
                "(a eq \"b\"",
                &["expected `)`", "column 10", "end of input"],
            ),
            (
                "a eq \"b\" extra",
                &[
                    "`and`, `or` or the end of the filter",
                    "column 10",
                    "`extra`",
                ],
            ),
            (
                "",
                &["expected an attribute name", "column 1", "end of input"],
            ),
            ("   ", &["expected an attribute name", "column 4"]),
            (&deep_parens, &["nests deeper than 64 levels"]),
            (&deep_not, &["nests deeper than 64 levels"]),
            (&long_chain, &["too complex"]),
            ("a eq \"b", &["unterminated string", "column 6"]),
            (r#"a eq "\q""#, &["invalid string", "column 6"]),
            ("a pr and", &["expected an attribute name", "column 9"]),
            ("a pr or (", &["expected an attribute name", "column 10"]),
            ("emails[type eq \"work\"", &["expected `]`", "column 22"]),
            ("emails[a[b pr]]", &["cannot be nested", "column 9"]),
            ("a. pr", &["expected an attribute name", "column 3"]),
            ("urn:x eq 1", &["schema URN", "column 1"]),
            (
                "urn:a:b:c.d.e pr",
                &["the end of the attribute path", "column 12"],
            ),
            ("1a pr", &["expected an attribute name", "column 1", "`1a`"]),
            ("displayName eq \"é\" zz", &["column 20", "`zz`"]),
        ];
        for (input, needles) in cases {
            let message = parse_err(input);
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{input:?}: {message:?} lacks {needle:?}"
                );
            }
        }
        // Just inside the limits still parses.
        let ok_parens = format!("{}a pr{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(parse(&ok_parens), pr("a"));
        let ok_chain = vec!["a pr"; MAX_TREE_DEPTH].join(" or ");
        assert!(parse_filter(&ok_chain).is_ok());
    }

    #[test]
    fn deepest_accepted_filter_prints_and_evaluates() {
        // 256 operands chained with `or`: a tree MAX_TREE_DEPTH deep, handled on a test
        // thread's stack by the parser, the printer and the evaluator.
        let text = format!("{} or b pr", vec!["a pr"; MAX_TREE_DEPTH - 1].join(" or "));
        let filter = parse(&text);
        let message = parse_err(&format!("({text}) and c pr"));
        assert!(message.contains("too complex"), "{message}");
        assert_eq!(parse(&filter.to_string()), filter);
        assert!(matches(&filter, &json!({"b": 1})));
        assert!(!matches(&filter, &json!({"c": 1})));
    }

    #[test]
    fn patch_paths() {
        let cases = [
            (
                r#"emails[type eq "work"].value"#,
                PatchPath {
                    path: path("emails"),
                    filter: Some(eq_str("type", "work")),
                    sub_attr: Some("value".to_owned()),
                },
            ),
            (
                "name.familyName",
                PatchPath {
                    path: sub("name", "familyName"),
                    filter: None,
                    sub_attr: None,
                },
            ),
            (
                "userName",
                PatchPath {
                    path: path("userName"),
                    filter: None,
                    sub_attr: None,
                },
            ),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
                PatchPath {
                    path: path("members"),
                    filter: Some(eq_str("value", "2819c223-7f76-453a-919d-413861904646")),
                    sub_attr: None,
                },
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                PatchPath {
                    path: urn(ENTERPRISE, "manager"),
                    filter: None,
                    sub_attr: None,
                },
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                PatchPath {
                    path: urn(ENTERPRISE, "employeeNumber"),
                    filter: None,
                    sub_attr: None,
                },
            ),
            (
                r#"addresses[type eq "work" and primary eq true].streetAddress"#,
                PatchPath {
                    path: path("addresses"),
                    filter: Some(and(
                        eq_str("type", "work"),
                        cmp(path("primary"), CompareOp::Eq, CompValue::Bool(true)),
                    )),
                    sub_attr: Some("streetAddress".to_owned()),
                },
            ),
        ];
        for (input, expected) in cases {
            let parsed = match parse_patch_path(input) {
                Ok(p) => p,
                Err(e) => panic!("{input:?}: {e}"),
            };
            assert_eq!(parsed, expected, "{input:?}");
            assert_eq!(parsed.to_string(), input, "canonical form of {input:?}");
        }
    }

    #[test]
    fn patch_path_errors() {
        let cases: [(&str, &[&str]); 8] = [
            ("", &["expected an attribute name", "column 1"]),
            (r#"emails[type eq "work""#, &["expected `]`", "column 22"]),
            (
                r#"emails[type eq "work"]."#,
                &["expected an attribute name", "column 24"],
            ),
            (
                r#"emails[type eq "work"]x"#,
                &["`.` and a sub-attribute", "column 23"],
            ),
            (
                r#"emails[type eq "work"].value.x"#,
                &["the end of the path", "column 29"],
            ),
            (
                "name.familyName.x",
                &["`[` or the end of the path", "column 16"],
            ),
            ("emails[a[b pr]]", &["cannot be nested"]),
            ("emails[]", &["expected an attribute name", "column 8"]),
        ];
        for (input, needles) in cases {
            let message = match parse_patch_path(input) {
                Ok(p) => panic!("{input:?} parsed as {p:?}"),
                Err(e) => e.to_string(),
            };
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{input:?}: {message:?} lacks {needle:?}"
                );
            }
        }
    }

    #[test]
    fn lookup_follows_urns_case_and_multi_values() {
        let user = entra_user();
        let strings = |p: &AttrPath| -> Vec<String> {
            p.lookup(&user)
                .into_iter()
                .map(|v| v.as_str().unwrap_or("<not a string>").to_owned())
                .collect()
        };
        assert_eq!(
            strings(&path("USERNAME")),
            ["Test_User_dfeef4c5-5681-4387-b016-bdf221e82081"]
        );
        assert_eq!(
            strings(&sub("emails", "value")),
            ["Jamie.Young@Example.com", "jamie@example.org"]
        );
        assert_eq!(strings(&sub("Name", "GIVENNAME")), ["Jamie"]);
        assert_eq!(strings(&urn(ENTERPRISE, "employeeNumber")), ["701984"]);
        assert_eq!(
            strings(&urn(&ENTERPRISE.to_uppercase(), "EmployeeNumber")),
            ["701984"]
        );
        assert_eq!(
            strings(&AttrPath {
                sub_attr: Some("value".to_owned()),
                ..urn(ENTERPRISE, "manager")
            }),
            ["26118915-6090-4610-87e4-49d8ca9f808d"]
        );
        // The core schema URN names the top level.
        assert_eq!(
            strings(&urn(
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "displayName"
            )),
            ["Jamie Young"]
        );
        // Enterprise attributes are not at the top level, nor other extensions anywhere.
        assert!(path("employeeNumber").lookup(&user).is_empty());
        assert!(
            urn("urn:example:other:1.0:User", "employeeNumber")
                .lookup(&user)
                .is_empty()
        );
        assert_eq!(path("emails").lookup(&user).len(), 2);
        assert!(path("roles").lookup(&user).is_empty());
        assert_eq!(path("nickName").lookup(&user), [&Value::Null]);
        assert!(path("missing").lookup(&user).is_empty());
        assert!(path("userName").lookup(&json!("not an object")).is_empty());
    }

    #[test]
    fn matches_an_entra_user() {
        let user = entra_user();
        let cases = [
            (
                r#"userName eq "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081""#,
                true,
            ),
            // userName is case-insensitive, as Entra's matching expects.
            (
                r#"userName eq "TEST_USER_DFEEF4C5-5681-4387-B016-BDF221E82081""#,
                true,
            ),
            (r#"userName eq "someone else""#, false),
            ("externalId eq jyoung", true),
            // externalId and id are caseExact.
            ("externalId eq JYoung", false),
            (r#"id eq "2819C223-7F76-453A-919D-413861904646""#, false),
            (r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true),
            ("active eq true", true),
            ("active eq false", false),
            (r#"active eq "True""#, true),
            (r#"active eq "False""#, false),
            ("active ne false", true),
            (r#"title pr and userType eq "Employee""#, true),
            (r#"title pr and userType eq "Intern""#, false),
            (r#"title pr or userType eq "Intern""#, true),
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                true,
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                false,
            ),
            (r#"not (emails co "nowhere.test")"#, true),
            (
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
                true,
            ),
            // `value` is caseExact, so the work address's `Example.com` does not contain this.
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                false,
            ),
            (
                r#"emails[type eq "work" and value co "@Example.com"]"#,
                true,
            ),
            (r#"emails[type eq "home" and primary eq true]"#, false),
            (r#"emails[type eq "WORK" and primary eq true]"#, true),
            (r#"emails[type eq "work"] and emails[type eq "home"]"#, true),
            // Any element matching is enough; the inner filter is per element.
            (r#"emails.type eq "home""#, true),
            (r#"emails.type eq "other""#, false),
            (r#"emails co "jamie.young@""#, true),
            (r#"emails sw "JAMIE@""#, true),
            (r#"emails ew ".ORG""#, true),
            (r#"name.givenName eq "jamie""#, true),
            (r#"name.familyName sw "You""#, true),
            (r#"name.familyName ew "oung""#, true),
            (r#"name.familyName co "x""#, false),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, true),
            (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified ge "2011-08-01T18:29:49.793Z""#, true),
            (r#"meta.lastModified le "2011-08-01T18:29:49.792Z""#, false),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq 701984",
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber gt 9999",
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
                false,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager pr",
                true,
            ),
            // A complex value compared without sub-attribute stands for its `value`.
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "Jamie""#,
                true,
            ),
            (r#"employeeNumber eq "701984""#, false),
            ("loginCount eq 42", true),
            ("loginCount eq 42.0", true),
            ("loginCount gt 41.5", true),
            ("loginCount ge 43", false),
            ("loginCount le 42", true),
            (r#"loginCount eq "42""#, true),
            ("loginCount co 4", false),
            ("loginCount eq true", false),
            ("title pr", true),
            ("nickName pr", false),
            ("roles pr", false),
            ("missing pr", false),
            ("emails pr", true),
            ("nickName eq null", true),
            ("missing eq null", true),
            ("title eq null", false),
            ("title ne null", true),
            (r#"missing ne "x""#, true),
            (r#"missing eq "x""#, false),
            (r#"missing gt "a""#, false),
            (r#"title ne "Tour Guide""#, false),
            (r#"title gt "tour""#, true),
            ("active gt false", false),
        ];
        for (input, expected) in cases {
            assert_eq!(matches(&parse(input), &user), expected, "{input}");
        }
    }

    #[test]
    fn matches_a_group_and_blank_values() {
        let group = group_resource();
        let cases = [
            (r#"displayName eq "Group1""#, true),
            (r#"displayName eq "group1""#, true),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
                true,
            ),
            (
                r#"members[value eq "2819C223-7F76-453A-919D-413861904646"]"#,
                false,
            ),
            (r#"members eq "902c246b-6245-4190-8e05-00816be7344a""#, true),
            (
                r#"members.value eq "902c246b-6245-4190-8e05-00816be7344a""#,
                true,
            ),
            (r#"members[value eq "nope"]"#, false),
            ("members[$ref pr]", false),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "Group1""#,
                true,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(matches(&parse(input), &group), expected, "{input}");
        }
        // Entra clears a manager with `{"value": ""}`: that is not present.
        let cleared = json!({ENTERPRISE: {"manager": {"value": ""}}, "x": {}, "y": ""});
        for input in [&format!("{ENTERPRISE}:manager pr"), "x pr", "y pr"] {
            assert!(!matches(&parse(input), &cleared), "{input}");
        }
        // Booleans stored as Entra's strings still compare as booleans.
        let stringly = json!({"active": "False"});
        assert!(matches(&parse("active eq false"), &stringly));
        assert!(!matches(&parse("active eq true"), &stringly));
    }

    // ---- property tests ------------------------------------------------------------------------

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            9 => "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
            1 => Just("$ref".to_owned()),
        ]
    }

    fn arb_path() -> impl Strategy<Value = AttrPath> {
        (
            prop::option::weighted(0.2, "urn:[a-z]{1,4}(:[a-zA-Z0-9.]{1,5}){0,4}"),
            arb_name(),
            prop::option::weighted(0.3, arb_name()),
        )
            .prop_map(|(uri, attr, sub_attr)| AttrPath {
                uri,
                attr,
                sub_attr,
            })
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            any::<String>().prop_map(CompValue::Str),
            "[a-zA-Z0-9 \"\\\\()\\[\\]]{0,8}".prop_map(CompValue::Str),
            any::<u64>().prop_map(|n| CompValue::Num(n.into())),
            any::<i64>().prop_map(|n| CompValue::Num(n.into())),
            any::<f64>().prop_filter_map("finite", |x| Number::from_f64(x).map(CompValue::Num)),
            any::<bool>().prop_map(CompValue::Bool),
            Just(CompValue::Null),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ])
    }

    fn arb_attr_expr() -> impl Strategy<Value = Filter> {
        prop_oneof![
            (arb_path(), arb_op(), arb_value()).prop_map(|(path, op, value)| Filter::Compare {
                path,
                op,
                value
            }),
            arb_path().prop_map(Filter::Present),
        ]
    }

    fn combine(inner: impl Strategy<Value = Filter> + Clone) -> impl Strategy<Value = Filter> {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
            inner.prop_map(not),
        ]
    }

    /// Filters allowed inside `[...]`: no further value paths.
    fn arb_value_filter() -> impl Strategy<Value = Filter> {
        arb_attr_expr().prop_recursive(4, 16, 2, combine)
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            3 => arb_attr_expr(),
            1 => (arb_path(), arb_value_filter()).prop_map(|(path, f)| Filter::ValuePath {
                path,
                filter: Box::new(f),
            }),
        ];
        leaf.prop_recursive(5, 32, 2, combine)
    }

    fn arb_patch_path() -> impl Strategy<Value = PatchPath> {
        prop_oneof![
            arb_path().prop_map(|path| PatchPath {
                path,
                filter: None,
                sub_attr: None,
            }),
            (arb_path(), arb_value_filter(), prop::option::of(arb_name())).prop_map(
                |(path, filter, sub_attr)| PatchPath {
                    path,
                    filter: Some(filter),
                    sub_attr,
                }
            ),
        ]
    }

    /// Strings made of filter-ish tokens, to reach deeper into the parser than random text.
    fn filterish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("eq".to_owned()),
            Just("pr".to_owned()),
            Just("and".to_owned()),
            Just("or".to_owned()),
            Just("not".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just(".".to_owned()),
            Just(" ".to_owned()),
            Just("urn:a:b:".to_owned()),
            Just("$ref".to_owned()),
            Just("é".to_owned()),
            "[a-zA-Z0-9]{1,4}",
            "\"[a-z\\\\]{0,3}\"",
            "-?[0-9]{1,3}(\\.[0-9])?(e[0-9])?",
        ];
        prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
    }

    /// The text of a valid filter with one span deleted and one token inserted: near misses that
    /// fail deep inside the parser (or still parse).
    fn mutated_filter_text() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just(""),
            Just("("),
            Just(")"),
            Just("["),
            Just("]"),
            Just("\""),
            Just(" and "),
            Just(" or "),
            Just("not ("),
            Just("."),
            Just(":"),
            Just("\\"),
            Just("é"),
        ];
        (arb_filter(), any::<prop::sample::Index>(), 0..4usize, token).prop_map(
            |(filter, at, delete, token)| {
                let mut chars: Vec<char> = filter.to_string().chars().collect();
                let start = at.index(chars.len() + 1);
                let end = (start + delete).min(chars.len());
                chars.splice(start..end, token.chars());
                chars.into_iter().collect()
            },
        )
    }

    /// Resource keys the keyed filters and the hostile resources share, so that filters find
    /// something to compare in arbitrary JSON.
    const RESOURCE_KEYS: &[&str] = &[
        "userName",
        "emails",
        "value",
        "type",
        "primary",
        "name",
        "givenName",
        "active",
        "members",
        "$ref",
        "id",
        "meta",
        "lastModified",
        "x",
        "urn:a:b",
    ];

    /// Filters over [`RESOURCE_KEYS`], with every kind of node.
    fn keyed_filter() -> impl Strategy<Value = Filter> {
        // Attribute names only (the URN is a key of the resources, not a name).
        let names = &RESOURCE_KEYS[..RESOURCE_KEYS.len() - 1];
        let key = || prop::sample::select(names).prop_map(str::to_owned);
        let path =
            (key(), prop::option::weighted(0.3, key())).prop_map(|(attr, sub_attr)| AttrPath {
                uri: None,
                attr,
                sub_attr,
            });
        let leaf =
            prop_oneof![
                (path.clone(), arb_op(), arb_value())
                    .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
                path.clone().prop_map(Filter::Present),
            ];
        let inner = leaf.clone().prop_recursive(2, 6, 2, combine);
        let leaf = prop_oneof![
            3 => leaf,
            1 => (path, inner).prop_map(|(path, f)| Filter::ValuePath { path, filter: Box::new(f) }),
        ];
        leaf.prop_recursive(4, 24, 2, combine)
    }

    /// Filter text nested or chained far beyond the limits: `(((`, `not (((`, `a[`, `and`/`or`
    /// runs, closed or not.
    fn deep_filter_text() -> impl Strategy<Value = String> {
        let opener = prop::sample::select(vec!["(", "not (", "a[", "a pr and ", "a pr or ", " "]);
        (
            prop::collection::vec(opener, 1..8),
            1..3000usize,
            any::<bool>(),
        )
            .prop_map(|(openers, depth, closed)| {
                let mut text = String::new();
                let mut closers = Vec::new();
                for n in 0..depth {
                    let o = openers[n % openers.len()];
                    text.push_str(o);
                    match o {
                        "(" | "not (" => closers.push(')'),
                        "a[" => closers.push(']'),
                        _ => {}
                    }
                }
                text.push_str("b pr");
                if closed {
                    text.extend(closers.iter().rev());
                }
                text
            })
    }

    /// Either parser on `input`: a parse prints back to itself and evaluates without panicking;
    /// an error names its column.
    fn check_both_parsers(input: &str) -> Result<(), TestCaseError> {
        match parse_filter(input) {
            Ok(f) => {
                prop_assert_eq!(parse_filter(&f.to_string()), Ok(f.clone()));
                let _ = matches(&f, &entra_user());
            }
            Err(e) => prop_assert!(e.message.contains("column"), "{}", e.message),
        }
        match parse_patch_path(input) {
            Ok(p) => prop_assert_eq!(parse_patch_path(&p.to_string()), Ok(p)),
            Err(e) => prop_assert!(e.message.contains("column"), "{}", e.message),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::fuzz::config(800))]

        #[test]
        fn fuzz_scim_filter_any_text(input in any::<String>()) {
            check_both_parsers(&input)?;
        }

        #[test]
        fn fuzz_scim_filter_hostile_text(input in crate::fuzz::hostile_string()) {
            check_both_parsers(&input)?;
        }

        #[test]
        fn fuzz_scim_filter_filterish_text(input in filterish()) {
            check_both_parsers(&input)?;
        }

        #[test]
        fn fuzz_scim_filter_near_misses(input in mutated_filter_text()) {
            check_both_parsers(&input)?;
        }

        #[test]
        fn fuzz_scim_filter_deep_nesting(input in deep_filter_text()) {
            // Refused with a message (not a stack overflow) beyond the limits.
            check_both_parsers(&input)?;
            if let Ok(f) = parse_filter(&input) {
                prop_assert!(input.matches('(').count() <= MAX_NESTING, "{} levels parsed", input.matches('(').count());
                let _ = f.to_string();
            }
        }

        #[test]
        fn fuzz_scim_filter_matches_hostile_resources(
            filter in keyed_filter(),
            resource in crate::fuzz::json_value(5, RESOURCE_KEYS),
        ) {
            let result = matches(&filter, &resource);
            prop_assert_eq!(matches(&not(filter.clone()), &resource), !result);
            // The printed filter parses to one that decides the same.
            let reparsed = parse_filter(&filter.to_string());
            prop_assert_eq!(reparsed.as_ref(), Ok(&filter));
            if let Filter::Compare { path, .. } | Filter::Present(path) = &filter {
                let _ = path.lookup(&resource);
            }
        }
    }

    proptest! {
        #[test]
        fn filters_round_trip_through_text(filter in arb_filter()) {
            let text = filter.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(filter), "{}", text);
        }

        #[test]
        fn patch_paths_round_trip_through_text(patch in arb_patch_path()) {
            let text = patch.to_string();
            prop_assert_eq!(parse_patch_path(&text), Ok(patch), "{}", text);
        }

        #[test]
        fn matches_never_panics_and_not_negates(filter in arb_filter()) {
            let user = entra_user();
            let result = matches(&filter, &user);
            prop_assert_eq!(matches(&not(filter), &user), !result);
        }
    }
}
