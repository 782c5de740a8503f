//! Simple expressions over JSON events, for the declarative `where` and `select` steps.
//!
//! Grammar (lowest precedence first): `or` / `||`, `and` / `&&`, `not` / `!`,
//! comparisons (`== != < <= > >=`), `+ -`, `* / %`, unary `-`, and atoms: numbers,
//! `"strings"` or `'strings'`, `true`, `false`, `null`, field paths (`a.b.c`, or
//! `` `odd name` `` in backquotes) and parentheses. Missing fields are `null`;
//! arithmetic on `null` is `null`; comparisons with `null` are false except `== null`.

use serde_json::{Number, Value};

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// A field path into the event.
    Field(Vec<String>),
    /// A unary operation.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operation.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// Boolean negation.
    Not,
    /// Arithmetic negation.
    Neg,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+` (numbers, or string concatenation)
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// An expression that does not parse, with the byte offset where it went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expression {text:?}: {message} at column {}", offset + 1)]
pub struct ExprError {
    /// The whole expression.
    pub text: String,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(Number),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ExprError> {
    let err = |offset, message: &str| ExprError {
        text: text.to_owned(),
        offset,
        message: message.to_owned(),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                out.push((start, Token::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Token::RParen));
                i += 1;
            }
            b'"' | b'\'' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match bytes.get(i) {
                        None => return Err(err(start, "unterminated string")),
                        Some(&b) if b == quote => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let escaped =
                                bytes.get(i + 1).ok_or_else(|| err(i, "dangling escape"))?;
                            s.push(match escaped {
                                b'n' => '\n',
                                b't' => '\t',
                                other => *other as char,
                            });
                            i += 2;
                        }
                        Some(_) => {
                            let ch = text[i..]
                                .chars()
                                .next()
                                .ok_or_else(|| err(i, "bad UTF-8"))?;
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push((start, Token::Str(s)));
            }
            b'`' => {
                let end = text[i + 1..]
                    .find('`')
                    .ok_or_else(|| err(start, "unterminated backquoted name"))?;
                out.push((start, Token::Ident(text[i + 1..i + 1 + end].to_owned())));
                i += end + 2;
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let n: Number = serde_json::from_str(&text[start..i])
                    .map_err(|_| err(start, "malformed number"))?;
                out.push((start, Token::Num(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                out.push((
                    start,
                    match word {
                        "and" => Token::Op("&&"),
                        "or" => Token::Op("||"),
                        "not" => Token::Op("!"),
                        _ => Token::Ident(word.to_owned()),
                    },
                ));
            }
            _ => {
                const OPS: [&str; 16] = [
                    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!",
                    ".", "=",
                ];
                let op = OPS
                    .iter()
                    .find(|op| text[i..].starts_with(**op))
                    .ok_or_else(|| err(start, "unexpected character"))?;
                if *op == "=" {
                    return Err(err(start, "`=` is not an operator; compare with `==`"));
                }
                out.push((start, Token::Op(op)));
                i += op.len();
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ExprError {
        ExprError {
            text: self.text.to_owned(),
            offset: self.tokens.get(self.pos).map_or(self.text.len(), |t| t.0),
            message: message.to_owned(),
        }
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some((_, Token::Op(op))) => Some(op),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[(&str, BinaryOp)],
        next: fn(&mut Self) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op() {
            let Some((_, bop)) = ops.iter().find(|(o, _)| *o == op) else {
                break;
            };
            self.pos += 1;
            let right = next(self)?;
            left = Expr::Binary(*bop, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("||", BinaryOp::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("&&", BinaryOp::And)], Self::not)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.peek_op() == Some("!") {
            self.pos += 1;
            return Ok(Expr::Unary(UnaryOp::Not, Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        self.binary(
            &[
                ("==", BinaryOp::Eq),
                ("!=", BinaryOp::Ne),
                ("<=", BinaryOp::Le),
                (">=", BinaryOp::Ge),
                ("<", BinaryOp::Lt),
                (">", BinaryOp::Gt),
            ],
            Self::sum,
        )
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[("+", BinaryOp::Add), ("-", BinaryOp::Sub)], Self::product)
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        self.binary(
            &[
                ("*", BinaryOp::Mul),
                ("/", BinaryOp::Div),
                ("%", BinaryOp::Rem),
            ],
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek_op() == Some("-") {
            self.pos += 1;
            return Ok(Expr::Unary(UnaryOp::Neg, Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let Some((_, token)) = self.tokens.get(self.pos).cloned() else {
            return Err(self.err("expected a value"));
        };
        self.pos += 1;
        Ok(match token {
            Token::Num(n) => Expr::Literal(Value::Number(n)),
            Token::Str(s) => Expr::Literal(Value::String(s)),
            Token::Ident(word) => match word.as_str() {
                "true" => Expr::Literal(Value::Bool(true)),
                "false" => Expr::Literal(Value::Bool(false)),
                "null" => Expr::Literal(Value::Null),
                _ => {
                    let mut path = vec![word];
                    while self.peek_op() == Some(".") {
                        self.pos += 1;
                        match self.tokens.get(self.pos) {
                            Some((_, Token::Ident(next))) => path.push(next.clone()),
                            _ => return Err(self.err("expected a field name after `.`")),
                        }
                        self.pos += 1;
                    }
                    Expr::Field(path)
                }
            },
            Token::LParen => {
                let inner = self.or()?;
                if self.tokens.get(self.pos).map(|t| &t.1) != Some(&Token::RParen) {
                    return Err(self.err("expected `)`"));
                }
                self.pos += 1;
                inner
            }
            Token::RParen | Token::Op(_) => {
                self.pos -= 1;
                return Err(self.err("expected a value"));
            }
        })
    }
}

impl Expr {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let mut parser = Parser {
            text,
            tokens: tokenize(text)?,
            pos: 0,
        };
        let expr = parser.or()?;
        if parser.pos < parser.tokens.len() {
            return Err(parser.err("unexpected text after the expression"));
        }
        Ok(expr)
    }

    /// Evaluates against one event.
    pub fn eval(&self, event: &Value) -> Value {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Field(path) => path
                .iter()
                .try_fold(event, |v, name| v.get(name))
                .cloned()
                .unwrap_or(Value::Null),
            Expr::Unary(UnaryOp::Not, e) => Value::Bool(!truthy(&e.eval(event))),
            Expr::Unary(UnaryOp::Neg, e) => match e.eval(event) {
                Value::Number(n) => number(
                    n.as_f64().map(|f| -f),
                    n.as_i64().and_then(i64::checked_neg),
                ),
                _ => Value::Null,
            },
            Expr::Binary(BinaryOp::And, a, b) => {
                Value::Bool(truthy(&a.eval(event)) && truthy(&b.eval(event)))
            }
            Expr::Binary(BinaryOp::Or, a, b) => {
                Value::Bool(truthy(&a.eval(event)) || truthy(&b.eval(event)))
            }
            Expr::Binary(op, a, b) => binary(*op, a.eval(event), b.eval(event)),
        }
    }

    /// Evaluates as a condition: true only for `true`, non-zero numbers and non-empty strings.
    pub fn test(&self, event: &Value) -> bool {
        truthy(&self.eval(event))
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A number value: the integer when there is one, else the float (null for NaN/inf).
fn number(float: Option<f64>, int: Option<i64>) -> Value {
    match (int, float) {
        (Some(i), _) => Value::from(i),
        (None, Some(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        (None, None) => Value::Null,
    }
}

fn binary(op: BinaryOp, a: Value, b: Value) -> Value {
    use std::cmp::Ordering;
    let order = || -> Option<Ordering> {
        match (&a, &b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            },
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    match op {
        BinaryOp::Eq => Value::Bool(a == b || order() == Some(Ordering::Equal)),
        BinaryOp::Ne => Value::Bool(!(a == b || order() == Some(Ordering::Equal))),
        BinaryOp::Lt => Value::Bool(order() == Some(Ordering::Less)),
        BinaryOp::Le => Value::Bool(matches!(order(), Some(Ordering::Less | Ordering::Equal))),
        BinaryOp::Gt => Value::Bool(order() == Some(Ordering::Greater)),
        BinaryOp::Ge => Value::Bool(matches!(order(), Some(Ordering::Greater | Ordering::Equal))),
        BinaryOp::Add if a.is_string() || b.is_string() => {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            Value::String(text(&a) + &text(&b))
        }
        _ => {
            let (Value::Number(x), Value::Number(y)) = (&a, &b) else {
                return Value::Null;
            };
            let ints = x.as_i64().zip(y.as_i64());
            let (fx, fy) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                BinaryOp::Add => number(Some(fx + fy), ints.and_then(|(x, y)| x.checked_add(y))),
                BinaryOp::Sub => number(Some(fx - fy), ints.and_then(|(x, y)| x.checked_sub(y))),
                BinaryOp::Mul => number(Some(fx * fy), ints.and_then(|(x, y)| x.checked_mul(y))),
                BinaryOp::Div => number(Some(fx / fy), None),
                BinaryOp::Rem => number(Some(fx % fy), ints.and_then(|(x, y)| x.checked_rem(y))),
                _ => Value::Null,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, event: Value) -> Value {
        Expr::parse(text).unwrap().eval(&event)
    }

    #[test]
    fn precedence_and_arithmetic() {
        assert_eq!(eval("1 + 2 * 3", json!({})), json!(7));
        assert_eq!(eval("(1 + 2) * 3", json!({})), json!(9));
        assert_eq!(eval("-a + 1", json!({"a": 5})), json!(-4));
        assert_eq!(eval("7 / 2", json!({})), json!(3.5));
        assert_eq!(eval("7 % 4", json!({})), json!(3));
        assert_eq!(eval("amount * 0.5", json!({"amount": 3})), json!(1.5));
    }

    #[test]
    fn comparisons_fields_and_logic() {
        let e = json!({"amount": 120.5, "currency": "USD", "user": {"tier": "gold"}});
        assert_eq!(
            eval("amount > 100 and currency == 'USD'", e.clone()),
            json!(true)
        );
        assert_eq!(
            eval("user.tier != \"gold\" || not (amount >= 200)", e.clone()),
            json!(true)
        );
        assert_eq!(eval("missing == null", e.clone()), json!(true));
        assert_eq!(eval("missing > 1", e.clone()), json!(false));
        assert_eq!(eval("1 == 1.0", e.clone()), json!(true));
        assert_eq!(eval("currency + '-' + user.tier", e), json!("USD-gold"));
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = Expr::parse("amount = 3").unwrap_err();
        assert_eq!(err.offset, 7);
        assert!(err.to_string().contains("compare with `==`"), "{err}");
        assert!(Expr::parse("(a > 1").unwrap_err().message.contains("`)`"));
        assert!(Expr::parse("a >").is_err());
        assert!(Expr::parse("a b").is_err());
        assert!(Expr::parse("'open").is_err());
    }
}
