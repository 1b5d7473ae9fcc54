//! Label selectors, parsed and matched as Kubernetes does.
//!
//! A selector is a conjunction of requirements, written comma-separated:
//!
//! ```text
//! a=b   a==b   a!=b   a in (x,y)   a notin (x)   a   !a
//! ```
//!
//! The empty string selects everything. `a!=b` and `a notin (..)` also select objects that
//! do not have label `a` at all, as in Kubernetes. Keys must be qualified names and values
//! label values (see [`crate::validation`]).
//!
//! Differences from Kubernetes, both deliberate: the numeric operators `a>1` / `a<1` are
//! rejected (nothing in skiff uses them), and `in` / `notin` are accepted as label keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::{is_qualified_name, is_valid_label_value};

/// Why a selector or requirement is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The text of one requirement does not follow the grammar.
    #[error("unable to parse requirement {requirement:?}: {reason}")]
    Parse { requirement: String, reason: String },
    /// A key is not a qualified name.
    #[error("invalid label key {key:?}: {}", reasons.join("; "))]
    InvalidKey { key: String, reasons: Vec<String> },
    /// A value is not a label value.
    #[error("invalid label value {value:?} for key {key:?}: {}", reasons.join("; "))]
    InvalidValue {
        key: String,
        value: String,
        reasons: Vec<String>,
    },
    /// The number of values does not suit the operator.
    #[error("invalid requirement on key {key:?}: {reason}")]
    InvalidValues { key: String, reason: String },
    /// A `matchExpressions` operator is not one Kubernetes defines.
    #[error(
        "{operator:?} is not a valid label selector operator for key {key:?}: \
         must be In, NotIn, Exists or DoesNotExist"
    )]
    InvalidOperator { key: String, operator: String },
}

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `a=b` or `a==b`: the label exists and equals the value.
    Equals,
    /// `a!=b`: the label is absent or differs from the value.
    NotEquals,
    /// `a in (x,y)`: the label exists and is one of the values.
    In,
    /// `a notin (x,y)`: the label is absent or none of the values.
    NotIn,
    /// `a`: the label exists, whatever its value.
    Exists,
    /// `!a`: the label is absent.
    DoesNotExist,
}

impl Operator {
    /// The operator as it appears in a selector string (empty for the key-only forms).
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "",
            Operator::DoesNotExist => "!",
        }
    }
}

/// One term of a selector: a key, an operator and its values (sorted, without duplicates).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// A validated requirement: the key must be a qualified name, every value a label
    /// value, `Equals`/`NotEquals` take exactly one value, `In`/`NotIn` at least one and
    /// `Exists`/`DoesNotExist` none.
    pub fn new<I, V>(
        key: impl Into<String>,
        operator: Operator,
        values: I,
    ) -> Result<Requirement, SelectorError>
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let key = key.into();
        let reasons = is_qualified_name(&key);
        if !reasons.is_empty() {
            return Err(SelectorError::InvalidKey { key, reasons });
        }
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        values.sort();
        values.dedup();
        let reason = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(SelectorError::InvalidValues {
                key,
                reason: reason.to_string(),
            });
        }
        for value in &values {
            let reasons = is_valid_label_value(value);
            if !reasons.is_empty() {
                return Err(SelectorError::InvalidValue {
                    key,
                    value: value.clone(),
                    reasons,
                });
            }
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In | Operator::NotIn => {
                // A lone empty value would print as `()`, which reads as "no values";
                // `(,)` parses back to exactly the empty value.
                let list = if self.values.len() == 1 && first.is_empty() {
                    ",".to_string()
                } else {
                    self.values.join(",")
                };
                write!(f, "{} {} ({list})", self.key, self.operator.as_str())
            }
        }
    }
}

/// A conjunction of requirements; the empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that selects every object.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Whether this selector has no requirements (and so selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Adds a requirement, keeping the requirements sorted by key.
    pub fn with(mut self, requirement: Requirement) -> Selector {
        self.requirements.push(requirement);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The selector requiring every `key=value` of a map, as a Service's or a
    /// ReplicationController's `selector` means; an empty map selects everything.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Selector, SelectorError> {
        let requirements = map
            .iter()
            .map(|(k, v)| Requirement::new(k.as_str(), Operator::Equals, [v.as_str()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector { requirements })
    }

    /// Converts a `metav1.LabelSelector`: `matchLabels` become `Equals` requirements,
    /// `matchExpressions` use `In`, `NotIn`, `Exists` or `DoesNotExist`. An empty selector
    /// (`{}`) selects everything; whether an absent one selects nothing or everything
    /// depends on the field, so callers decide that before calling.
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key.as_str(),
                Operator::Equals,
                [value.as_str()],
            )?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidOperator {
                        key: expr.key.clone(),
                        operator: other.to_string(),
                    })
                }
            };
            // Kubernetes' own wording for the two shape errors of an expression.
            let reason = match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    Some("values must be specified when `operator` is 'In' or 'NotIn'")
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => Some(
                    "values may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(SelectorError::InvalidValues {
                    key: expr.key.clone(),
                    reason: reason.to_string(),
                });
            }
            requirements.push(Requirement::new(expr.key.as_str(), operator, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Parses the selector syntax described in the module documentation.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser {
            input: s,
            tokens: &tokens,
            next: 0,
        };
        let mut requirements = Vec::new();
        if tokens.is_empty() {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.peek() {
                None => break,
                Some(Token {
                    kind: TokenKind::Comma,
                    ..
                }) => {
                    parser.next += 1;
                }
                Some(token) => {
                    let token = *token;
                    return Err(parser.error(
                        parser.requirement_start(),
                        format!(
                            "unexpected {} at position {}, expected ',' or end of string",
                            token.describe(s),
                            token.pos
                        ),
                    ));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }
}

/// The canonical form: requirements sorted by key, joined by `,`; it parses back to an
/// equal selector. The empty selector prints as the empty string.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Word,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Open,
    Close,
    Comma,
    Greater,
    Less,
}

/// A token and where it sits in the input (byte offsets).
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: TokenKind,
    pos: usize,
    end: usize,
}

impl Token {
    fn text<'a>(&self, input: &'a str) -> &'a str {
        input.get(self.pos..self.end).unwrap_or("")
    }

    fn describe(&self, input: &str) -> String {
        match self.kind {
            TokenKind::Word => format!("{:?}", self.text(input)),
            _ => format!("'{}'", self.text(input)),
        }
    }
}

/// Characters that end a word: whitespace and the operator symbols.
fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let followed_by_eq = chars.peek().is_some_and(|(_, n)| *n == '=');
        let (kind, len) = match c {
            '!' if followed_by_eq => (TokenKind::NotEquals, 2),
            '!' => (TokenKind::Bang, 1),
            '=' if followed_by_eq => (TokenKind::DoubleEquals, 2),
            '=' => (TokenKind::Equals, 1),
            '(' => (TokenKind::Open, 1),
            ')' => (TokenKind::Close, 1),
            ',' => (TokenKind::Comma, 1),
            '>' => (TokenKind::Greater, 1),
            '<' => (TokenKind::Less, 1),
            _ => {
                let mut end = pos + c.len_utf8();
                while let Some((i, n)) = chars.peek().copied() {
                    if is_special(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                tokens.push(Token {
                    kind: TokenKind::Word,
                    pos,
                    end,
                });
                continue;
            }
        };
        if len == 2 {
            chars.next();
        }
        tokens.push(Token {
            kind,
            pos,
            end: pos + len,
        });
    }
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: &'a [Token],
    next: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    /// Byte offset where the requirement being parsed starts.
    fn requirement_start(&self) -> usize {
        // Walk back to the token after the previous top-level comma.
        let mut depth = 0i32;
        let mut i = self.next.min(self.tokens.len());
        while i > 0 {
            let t = &self.tokens[i - 1];
            match t.kind {
                TokenKind::Close => depth += 1,
                TokenKind::Open => depth -= 1,
                TokenKind::Comma if depth <= 0 => return t.end,
                _ => {}
            }
            i -= 1;
        }
        0
    }

    /// An error naming the requirement that starts at `start`: its text runs to the next
    /// top-level comma or the end of the input.
    fn error(&self, start: usize, reason: String) -> SelectorError {
        let mut depth = 0i32;
        let mut end = self.input.len();
        for t in self.tokens.iter().filter(|t| t.pos >= start) {
            match t.kind {
                TokenKind::Open => depth += 1,
                TokenKind::Close => depth -= 1,
                TokenKind::Comma if depth <= 0 => {
                    end = t.pos;
                    break;
                }
                _ => {}
            }
        }
        let requirement = self.input.get(start..end).unwrap_or("").trim().to_string();
        SelectorError::Parse {
            requirement,
            reason,
        }
    }

    fn unexpected(&self, start: usize, expected: &str) -> SelectorError {
        let reason = match self.peek() {
            Some(t) => format!(
                "unexpected {} at position {}, expected {expected}",
                t.describe(self.input),
                t.pos
            ),
            None => format!("unexpected end of string, expected {expected}"),
        };
        self.error(start, reason)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let start = self.requirement_start();
        let Some(first) = self.peek().copied() else {
            return Err(self.error(start, "empty requirement".to_string()));
        };
        let (key, operator) = match first.kind {
            TokenKind::Bang => {
                self.next += 1;
                match self.peek().copied() {
                    Some(t) if t.kind == TokenKind::Word => {
                        self.next += 1;
                        (t.text(self.input), Some(Operator::DoesNotExist))
                    }
                    _ => return Err(self.unexpected(start, "a label key after '!'")),
                }
            }
            TokenKind::Word => {
                self.next += 1;
                (first.text(self.input), None)
            }
            TokenKind::Comma => {
                return Err(self.error(
                    start,
                    format!("empty requirement before ',' at position {}", first.pos),
                ))
            }
            _ => return Err(self.unexpected(start, "a label key or '!'")),
        };
        let (operator, values) = match operator {
            Some(op) => (op, Vec::new()),
            None => self.operator_and_values(start)?,
        };
        Requirement::new(key, operator, values).map_err(|e| self.error(start, e.to_string()))
    }

    fn operator_and_values(
        &mut self,
        start: usize,
    ) -> Result<(Operator, Vec<String>), SelectorError> {
        let Some(token) = self.peek().copied() else {
            return Ok((Operator::Exists, Vec::new()));
        };
        let operator = match token.kind {
            TokenKind::Comma => return Ok((Operator::Exists, Vec::new())),
            TokenKind::Equals | TokenKind::DoubleEquals => Operator::Equals,
            TokenKind::NotEquals => Operator::NotEquals,
            TokenKind::Word if token.text(self.input) == "in" => Operator::In,
            TokenKind::Word if token.text(self.input) == "notin" => Operator::NotIn,
            TokenKind::Greater | TokenKind::Less => {
                return Err(self.error(
                    start,
                    format!(
                        "operator '{}' at position {} is not supported",
                        token.text(self.input),
                        token.pos
                    ),
                ))
            }
            _ => return Err(self.unexpected(start, "an operator (=, ==, !=, in, notin) or ','")),
        };
        self.next += 1;
        if matches!(operator, Operator::Equals | Operator::NotEquals) {
            // `a=` means "label a with the empty value", as in Kubernetes.
            return match self.peek().copied() {
                None => Ok((operator, vec![String::new()])),
                Some(t) if t.kind == TokenKind::Comma => Ok((operator, vec![String::new()])),
                Some(t) if t.kind == TokenKind::Word => {
                    self.next += 1;
                    Ok((operator, vec![t.text(self.input).to_string()]))
                }
                Some(_) => Err(self.unexpected(start, "a value")),
            };
        }
        match self.peek() {
            Some(t) if t.kind == TokenKind::Open => self.next += 1,
            _ => return Err(self.unexpected(start, &format!("'(' after '{}'", operator.as_str()))),
        }
        // Values separated by commas; an empty slot (`(a,,b)`, `(a,)`) is the empty value.
        let mut values = Vec::new();
        let mut expecting_value = true;
        loop {
            let Some(t) = self.peek().copied() else {
                return Err(self.error(start, "missing closing ')'".to_string()));
            };
            match t.kind {
                TokenKind::Word if expecting_value => {
                    values.push(t.text(self.input).to_string());
                    expecting_value = false;
                }
                TokenKind::Comma => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    expecting_value = true;
                }
                TokenKind::Close => {
                    if expecting_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    self.next += 1;
                    return Ok((operator, values));
                }
                _ => return Err(self.unexpected(start, "a value, ',' or ')'")),
            }
            self.next += 1;
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
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(s: &str) -> Selector {
        match Selector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selects_everything() {
        for s in ["", "  ", "\t\n"] {
            let sel = parse(s);
            assert!(sel.is_empty());
            assert!(sel.matches(&labels(&[])));
            assert!(sel.matches(&labels(&[("a", "b")])));
        }
        assert_eq!(Selector::everything(), parse(""));
        assert_eq!(Selector::everything().to_string(), "");
    }

    #[test]
    fn parses_every_operator() {
        let sel = parse("a=b,c==d,e!=f,g in (x,y),h notin (z),i,!j");
        let ops: Vec<_> = sel.requirements().iter().map(|r| r.operator).collect();
        assert_eq!(
            ops,
            [
                Operator::Equals,
                Operator::Equals,
                Operator::NotEquals,
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist
            ]
        );
        assert_eq!(sel.requirements()[3].values, ["x", "y"]);
        assert_eq!(sel.to_string(), "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j");
    }

    #[test]
    fn tolerates_whitespace() {
        let a = parse("  app = web ,tier in ( front , back ) , ! legacy ,env");
        let b = parse("app=web,tier in (back,front),!legacy,env");
        assert_eq!(a, b);
        assert_eq!(parse("a in(x)"), parse("a in (x)"));
    }

    #[test]
    fn sorts_and_dedups() {
        let sel = parse("z=1,a in (c,b,c,a)");
        assert_eq!(sel.requirements()[0].key, "a");
        assert_eq!(sel.requirements()[0].values, ["a", "b", "c"]);
        assert_eq!(sel.to_string(), "a in (a,b,c),z=1");
    }

    #[test]
    fn empty_values() {
        let sel = parse("a=");
        assert_eq!(sel.requirements()[0].values, [""]);
        assert!(sel.matches(&labels(&[("a", "")])));
        assert!(!sel.matches(&labels(&[])));
        assert_eq!(parse("a=,b=c").requirements().len(), 2);
        assert_eq!(parse("a in (x,)").requirements()[0].values, ["", "x"]);
        assert_eq!(parse("a in (,x)").requirements()[0].values, ["", "x"]);
        assert_eq!(
            parse("a in (x,,y)").requirements()[0].values,
            ["", "x", "y"]
        );
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(parse("app=web").matches(&l));
        assert!(!parse("app=db").matches(&l));
        assert!(parse("app!=db").matches(&l));
        assert!(!parse("app!=web").matches(&l));
        assert!(parse("missing!=x").matches(&l));
        assert!(parse("tier in (front,back)").matches(&l));
        assert!(!parse("missing in (x)").matches(&l));
        assert!(parse("missing notin (x)").matches(&l));
        assert!(!parse("tier notin (front)").matches(&l));
        assert!(parse("app").matches(&l));
        assert!(!parse("missing").matches(&l));
        assert!(parse("!missing").matches(&l));
        assert!(!parse("!app").matches(&l));
        assert!(parse("app=web,tier=front").matches(&l));
        assert!(!parse("app=web,tier=back").matches(&l));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a=b",
            "a!=b",
            "a in (x,y)",
            "a notin (x)",
            "a",
            "!a",
            "a=",
            "a in (,x)",
            "a in (,)",
            "example.com/app=web,!k8s.io/x,x notin (1,2)",
            "in=x",
        ] {
            let sel = parse(s);
            let again = parse(&sel.to_string());
            assert_eq!(sel, again, "{s:?} -> {sel}");
        }
        assert_eq!(parse("a in (,)").requirements()[0].values, [""]);
        assert_eq!(parse("a==b").to_string(), "a=b");
    }

    #[test]
    fn reports_unclosed_paren() {
        assert_eq!(
            parse_err("a in (x"),
            "unable to parse requirement \"a in (x\": missing closing ')'"
        );
        assert_eq!(
            parse_err("b=c, a in (x, y"),
            "unable to parse requirement \"a in (x, y\": missing closing ')'"
        );
    }

    #[test]
    fn rejects_malformed_selectors() {
        for (s, needle) in [
            ("a,", "empty requirement"),
            (",a", "empty requirement before ','"),
            ("a,,b", "empty requirement before ','"),
            ("a b", "unexpected \"b\" at position 2"),
            ("a=b c", "expected ',' or end of string"),
            ("a in x", "'(' after 'in'"),
            ("a notin", "'(' after 'notin'"),
            ("a in ()", "values set can't be empty"),
            ("a in (x) y", "unexpected \"y\""),
            ("a in (x y)", "expected a value, ',' or ')'"),
            ("a in ((x))", "unexpected '('"),
            ("!", "a label key after '!'"),
            ("!a=b", "unexpected '='"),
            ("=b", "expected a label key or '!'"),
            ("a==", ""),
            ("a=(b)", "expected a value"),
            ("a>1", "operator '>' at position 1 is not supported"),
            ("a<1", "not supported"),
            ("a!", "expected an operator"),
            (")", "expected a label key"),
            ("a=b=c", "unexpected '='"),
        ] {
            let err = match Selector::parse(s) {
                Ok(sel) if needle.is_empty() => {
                    // `a==` is `a` equal to the empty value.
                    assert_eq!(sel.requirements()[0].values, [""]);
                    continue;
                }
                Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(needle), "{s:?}: {err}");
            assert!(
                err.starts_with("unable to parse requirement"),
                "{s:?}: {err}"
            );
        }
    }

    #[test]
    fn validates_keys_and_values() {
        let err = parse_err("Bad_Key_=x");
        assert!(err.contains("invalid label key \"Bad_Key_\""), "{err}");
        let err = parse_err("a=-bad");
        assert!(err.contains("invalid label value \"-bad\""), "{err}");
        let err = parse_err(&format!("a={}", "x".repeat(64)));
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        let err = parse_err("/a=b");
        assert!(err.contains("prefix part must be non-empty"), "{err}");
        assert!(Selector::parse("example.com/a=b").is_ok());
        assert!(Selector::parse("a=b.c-d_e").is_ok());
        assert!(Selector::parse("a/b/c").is_err());
        assert!(Selector::parse("a=ü").is_err());
    }

    #[test]
    fn requirement_new_checks_value_counts() {
        assert!(Requirement::new("a", Operator::In, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::Equals, ["x", "y"]).is_err());
        assert!(Requirement::new("a", Operator::Exists, ["x"]).is_err());
        let r = Requirement::new("a", Operator::NotIn, ["y", "x", "y"]);
        assert_eq!(
            r.map(|r| r.values),
            Ok(vec!["x".to_string(), "y".to_string()])
        );
    }

    #[test]
    fn converts_label_selectors() {
        let empty = LabelSelector::default();
        let sel = Selector::from_label_selector(&empty);
        assert_eq!(sel, Ok(Selector::everything()));

        let ls = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["front".into(), "back".into()]),
                },
                LabelSelectorRequirement {
                    key: "legacy".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Exists".into(),
                    values: Some(vec![]),
                },
                LabelSelectorRequirement {
                    key: "zone".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["b".into()]),
                },
            ]),
        };
        let sel = match Selector::from_label_selector(&ls) {
            Ok(sel) => sel,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            sel.to_string(),
            "app=web,env,!legacy,tier in (back,front),zone notin (b)"
        );
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("env", "x")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "front")])));
    }

    #[test]
    fn rejects_bad_label_selectors() {
        let expr = |op: &str, values: Option<Vec<String>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values,
            }]),
        };
        let err = Selector::from_label_selector(&expr("In", None)).unwrap_err();
        assert!(
            err.to_string().contains("values must be specified"),
            "{err}"
        );
        let err = Selector::from_label_selector(&expr("NotIn", Some(vec![]))).unwrap_err();
        assert!(
            err.to_string().contains("values must be specified"),
            "{err}"
        );
        let err =
            Selector::from_label_selector(&expr("Exists", Some(vec!["x".into()]))).unwrap_err();
        assert!(err.to_string().contains("may not be specified"), "{err}");
        let err = Selector::from_label_selector(&expr("Equals", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Equals\" is not a valid label selector operator for key \"k\": \
             must be In, NotIn, Exists or DoesNotExist"
        );
        let bad_value = LabelSelector {
            match_labels: Some(labels(&[("app", "a b")])),
            match_expressions: None,
        };
        assert!(matches!(
            Selector::from_label_selector(&bad_value),
            Err(SelectorError::InvalidValue { .. })
        ));
    }

    #[test]
    fn from_map_and_with() {
        let sel = Selector::from_map(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(sel.map(|s| s.to_string()), Ok("a=1,b=2".to_string()));
        assert!(Selector::from_map(&labels(&[("a b", "1")])).is_err());
        let sel = Selector::everything()
            .with(Requirement {
                key: "z".into(),
                operator: Operator::Exists,
                values: vec![],
            })
            .with(Requirement {
                key: "a".into(),
                operator: Operator::DoesNotExist,
                values: vec![],
            });
        assert_eq!(sel.to_string(), "!a,z");
        assert_eq!("a=b".parse::<Selector>(), Ok(parse("a=b")));
    }
}
