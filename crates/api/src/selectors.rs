//! Label and field selectors as `labelSelector=` / `fieldSelector=` query strings.
//!
//! The label grammar and its error texts follow upstream's `labels.Parse`; field selectors
//! follow `fields.ParseSelector` with the per-kind field sets kube-apiserver registers, so
//! that a selector kubectl sends means exactly what it means on a cluster.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::resources::{lookup_any_kind, ResourceInfo};
use apimachinery::strategy::{SelectableField, METADATA_FIELDS};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Parse(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    /// A field selector term without an operator (upstream's wording).
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax { selector: String, term: String },
}

/// Operators of a label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelOp {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            LabelOp::Equals | LabelOp::In => value.is_some_and(|v| self.values.contains(v)),
            LabelOp::NotEquals | LabelOp::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A parsed label selector (`k=v,k!=v,k in (a,b),k notin (a),k,!k`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    /// The literal upstream quotes in its errors.
    fn literal(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::DoesNotExist => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Token::DoubleEquals, 2),
            ('=', _) => (Token::Equals, 1),
            ('!', Some('=')) => (Token::NotEquals, 2),
            ('!', _) => (Token::DoesNotExist, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            ('>', _) => (Token::Greater, 1),
            ('<', _) => (Token::Less, 1),
            _ => {
                let start = i;
                let mut j = i;
                while j < chars.len() && !chars[j].is_whitespace() && !is_special(chars[j]) {
                    j += 1;
                }
                let word: String = chars[start..j].iter().collect();
                let tok = match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                };
                (tok, j - start)
            }
        };
        out.push(tok);
        i += len;
    }
    out.push(Token::End);
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }
    /// Inside value lists `in`/`notin` are plain identifiers, as upstream's Values context.
    fn peek_value(&self) -> Token {
        match self.peek() {
            Token::In => Token::Ident("in".into()),
            Token::NotIn => Token::Ident("notin".into()),
            t => t.clone(),
        }
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }
    fn next_value(&mut self) -> Token {
        let t = self.peek_value();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }
}

fn perr(msg: String) -> SelectorError {
    SelectorError::Parse(msg)
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            tokens: lex(s),
            pos: 0,
        };
        let mut requirements = Vec::new();
        loop {
            match p.peek_value() {
                Token::Ident(_) | Token::DoesNotExist => {
                    requirements.push(parse_requirement(&mut p)?);
                    match p.next() {
                        Token::End => break,
                        Token::Comma => match p.peek_value() {
                            Token::Ident(_) | Token::DoesNotExist => {}
                            t => {
                                return Err(perr(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )))
                            }
                        },
                        t => {
                            return Err(perr(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )))
                        }
                    }
                }
                Token::End => break,
                t => {
                    return Err(perr(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// The selector of a `matchLabels` map (a Service's `spec.selector`).
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: LabelOp::Equals,
                values: vec![v.clone()],
            })
            .collect();
        LabelSelector { requirements }
    }

    /// The selector of a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`).
    pub fn from_api(sel: &Value) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v.as_str().unwrap_or("").to_string();
                requirements.push(Requirement {
                    key: k.clone(),
                    op: LabelOp::Equals,
                    values: vec![v],
                });
            }
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => LabelOp::In,
                "NotIn" => LabelOp::NotIn,
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => {
                    return Err(perr(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            };
            requirements.push(Requirement { key, op, values });
        }
        Ok(LabelSelector { requirements })
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&labels_of(obj))
    }
}

/// `metadata.labels` of a JSON object as a map (non-string values ignored).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_requirement(p: &mut Parser) -> Result<Requirement, SelectorError> {
    let mut op = None;
    if p.peek_value() == Token::DoesNotExist {
        p.next();
        op = Some(LabelOp::DoesNotExist);
    }
    let key = match p.next_value() {
        Token::Ident(k) => k,
        t => {
            return Err(perr(format!(
                "found '{}', expected: identifier",
                t.literal()
            )))
        }
    };
    if let Some(m) = apimachinery::names::qualified_name(&key).into_iter().next() {
        return Err(perr(format!("key: Invalid value: {key:?}: {m}")));
    }
    if matches!(p.peek(), Token::End | Token::Comma) {
        return Ok(Requirement {
            key,
            op: op.unwrap_or(LabelOp::Exists),
            values: Vec::new(),
        });
    }
    if op.is_some() {
        // `!k` takes no operator; upstream then fails on the following token.
        return Err(perr(format!(
            "found '{}', expected: ',' or 'end of string'",
            p.peek().literal()
        )));
    }
    let op = match p.next() {
        Token::Equals | Token::DoubleEquals => LabelOp::Equals,
        Token::NotEquals => LabelOp::NotEquals,
        Token::In => LabelOp::In,
        Token::NotIn => LabelOp::NotIn,
        Token::Greater => LabelOp::GreaterThan,
        Token::Less => LabelOp::LessThan,
        t => {
            return Err(perr(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.literal()
            )))
        }
    };
    let values = if matches!(op, LabelOp::In | LabelOp::NotIn) {
        parse_values(p)?
    } else {
        vec![parse_exact_value(p)?]
    };
    for v in &values {
        if let Some(m) = apimachinery::names::label_value(v).into_iter().next() {
            return Err(perr(format!("values[0][{key}]: Invalid value: {v:?}: {m}")));
        }
    }
    if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan)
        && values.iter().any(|v| v.parse::<i64>().is_err())
    {
        return Err(perr(format!(
            "values[0][{key}]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
            values.first().cloned().unwrap_or_default()
        )));
    }
    Ok(Requirement { key, op, values })
}

fn parse_exact_value(p: &mut Parser) -> Result<String, SelectorError> {
    if matches!(p.peek(), Token::End | Token::Comma) {
        return Ok(String::new());
    }
    match p.next_value() {
        Token::Ident(v) => Ok(v),
        t => Err(perr(format!(
            "found '{}', expected: identifier",
            t.literal()
        ))),
    }
}

fn parse_values(p: &mut Parser) -> Result<Vec<String>, SelectorError> {
    let t = p.next();
    if t != Token::Open {
        return Err(perr(format!("found '{}' expected: '('", t.literal())));
    }
    match p.peek_value() {
        Token::Ident(_) | Token::Comma => {
            let values = parse_identifier_list(p)?;
            match p.next() {
                Token::Close => Ok(values),
                t => Err(perr(format!("found '{}', expected: ')'", t.literal()))),
            }
        }
        Token::Close => {
            p.next();
            Ok(vec![String::new()])
        }
        t => Err(perr(format!(
            "found '{}', expected: ',', ')' or identifier",
            t.literal()
        ))),
    }
}

fn parse_identifier_list(p: &mut Parser) -> Result<Vec<String>, SelectorError> {
    let mut values: Vec<String> = Vec::new();
    loop {
        match p.next_value() {
            Token::Ident(v) => {
                values.push(v);
                match p.peek_value() {
                    Token::Comma => continue,
                    Token::Close => return Ok(values),
                    t => {
                        return Err(perr(format!(
                            "found '{}', expected: ',' or ')'",
                            t.literal()
                        )))
                    }
                }
            }
            Token::Comma => {
                // `(,a)` and `(a,)` select the empty value too, as upstream accepts them.
                if values.is_empty() {
                    values.push(String::new());
                }
                match p.peek_value() {
                    Token::Close => {
                        values.push(String::new());
                        return Ok(values);
                    }
                    Token::Comma => {
                        p.next();
                        values.push(String::new());
                    }
                    _ => {}
                }
            }
            t => {
                return Err(perr(format!(
                    "found '{}', expected: ',', or identifier",
                    t.literal()
                )))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Field selectors.

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: SelectableField,
    value: String,
    negate: bool,
}

/// A parsed field selector (`a=b,c!=d`, `==` too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Splits on separators that are not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    parts.push(cur);
    parts
}

/// Position of the first unescaped occurrence of `op` in `term`.
fn find_unescaped(term: &str, op: &str) -> Option<usize> {
    // By characters, not bytes: an escaped multi-byte character is skipped whole.
    let mut chars = term.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if term[i..].starts_with(op) {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses and checks each field is one `info`'s kind supports (`metadata.name` and
    /// `metadata.namespace` everywhere, the rest from the kind's strategy).
    pub fn parse_for(info: &ResourceInfo, s: &str) -> Result<Self, SelectorError> {
        Self::parse_fields(&info.selectable_fields().collect::<Vec<_>>(), s)
    }

    /// [`Self::parse_for`] by kind name; a kind that is not served selects by metadata only.
    pub fn parse(kind: &str, s: &str) -> Result<Self, SelectorError> {
        match lookup_any_kind(kind) {
            Some(info) => Self::parse_for(info, s),
            None => Self::parse_fields(&METADATA_FIELDS.iter().collect::<Vec<_>>(), s),
        }
    }

    fn parse_fields(fields: &[&SelectableField], s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for term in split_unescaped(s, ',') {
            if term.is_empty() {
                continue;
            }
            let (pos, op_len, negate) = if let Some(p) = find_unescaped(&term, "!=") {
                (p, 2, true)
            } else if let Some(p) = find_unescaped(&term, "==") {
                (p, 2, false)
            } else if let Some(p) = find_unescaped(&term, "=") {
                (p, 1, false)
            } else {
                return Err(SelectorError::FieldSyntax {
                    selector: s.to_string(),
                    term,
                });
            };
            let name = term[..pos].trim();
            let value = unescape(&term[pos + op_len..]);
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                return Err(SelectorError::UnsupportedField(name.to_string()));
            };
            terms.push(FieldTerm {
                field: **field,
                value,
                negate,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value `field` must equal, when the selector pins it (`metadata.name=x`), so a
    /// server can read one object instead of scanning.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field.name == field && !t.negate)
            .map(|t| t.value.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (t.field.value(obj) == t.value) != t.negate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A backslash before a multi-byte character once split the character and panicked.
    #[test]
    fn field_selector_escapes_never_panic() {
        for s in [
            "\\é=x",
            "metadata.name=\\é",
            "metadata.name\\é=x",
            "\\",
            "\\\\=",
            "é\\=\\ü!=\\",
            "metadata.name=a\\,b",
            "=\\ß",
            "metadata.name==\\日本",
        ] {
            let _ = FieldSelector::parse("Pod", s);
        }
        let sel = FieldSelector::parse("Pod", "metadata.name=\\é\\,x").expect("escaped value");
        assert!(sel.matches(&json!({"metadata": {"name": "é,x"}})));
    }

    #[test]
    fn label_operators() {
        let l = labels(&[("app", "web"), ("tier", "fe"), ("n", "5")]);
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app notin (db)",
            "tier",
            "!missing",
            "app=web, tier in (fe)",
            "n>3",
            "n<6",
            "app in (web),!x,tier",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).expect(s).matches(&l), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web)",
            "missing",
            "!app",
            "n>5",
            "app=web,tier=be",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).expect(s).matches(&l), "{s}");
        }
        assert!(LabelSelector::parse("a=")
            .expect("empty value")
            .matches(&labels(&[("a", "")])));
    }

    #[test]
    fn label_errors() {
        let err = |s: &str| LabelSelector::parse(s).expect_err(s).to_string();
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a,"),
            "unable to parse requirement: found '', expected: identifier after ','"
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("=a"),
            "unable to parse requirement: found '=', expected: !, identifier, or 'end of string'"
        );
        assert!(err("a/b/c=d").contains("key: Invalid value: \"a/b/c\""));
        assert!(err("a=b c").contains("found 'c'"));
    }

    #[test]
    fn from_api_selectors() {
        let s = LabelSelector::from_api(&json!({"matchLabels":{"app":"web"},
            "matchExpressions":[{"key":"tier","operator":"In","values":["fe"]}]}))
        .expect("valid");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(LabelSelector::from_map(&labels(&[("a", "b")]))
            .matches(&labels(&[("a", "b"), ("c", "d")])));
        assert!(LabelSelector::default().is_empty());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata":{"name":"web","namespace":"default"},
            "spec":{"nodeName":"n1","restartPolicy":"Always"},"status":{"phase":"Running"}});
        let sel = FieldSelector::parse(
            "Pod",
            "metadata.name=web,spec.nodeName==n1,status.phase!=Failed",
        )
        .expect("ok");
        assert!(sel.matches(&pod));
        assert_eq!(sel.exact("metadata.name"), Some("web"));
        assert!(!FieldSelector::parse("Pod", "spec.nodeName=n2")
            .expect("ok")
            .matches(&pod));
        assert!(FieldSelector::parse("Pod", "spec.hostNetwork=false")
            .expect("ok")
            .matches(&pod));
        assert!(FieldSelector::parse("Pod", "").expect("ok").is_empty());
        assert_eq!(
            FieldSelector::parse("ConfigMap", "spec.nodeName=x"),
            Err(SelectorError::UnsupportedField("spec.nodeName".into()))
        );
        assert_eq!(
            FieldSelector::parse("Pod", "nonsense")
                .expect_err("syntax")
                .to_string(),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        let ev = json!({"involvedObject":{"name":"web","uid":"u1"},"source":{"component":"kubelet"},"type":"Normal"});
        let sel = FieldSelector::parse(
            "Event",
            "involvedObject.name=web,involvedObject.uid=u1,source=kubelet",
        )
        .expect("ok");
        assert!(sel.matches(&ev));
        let esc = FieldSelector::parse("Pod", r"metadata.name=a\,b").expect("escaped");
        assert!(esc.matches(&json!({"metadata":{"name":"a,b"}})));
    }
}
