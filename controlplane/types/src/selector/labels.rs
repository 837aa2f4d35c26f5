//! Label selectors.
//!
//! The grammar, the validation and the matching rules are those of Kubernetes
//! (`k8s.io/apimachinery/pkg/labels`), and so are the error messages, so that
//! `kubectl -l` behaves against Wasmkube as it does against Kubernetes:
//!
//! ```text
//! <selector>    ::= "" | <requirement> | <requirement> "," <selector>
//! <requirement> ::= ["!"] KEY [ <set-based> | <exact> | <ordered> ]
//! <set-based>   ::= ("in" | "notin") "(" VALUE ["," VALUE]* ")"
//! <exact>       ::= ("=" | "==" | "!=") VALUE
//! <ordered>     ::= (">" | "<") INTEGER
//! ```
//!
//! A bare `KEY` asks for the label to exist, `!KEY` for it to be absent. Values may
//! be empty (`key=`, `key in (,a)`). Whitespace separates tokens and is otherwise
//! ignored; `in` and `notin` are keywords only where an operator is expected.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::{is_qualified_name, is_valid_label_value};

/// Why a label selector could not be built. The message is the one Kubernetes gives.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The selector string breaks the grammar between requirements
    /// (`found ',', expected: !, identifier, or 'end of string'`).
    #[error("{0}")]
    Syntax(String),
    /// One requirement of a selector string could not be parsed or is invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A requirement built from its parts is invalid (bad key, bad value, wrong number
    /// of values for its operator).
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` entry has an operator other than `In`, `NotIn`, `Exists`
    /// and `DoesNotExist`.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    UnknownOperator(String),
}

/// How a requirement relates a label to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key`: the label is present, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key=value`.
    Equals,
    /// `key==value`, the same as [`Operator::Equals`].
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key>n`: the label is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label is an integer less than `n`.
    LessThan,
}

impl Operator {
    /// The operator as Kubernetes names it (`selection.Operator`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One condition on one label. Every requirement of a [`Selector`] must hold.
///
/// Built only through [`Requirement::new`] or parsing, so it is always valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// A requirement on label `key`, checked as Kubernetes checks it: the key must be a
    /// qualified name, every value a valid label value; `In` and `NotIn` need at least
    /// one value, the exact-match operators exactly one, `Exists` and `DoesNotExist`
    /// none, `GreaterThan` and `LessThan` exactly one integer.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, Error> {
        let key = key.into();
        validate_requirement(&key, operator, &values).map_err(Error::Invalid)?;
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and without duplicates when parsed).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy the requirement. `NotIn` and `!=` hold when the label is
    /// absent; `>` and `<` need the label to be present and a 64-bit integer.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !listed(v)),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(value), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    value > bound
                } else {
                    value < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// The canonical form: `!key`, `key`, `key=v`, `key in (a,b)`, …, with the values
    /// of a set sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        write!(f, "{}{op}", self.key)?;
        if set {
            f.write_str("(")?;
        }
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the conjunction of its requirements, kept sorted by key.
///
/// The selector without requirements selects everything. Kubernetes also has a
/// selector that selects nothing, for an absent (`null`) `LabelSelector` in an object;
/// this type does not represent it: callers holding an `Option<LabelSelector>` treat
/// `None` as matching no object before calling [`Selector::from_label_selector`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that selects everything.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Parses the Kubernetes selector syntax (`app=web,tier in (a,b),!legacy`). The
    /// empty string selects everything.
    pub fn parse(selector: &str) -> Result<Selector, Error> {
        let requirements = Parser::new(selector).parse()?;
        Ok(Selector::from_requirements(requirements))
    }

    /// The selector made of `requirements`, sorted by key.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// The selector a `LabelSelector` of an object stands for: one `=` requirement per
    /// `matchLabels` entry and one per `matchExpressions` entry. A selector with neither
    /// selects everything. (An absent selector selects nothing: see [`Selector`].)
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Selector, Error> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key.clone(),
                Operator::Equals,
                vec![value.clone()],
            )?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(Error::UnknownOperator(other.to_owned())),
            };
            requirements.push(Requirement::new(
                expression.key.clone(),
                operator,
                expression.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// Whether the selector has no requirement, and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The value label `key` must have for the selector to match, when its first
    /// requirement on `key` pins one (`key=v`, `key==v` or `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    /// The canonical form: the requirements joined by commas, without spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_joined(f, &self.requirements)
    }
}

impl FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Selector, Error> {
        Selector::parse(s)
    }
}

/// Checks a requirement as Kubernetes' `NewRequirement` does; the error is the
/// aggregate of every problem found.
fn validate_requirement(key: &str, operator: Operator, values: &[String]) -> Result<(), String> {
    let mut errs = Vec::new();
    let key_errs = is_qualified_name(key);
    if !key_errs.is_empty() {
        errs.push(invalid("key", &go_quote(key), &key_errs.join("; ")));
    }
    let detail = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        _ => None,
    };
    if let Some(detail) = detail {
        errs.push(invalid("values", &go_string_slice(values), detail));
    }
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, value) in values.iter().enumerate() {
            if value.parse::<i64>().is_err() {
                errs.push(invalid(
                    &format!("values[{i}]"),
                    &go_quote(value),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, value) in values.iter().enumerate() {
        let value_errs = is_valid_label_value(value);
        if !value_errs.is_empty() {
            errs.push(invalid(
                &format!("values[{i}][{key}]"),
                &go_quote(value),
                &value_errs.join("; "),
            ));
        }
    }
    match aggregate(errs) {
        None => Ok(()),
        Some(message) => Err(message),
    }
}

/// A field error as Kubernetes prints it: `path: Invalid value: <value>: detail`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// Several messages as one, as Kubernetes aggregates them: duplicates dropped, a single
/// message as is, more in brackets separated by ", ".
fn aggregate(messages: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !unique.contains(&message) {
            unique.push(message);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// A string quoted as Go's `%q` quotes it.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() || c.is_whitespace() => {
                if u32::from(c) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                } else {
                    out.push_str(&format!("\\U{:08x}", u32::from(c)));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as Go's `%#v` prints a `[]string` (an empty list being nil).
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_owned();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// A token of the selector syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector into tokens. Operators take the longest match (`==`, `!=`);
/// identifiers run up to whitespace or a special symbol. As in Kubernetes, a NUL byte
/// ends the input where a token would start, and is skipped right after a token.
#[derive(Debug)]
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn next_token(&mut self) -> (Token, &'a str) {
        while self.peek().is_some_and(is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let token = match self.peek() {
            None | Some(0) => return (Token::EndOfString, ""),
            Some(first) if is_special_symbol(first) => {
                self.pos += 1;
                match (first, self.peek()) {
                    (b'=', Some(b'=')) => {
                        self.pos += 1;
                        Token::DoubleEquals
                    }
                    (b'!', Some(b'=')) => {
                        self.pos += 1;
                        Token::NotEquals
                    }
                    (b'=', _) => Token::Equals,
                    (b'!', _) => Token::DoesNotExist,
                    (b'(', _) => Token::OpenPar,
                    (b')', _) => Token::ClosedPar,
                    (b',', _) => Token::Comma,
                    (b'>', _) => Token::GreaterThan,
                    _ => Token::LessThan,
                }
            }
            Some(_) => {
                while self
                    .peek()
                    .is_some_and(|b| b != 0 && !is_whitespace(b) && !is_special_symbol(b))
                {
                    self.pos += 1;
                }
                match &self.input[start..self.pos] {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Identifier,
                }
            }
        };
        let literal = &self.input[start..self.pos];
        if self.peek() == Some(0) {
            self.pos += 1;
        }
        (token, literal)
    }
}

/// Where the parser is: `in` and `notin` are operators only where an operator is
/// expected, and identifiers everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// A recursive descent parser over the whole token list.
#[derive(Debug)]
struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(selector: &'a str) -> Parser<'a> {
        let mut lexer = Lexer {
            input: selector,
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.next_token();
            items.push(item);
            if item.0 == Token::EndOfString {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let index = self.position.min(self.items.len() - 1);
        let (token, literal) = self.items[index];
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, Error> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(self.parse_requirement().map_err(Error::Requirement)?);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(Error::Syntax(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(Error::Syntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(Error::Syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        let (operator, values) = match operator {
            Some(operator) => (operator, Vec::new()),
            None => {
                let operator = self.parse_operator()?;
                let values = match operator {
                    Operator::In | Operator::NotIn => self.parse_values()?,
                    _ => vec![self.parse_exact_value()?],
                };
                (operator, values)
            }
        };
        validate_requirement(key, operator, &values)?;
        Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The key, and `Exists` or `DoesNotExist` when the requirement is only a key.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let errs = is_qualified_name(literal);
        if !errs.is_empty() {
            return Err(invalid("<nil>", &go_quote(literal), &errs.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,…)`: the values sorted and without duplicates; `()` is the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        let mut values = match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                values
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                vec![String::new()]
            }
            _ => {
                return Err(format!(
                    "found '{literal}', expected: ',', ')' or identifier"
                ));
            }
        };
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    /// A comma separated list of possibly empty values, up to (not including) `)`.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal.to_owned());
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // An empty value before this comma, after it, or between two commas.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; empty at a comma or the end.
    fn parse_exact_value(&mut self) -> Result<String, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(String::new());
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(literal.to_owned())
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match Selector::parse(s) {
            Ok(selector) => panic!("{s:?} should not parse, got {selector:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn single(s: &str) -> Requirement {
        let selector = parse(s);
        assert_eq!(selector.requirements().len(), 1, "{s:?}");
        selector.requirements()[0].clone()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' \
        or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
        'my.name',  or '123-abc', regex used for validation is \
        '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of \
        alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
        character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn lexer_tokens_and_longest_match() {
        use Token::*;
        let mut lexer = Lexer {
            input: " a==b!=c=d!e(f)g,h>1<2 in notin x\t\n",
            pos: 0,
        };
        let mut tokens = Vec::new();
        loop {
            let item = lexer.next_token();
            tokens.push(item);
            if item.0 == EndOfString {
                break;
            }
        }
        assert_eq!(
            tokens,
            vec![
                (Identifier, "a"),
                (DoubleEquals, "=="),
                (Identifier, "b"),
                (NotEquals, "!="),
                (Identifier, "c"),
                (Equals, "="),
                (Identifier, "d"),
                (DoesNotExist, "!"),
                (Identifier, "e"),
                (OpenPar, "("),
                (Identifier, "f"),
                (ClosedPar, ")"),
                (Identifier, "g"),
                (Comma, ","),
                (Identifier, "h"),
                (GreaterThan, ">"),
                (Identifier, "1"),
                (LessThan, "<"),
                (Identifier, "2"),
                (In, "in"),
                (NotIn, "notin"),
                (Identifier, "x"),
                (EndOfString, ""),
            ]
        );
    }

    #[test]
    fn lexer_splits_runs_of_symbols_greedily() {
        let mut lexer = Lexer {
            input: "===!!=(",
            pos: 0,
        };
        let tokens: Vec<Token> = std::iter::from_fn(|| match lexer.next_token() {
            (Token::EndOfString, _) => None,
            (token, _) => Some(token),
        })
        .collect();
        assert_eq!(
            tokens,
            vec![
                Token::DoubleEquals,
                Token::Equals,
                Token::DoesNotExist,
                Token::NotEquals,
                Token::OpenPar
            ]
        );
    }

    #[test]
    fn empty_and_blank_selectors_select_everything() {
        for s in ["", " ", "\t\n "] {
            let selector = parse(s);
            assert!(selector.is_empty());
            assert_eq!(selector, Selector::everything());
            assert!(selector.matches(&labels(&[])));
            assert!(selector.matches(&labels(&[("a", "b")])));
            assert_eq!(selector.to_string(), "");
        }
    }

    #[test]
    fn parses_every_operator() {
        let cases: &[(&str, &str, Operator, &[&str])] = &[
            ("x", "x", Operator::Exists, &[]),
            ("!x", "x", Operator::DoesNotExist, &[]),
            ("x=a", "x", Operator::Equals, &["a"]),
            ("x==a", "x", Operator::DoubleEquals, &["a"]),
            ("x!=a", "x", Operator::NotEquals, &["a"]),
            ("x in (b,a)", "x", Operator::In, &["a", "b"]),
            ("x notin (a)", "x", Operator::NotIn, &["a"]),
            ("x>5", "x", Operator::GreaterThan, &["5"]),
            ("x<5", "x", Operator::LessThan, &["5"]),
            ("example.com/x=a", "example.com/x", Operator::Equals, &["a"]),
        ];
        for (s, key, operator, values) in cases {
            let r = single(s);
            assert_eq!(r.key(), *key, "{s:?}");
            assert_eq!(r.operator(), *operator, "{s:?}");
            assert_eq!(r.values(), strings(values).as_slice(), "{s:?}");
        }
    }

    #[test]
    fn whitespace_is_insignificant_between_tokens() {
        assert_eq!(
            parse(" x = a , ! y , z in ( a , b ) "),
            parse("x=a,!y,z in (a,b)")
        );
        assert_eq!(single("x\tin\n(a)").operator(), Operator::In);
    }

    #[test]
    fn parses_empty_values() {
        assert_eq!(single("x=").values(), [""]);
        assert_eq!(single("x==").values(), [""]);
        assert_eq!(single("x!=").values(), [""]);
        assert_eq!(parse("x=,y=a").requirements()[0].values(), [""]);
        assert_eq!(single("x in ()").values(), [""]);
        assert_eq!(single("x in (,a)").values(), ["", "a"]);
        assert_eq!(single("x in (a,)").values(), ["", "a"]);
        assert_eq!(single("x in (a,,b)").values(), ["", "a", "b"]);
        assert_eq!(single("x in (,)").values(), [""]);
        assert_eq!(single("x notin (,,)").values(), [""]);
    }

    #[test]
    fn set_values_are_sorted_and_deduplicated() {
        assert_eq!(single("x in (c,a,b,a)").values(), ["a", "b", "c"]);
    }

    #[test]
    fn keywords_are_identifiers_in_value_context() {
        let r = single("in in (in,notin)");
        assert_eq!(r.key(), "in");
        assert_eq!(r.operator(), Operator::In);
        assert_eq!(r.values(), ["in", "notin"]);
        assert_eq!(single("notin").operator(), Operator::Exists);
        assert_eq!(single("!in").operator(), Operator::DoesNotExist);
        assert_eq!(single("x=in").values(), ["in"]);
        assert_eq!(single("x notin (notin)").operator(), Operator::NotIn);
    }

    #[test]
    fn requirements_are_sorted_by_key() {
        let selector = parse("z=1,a=2,m");
        let keys: Vec<&str> = selector.requirements().iter().map(|r| r.key()).collect();
        assert_eq!(keys, ["a", "m", "z"]);
        assert_eq!(selector.to_string(), "a=2,m,z=1");
    }

    #[test]
    fn display_is_canonical_and_reparses() {
        let cases = [
            ("x", "x"),
            ("! x", "!x"),
            ("x = a", "x=a"),
            ("x == a", "x==a"),
            ("x != a", "x!=a"),
            ("x in (b, a)", "x in (a,b)"),
            ("x notin (b,a,b)", "x notin (a,b)"),
            ("x > 1", "x>1"),
            ("x < 0", "x<0"),
            ("x in (,a)", "x in (,a)"),
            ("x=", "x="),
            ("b=1, a in (z,y), !c", "a in (y,z),b=1,!c"),
        ];
        for (input, canonical) in cases {
            let selector = parse(input);
            assert_eq!(selector.to_string(), canonical, "{input:?}");
            assert_eq!(parse(canonical), selector, "{input:?}");
        }
    }

    #[test]
    fn display_sorts_unsorted_values_of_built_requirements() {
        let r = Requirement::new("x", Operator::In, strings(&["b", "a"])).unwrap();
        assert_eq!(r.values(), ["b", "a"]);
        assert_eq!(r.to_string(), "x in (a,b)");
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "10"), ("s", "abc")]);
        let cases = [
            ("app", true),
            ("missing", false),
            ("!app", false),
            ("!missing", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("missing=", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=web", true),
            ("app in (db,web)", true),
            ("app in (db)", false),
            ("missing in (web)", false),
            ("app notin (db)", true),
            ("app notin (web,db)", false),
            ("missing notin (web)", true),
            ("n>9", true),
            ("n>10", false),
            ("n<11", true),
            ("n<10", false),
            ("n>0", true),
            ("missing>1", false),
            ("missing<1", false),
            ("s>1", false),
            ("s<1", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app,!missing,n>1,tier in (front)", true),
        ];
        for (s, expected) in cases {
            assert_eq!(parse(s).matches(&l), expected, "{s:?}");
        }
    }

    #[test]
    fn empty_value_matches_empty_label() {
        let l = labels(&[("x", "")]);
        assert!(parse("x=").matches(&l));
        assert!(parse("x in (,a)").matches(&l));
        assert!(!parse("x notin ()").matches(&l));
        assert!(parse("x").matches(&l));
        assert!(!parse("x=").matches(&labels(&[])));
    }

    #[test]
    fn ordered_operators_compare_as_64_bit_integers() {
        let big = labels(&[("n", "9223372036854775807")]);
        assert!(parse("n>9223372036854775806").matches(&big));
        assert!(!parse("n<9223372036854775807").matches(&big));
        let overflow = labels(&[("n", "9223372036854775808")]);
        assert!(!parse("n>1").matches(&overflow));
        assert!(!parse("n<1").matches(&overflow));
        assert!(parse("n>1").matches(&labels(&[("n", "+2")])));
        assert!(!parse("n>1").matches(&labels(&[("n", " 2")])));
    }

    #[test]
    fn syntax_errors_between_requirements() {
        assert_eq!(
            parse_err(","),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(parse_err("x,"), "found '', expected: identifier after ','");
        assert_eq!(
            parse_err("x,,y"),
            "found ',', expected: identifier after ','"
        );
        assert_eq!(
            parse_err("x=a b"),
            "found 'b', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("x in (a) y"),
            "found 'y', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("!x=a"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("x)"),
            "unable to parse requirement: found ')', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn syntax_errors_inside_requirements() {
        let cases = [
            ("!", "found '', expected: identifier"),
            ("! =a", "found '=', expected: identifier"),
            ("x y", "found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("x (a)", "found '(', expected: in, notin, =, ==, !=, gt, lt"),
            ("x in a", "found 'a' expected: '('"),
            ("x in", "found '' expected: '('"),
            ("x in (", "found '', expected: ',', ')' or identifier"),
            ("x in (=)", "found '=', expected: ',', ')' or identifier"),
            ("x in (a", "found '', expected: ',' or ')'"),
            ("x in (a b)", "found 'b', expected: ',' or ')'"),
            ("x in (a,", "found '', expected: ',', or identifier"),
            ("x in (a,=)", "found '=', expected: ',', or identifier"),
            ("x=(", "found '(', expected: identifier"),
            ("x==!", "found '!', expected: identifier"),
            ("x>=1", "found '=', expected: identifier"),
        ];
        for (s, message) in cases {
            assert_eq!(
                parse_err(s),
                format!("unable to parse requirement: {message}"),
                "{s:?}"
            );
        }
    }

    #[test]
    fn invalid_keys_are_reported_with_a_nil_path() {
        assert_eq!(
            parse_err("-x=a"),
            format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {NAME_PART_MSG}")
        );
        assert_eq!(
            parse_err("a/b/c"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name \
             must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
             used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an \
             optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            parse_err("/x"),
            "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be \
             non-empty"
        );
        assert_eq!(
            parse_err("x/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"x/\": name part must be \
                 non-empty; {NAME_PART_MSG}"
            )
        );
    }

    #[test]
    fn invalid_values_are_reported_with_their_index_and_key() {
        assert_eq!(
            parse_err("x=-a"),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"-a\": \
                 {LABEL_VALUE_MSG}"
            )
        );
        assert_eq!(
            parse_err("x in (a,b-,c_)"),
            format!(
                "unable to parse requirement: [values[1][x]: Invalid value: \"b-\": \
                 {LABEL_VALUE_MSG}, values[2][x]: Invalid value: \"c_\": {LABEL_VALUE_MSG}]"
            )
        );
        let long = "v".repeat(64);
        assert_eq!(
            parse_err(&format!("x={long}")),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"{long}\": must \
                 be no more than 63 characters"
            )
        );
    }

    #[test]
    fn ordered_operators_need_an_integer() {
        assert_eq!(
            parse_err("x>a"),
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' \
             operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x<"),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' \
             operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x>99999999999999999999"),
            "unable to parse requirement: values[0]: Invalid value: \"99999999999999999999\": \
             for 'Gt', 'Lt' operators, the value must be an integer"
        );
        // A negative number is an integer but not a valid label value.
        assert_eq!(
            parse_err("x>-1"),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"-1\": \
                 {LABEL_VALUE_MSG}"
            )
        );
        assert_eq!(
            parse_err("x>1.5."),
            format!(
                "unable to parse requirement: [values[0]: Invalid value: \"1.5.\": for 'Gt', \
                 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \
                 \"1.5.\": {LABEL_VALUE_MSG}]"
            )
        );
    }

    #[test]
    fn requirement_new_checks_value_counts() {
        let err = |op, values: &[&str]| {
            Requirement::new("x", op, strings(values))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(Operator::In, &[]),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set \
             can't be empty"
        );
        assert_eq!(
            err(Operator::NotIn, &[]),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set \
             can't be empty"
        );
        assert_eq!(
            err(Operator::Equals, &["a", "b"]),
            "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility \
             requires one single value"
        );
        assert_eq!(
            err(Operator::NotEquals, &[]),
            "values: Invalid value: []string(nil): exact-match compatibility requires one \
             single value"
        );
        assert_eq!(
            err(Operator::Exists, &["a"]),
            "values: Invalid value: []string{\"a\"}: values set must be empty for exists and \
             does not exist"
        );
        assert_eq!(
            err(Operator::LessThan, &["1", "2"]),
            "values: Invalid value: []string{\"1\", \"2\"}: for 'Gt', 'Lt' operators, exactly \
             one value is required"
        );
        assert!(Requirement::new("x", Operator::DoesNotExist, vec![]).is_ok());
        assert!(Requirement::new("x", Operator::GreaterThan, strings(&["7"])).is_ok());
    }

    #[test]
    fn requirement_new_reports_key_then_values() {
        assert_eq!(
            Requirement::new("-k", Operator::Equals, strings(&["-v"]))
                .unwrap_err()
                .to_string(),
            format!(
                "[key: Invalid value: \"-k\": {NAME_PART_MSG}, values[0][-k]: Invalid value: \
                 \"-v\": {LABEL_VALUE_MSG}]"
            )
        );
    }

    #[test]
    fn aggregate_drops_duplicates() {
        assert_eq!(aggregate(vec![]), None);
        assert_eq!(aggregate(strings(&["a"])), Some("a".to_owned()));
        assert_eq!(aggregate(strings(&["a", "a"])), Some("a".to_owned()));
        assert_eq!(
            aggregate(strings(&["a", "b", "a"])),
            Some("[a, b]".to_owned())
        );
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\n\t\u{1}\u{7f}"), "\"\\n\\t\\x01\\x7f\"");
        assert_eq!(go_quote("é\u{a0}"), "\"é\\u00a0\"");
    }

    #[test]
    fn nul_byte_ends_the_input_where_a_token_starts() {
        assert_eq!(parse("x=a \0 garbage"), parse("x=a"));
        assert_eq!(
            parse_err("x\0y"),
            "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn requires_exact_match_finds_pinned_values() {
        let selector = parse("a=1,b==2,c in (3),d in (4,5),e!=6,f");
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("c"), Some("3"));
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requires_exact_match("e"), None);
        assert_eq!(selector.requires_exact_match("f"), None);
        assert_eq!(selector.requires_exact_match("g"), None);
    }

    #[test]
    fn from_str_parses() {
        let selector: Selector = "a=b".parse().unwrap();
        assert_eq!(selector, parse("a=b"));
        assert!("a=(".parse::<Selector>().is_err());
    }

    fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: values.map(strings),
        }
    }

    #[test]
    fn label_selector_without_terms_selects_everything() {
        let empty = LabelSelector::default();
        assert_eq!(
            Selector::from_label_selector(&empty),
            Ok(Selector::everything())
        );
        let explicit = LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        };
        assert!(Selector::from_label_selector(&explicit).unwrap().is_empty());
    }

    #[test]
    fn label_selector_converts_labels_and_expressions() {
        let selector = Selector::from_label_selector(&LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "front")])),
            match_expressions: Some(vec![
                expression("env", "In", Some(&["prod", "dev"])),
                expression("zone", "NotIn", Some(&["z1"])),
                expression("canary", "DoesNotExist", None),
                expression("owner", "Exists", Some(&[])),
            ]),
        })
        .unwrap();
        assert_eq!(
            selector.to_string(),
            "app=web,!canary,env in (dev,prod),owner,tier=front,zone notin (z1)"
        );
        let good = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("env", "dev"),
            ("owner", "me"),
        ]);
        assert!(selector.matches(&good));
        let mut bad = good.clone();
        bad.insert("canary".to_owned(), "yes".to_owned());
        assert!(!selector.matches(&bad));
        let mut bad = good.clone();
        bad.insert("zone".to_owned(), "z1".to_owned());
        assert!(!selector.matches(&bad));
        let mut bad = good;
        bad.remove("owner");
        assert!(!selector.matches(&bad));
    }

    #[test]
    fn label_selector_errors() {
        let with = |expressions| LabelSelector {
            match_labels: None,
            match_expressions: Some(expressions),
        };
        assert_eq!(
            Selector::from_label_selector(&with(vec![expression("a", "Gt", Some(&["1"]))]))
                .unwrap_err()
                .to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(
            Selector::from_label_selector(&with(vec![expression("a", "In", None)]))
                .unwrap_err()
                .to_string(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set \
             can't be empty"
        );
        assert_eq!(
            Selector::from_label_selector(&with(vec![expression("a", "Exists", Some(&["x"]))]))
                .unwrap_err()
                .to_string(),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and \
             does not exist"
        );
        let bad_label = LabelSelector {
            match_labels: Some(labels(&[("app", "we b")])),
            match_expressions: None,
        };
        assert_eq!(
            Selector::from_label_selector(&bad_label)
                .unwrap_err()
                .to_string(),
            format!("values[0][app]: Invalid value: \"we b\": {LABEL_VALUE_MSG}")
        );
    }

    #[test]
    fn operator_names_match_kubernetes() {
        assert_eq!(Operator::Exists.as_str(), "exists");
        assert_eq!(Operator::DoesNotExist.as_str(), "!");
        assert_eq!(Operator::NotIn.as_str(), "notin");
        assert_eq!(Operator::GreaterThan.as_str(), "gt");
        assert_eq!(Operator::LessThan.as_str(), "lt");
    }
}
