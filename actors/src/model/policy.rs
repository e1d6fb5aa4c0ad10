//! Row policies: the manifest's `policies` entries, parsed once at start, and the single place
//! where every read and write is checked against them. Room rules (the manifest's `rooms.rules`)
//! use the same expressions, with `room.name` in place of the row ([`RoomRules`]).
//!
//! An expression (`auth.userId == data.ownerId && !auth.guest`) is compiled for one caller into
//! a [`Cond`]: either a constant or a [`Filter`] over the row's fields. The same `Cond` becomes
//! a SQL WHERE clause for lists (so paging stays right) and is evaluated in memory for single
//! rows, writes and live events, so both paths always agree.
//!
//! Semantics follow SQL: a comparison where either side is a null *value* is false (an
//! anonymous caller's `auth.userId` never equals a row's empty `ownerId`), while comparing with
//! the *literal* `null` tests for null.

use std::collections::HashMap;

use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use serde_json::Value;

use super::change::{Change, ChangeKind};
use crate::error::{PlazaError, Result};
use super::manifest::{AppManifest, EntityDef, FieldType};
use super::query::{CmpOp, Filter};
use super::rows::{json_to_sql, Row};

/// Longest policy expression accepted; they are parsed once, but a limit keeps errors readable.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// Who is asking. Built by the server from the admin token or a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuthContext {
    pub user_id: Option<String>,
    pub guest: bool,
    pub admin: bool,
    /// The caller's account has a confirmed email address (`auth.verified`).
    pub verified: bool,
    /// An API key scoped to reads: every write is refused, whatever the policies say.
    #[serde(skip)]
    pub read_only: bool,
    /// The credential is an API key, not a sign-in session (it cannot manage the account).
    #[serde(skip)]
    pub api_key: bool,
    /// The session this caller presented (its public selector), so streams opened with it can
    /// be closed when it ends. Not visible to policies.
    #[serde(skip)]
    pub session: Option<std::sync::Arc<str>>,
}

impl AuthContext {
    pub fn admin() -> Self {
        AuthContext { admin: true, ..Default::default() }
    }

    pub fn user(id: impl Into<String>) -> Self {
        AuthContext { user_id: Some(id.into()), ..Default::default() }
    }
}

/// What an entity falls back to when it has no rule for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    List(Vec<Value>),
    Auth(&'static str),
    /// `room.name`, in room rules.
    Room(&'static str),
    Data(String),
    Old(String),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// A rule compiled for one caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Const(bool),
    Filter(Filter),
}

impl Cond {
    pub fn allows(&self, row: &Row) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::Filter(f) => f.matches(row),
        }
    }

    /// The condition as a filter to AND into a query (`None`: nothing to add).
    pub fn as_filter(&self) -> Option<Filter> {
        match self {
            Cond::Const(true) => None,
            Cond::Const(false) => Some(Filter::Any(Vec::new())),
            Cond::Filter(f) => Some(f.clone()),
        }
    }

    fn and(a: Cond, b: Cond) -> Cond {
        match (a, b) {
            (Cond::Const(false), _) | (_, Cond::Const(false)) => Cond::Const(false),
            (Cond::Const(true), x) | (x, Cond::Const(true)) => x,
            (Cond::Filter(x), Cond::Filter(y)) => Cond::Filter(Filter::All(vec![x, y])),
        }
    }

    fn or(a: Cond, b: Cond) -> Cond {
        match (a, b) {
            (Cond::Const(true), _) | (_, Cond::Const(true)) => Cond::Const(true),
            (Cond::Const(false), x) | (x, Cond::Const(false)) => x,
            (Cond::Filter(x), Cond::Filter(y)) => Cond::Filter(Filter::Any(vec![x, y])),
        }
    }

    fn not(a: Cond) -> Cond {
        match a {
            Cond::Const(b) => Cond::Const(!b),
            Cond::Filter(f) => Cond::Filter(Filter::Not(Box::new(f))),
        }
    }
}

/// Every entity's parsed rules.
#[derive(Debug, Default)]
pub struct Policies {
    rules: HashMap<(String, Action), Expr>,
    default: Option<DefaultPolicy>,
}

impl Policies {
    /// Parses every rule of the manifest; errors name the entity, the rule, line and column.
    pub fn from_manifest(manifest: &AppManifest, default: DefaultPolicy) -> Result<Policies> {
        let mut rules = HashMap::new();
        let mut problems = Vec::new();
        for p in &manifest.policies {
            let Some(entity) = manifest.entity(&p.entity) else {
                problems.push(format!("policy for unknown entity '{}'", p.entity));
                continue;
            };
            for (name, source) in &p.rules {
                let actions: &[Action] = match name.as_str() {
                    "read" => &[Action::Read],
                    "write" => &[Action::Insert, Action::Update, Action::Delete],
                    "insert" => &[Action::Insert],
                    "update" => &[Action::Update],
                    "delete" => &[Action::Delete],
                    other => {
                        problems.push(format!(
                            "policy {}.{other}: unknown rule (expected read, write, insert, update or delete)",
                            p.entity
                        ));
                        continue;
                    }
                };
                match parse(source, Scope::Row { entity, allow_old: name == "update" || name == "write" }) {
                    Ok(expr) => {
                        for action in actions {
                            // A specific rule (insert/update/delete) wins over `write`.
                            if name != "write" || !rules.contains_key(&(p.entity.clone(), *action)) {
                                rules.insert((p.entity.clone(), *action), expr.clone());
                            }
                        }
                    }
                    Err(e) => problems.push(format!("policy {}.{name}: {e}", p.entity)),
                }
            }
        }
        if !problems.is_empty() {
            return Err(PlazaError::Validation(problems.join("\n")));
        }
        Ok(Policies { rules, default: Some(default) })
    }

    fn fallback(&self) -> bool {
        self.default != Some(DefaultPolicy::Deny)
    }

    /// The rule for `action` on `entity`, compiled for `auth`. Admin passes everything.
    pub fn cond(&self, entity: &str, action: Action, auth: &AuthContext, old: Option<&Row>) -> Cond {
        if auth.admin {
            return Cond::Const(true);
        }
        match self.rules.get(&(entity.to_string(), action)) {
            Some(expr) => compile(expr, auth, Env { old, room: None }),
            None => Cond::Const(self.fallback()),
        }
    }

    /// Checks one write, seeing the row before and after it: insert sees `new`, delete sees
    /// `old`, update must pass with the row as it was and as it will be.
    pub fn check_write(&self, entity: &str, auth: &AuthContext, old: Option<&Row>, new: Option<&Row>) -> Result<()> {
        if auth.read_only {
            return Err(PlazaError::Forbidden("this API key is read-only".into()));
        }
        let allowed = match (old, new) {
            (None, Some(new)) => self.cond(entity, Action::Insert, auth, None).allows(new),
            (Some(old), None) => self.cond(entity, Action::Delete, auth, None).allows(old),
            (Some(old), Some(new)) => {
                let rule = self.cond(entity, Action::Update, auth, Some(old));
                rule.allows(old) && rule.allows(new)
            }
            (None, None) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(PlazaError::Forbidden(format!("a policy on {entity} forbids this write")))
        }
    }

    /// Whether `auth` may see a change event: the read rule on the row after the change, or for
    /// a delete on the row as it was.
    pub fn can_see(&self, auth: &AuthContext, change: &Change) -> bool {
        let row = match change.kind {
            ChangeKind::Delete => change.prior.as_ref(),
            _ => change.data.as_ref(),
        };
        let rule = self.cond(&change.entity, Action::Read, auth, None);
        match row {
            Some(row) => rule.allows(row),
            None => rule == Cond::Const(true),
        }
    }
}

/// What a room rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAction {
    Join,
    /// Room events (presence comes with joining).
    Broadcast,
    /// Patches to the room's state document.
    State,
}

impl RoomAction {
    pub fn name(self) -> &'static str {
        match self {
            RoomAction::Join => "join",
            RoomAction::Broadcast => "broadcast",
            RoomAction::State => "state",
        }
    }
}

#[derive(Debug)]
struct RoomRule {
    pattern: String,
    join: Option<Expr>,
    broadcast: Option<Expr>,
    state: Option<Expr>,
    persist: bool,
}

/// The manifest's `rooms.rules`, parsed once at start. The first rule whose pattern matches a
/// room governs it; a room no rule matches, or an action its rule leaves out, is open to any
/// session. Anonymous callers may do nothing in rooms; the admin may do everything.
#[derive(Debug, Default)]
pub struct RoomRules {
    rules: Vec<RoomRule>,
    max_members: Option<usize>,
}

impl RoomRules {
    /// Parses every rule expression; errors name the rule, the action, line and column.
    pub fn from_manifest(manifest: &AppManifest) -> Result<RoomRules> {
        let Some(rooms) = &manifest.rooms else { return Ok(RoomRules::default()) };
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, def) in rooms.rules.iter().enumerate() {
            let mut compile = |action: RoomAction, source: &Option<String>| {
                let source = source.as_deref()?;
                parse(source, Scope::Room)
                    .map_err(|e| problems.push(format!("rooms.rules[{i}] ({}).{}: {e}", def.pattern, action.name())))
                    .ok()
            };
            let join = compile(RoomAction::Join, &def.join);
            let broadcast = compile(RoomAction::Broadcast, &def.broadcast);
            let state = compile(RoomAction::State, &def.state);
            rules.push(RoomRule { pattern: def.pattern.clone(), join, broadcast, state, persist: def.persist });
        }
        if !problems.is_empty() {
            return Err(PlazaError::Validation(problems.join("\n")));
        }
        Ok(RoomRules { rules, max_members: rooms.max_members })
    }

    fn rule(&self, room: &str) -> Option<&RoomRule> {
        self.rules.iter().find(|r| super::manifest::room_pattern_matches(&r.pattern, room))
    }

    /// Whether `auth` may do `action` in `room`.
    pub fn allows(&self, action: RoomAction, auth: &AuthContext, room: &str) -> bool {
        if auth.admin {
            return true;
        }
        // A read-only API key may join and listen, never send.
        if auth.user_id.is_none() || (auth.read_only && action != RoomAction::Join) {
            return false;
        }
        let Some(rule) = self.rule(room) else { return true };
        let expr = match action {
            RoomAction::Join => &rule.join,
            RoomAction::Broadcast => &rule.broadcast,
            RoomAction::State => &rule.state,
        };
        match expr {
            None => true,
            // No `data.*` in room rules, so this is always a constant.
            Some(e) => compile(e, auth, Env { old: None, room: Some(room) }) == Cond::Const(true),
        }
    }

    /// As [`RoomRules::allows`], as the error a caller is answered.
    pub fn check(&self, action: RoomAction, auth: &AuthContext, room: &str) -> Result<()> {
        if self.allows(action, auth, room) {
            return Ok(());
        }
        Err(PlazaError::Forbidden(if auth.admin || auth.user_id.is_some() {
            format!("a room rule forbids {} in room '{room}'", action.name())
        } else {
            "rooms need a session (a guest session is enough) or the admin token".to_string()
        }))
    }

    /// Whether `room`'s state is kept in the database while the room is stopped.
    pub fn persists(&self, room: &str) -> bool {
        self.rule(room).is_some_and(|r| r.persist)
    }

    /// The manifest's cap on members per room, when it sets one.
    pub fn max_members(&self) -> Option<usize> {
        self.max_members
    }
}

/// A rule over a context other than an entity row (pub/sub topics): `auth.*` and
/// `<root>.<field>` for the context's fields, in the same language and with the same semantics
/// as row policies. The admin passes every rule.
#[derive(Debug, Clone)]
pub struct ContextRule {
    expr: Expr,
}

impl ContextRule {
    /// Parses `src`, where `root.<field>` names one of `fields` (all strings).
    pub fn parse(src: &str, root: &'static str, fields: &[&str]) -> std::result::Result<ContextRule, String> {
        parse(src, Scope::Context { root, fields }).map(|expr| ContextRule { expr })
    }

    /// Whether `auth` passes the rule for this context (field name → value).
    pub fn allows(&self, auth: &AuthContext, context: &Row) -> bool {
        auth.admin || compile(&self.expr, auth, Env { old: None, room: None }).allows(context)
    }
}

// ---------------------------------------------------------------- compile

enum Operand {
    Value { v: Value, literal: bool },
    List(Vec<Value>),
    Field(String),
}

/// What an expression may refer to besides the caller: the row before an update, the room.
#[derive(Clone, Copy)]
struct Env<'a> {
    old: Option<&'a Row>,
    room: Option<&'a str>,
}

fn operand(e: &Expr, auth: &AuthContext, env: Env<'_>) -> Option<Operand> {
    Some(match e {
        Expr::Lit(v) => Operand::Value { v: v.clone(), literal: true },
        Expr::List(items) => Operand::List(items.clone()),
        Expr::Auth(name) => Operand::Value {
            v: match *name {
                "userId" => auth.user_id.clone().map_or(Value::Null, Value::String),
                "guest" => Value::Bool(auth.guest),
                "verified" => Value::Bool(auth.verified),
                _ => Value::Bool(auth.admin),
            },
            literal: false,
        },
        Expr::Room(_) => Operand::Value { v: env.room.map_or(Value::Null, |r| Value::String(r.to_string())), literal: false },
        Expr::Data(f) => Operand::Field(f.clone()),
        Expr::Old(f) => Operand::Value { v: env.old.and_then(|r| r.get(f)).cloned().unwrap_or(Value::Null), literal: false },
        _ => return None,
    })
}


fn const_eq(a: &Value, b: &Value) -> bool {
    json_to_sql(a) == json_to_sql(b) || matches!((json_to_sql(a), json_to_sql(b)), (SqlValue::Integer(x), SqlValue::Real(y)) | (SqlValue::Real(y), SqlValue::Integer(x)) if x as f64 == y)
}

fn compile(e: &Expr, auth: &AuthContext, env: Env<'_>) -> Cond {
    match e {
        Expr::And(a, b) => Cond::and(compile(a, auth, env), compile(b, auth, env)),
        Expr::Or(a, b) => Cond::or(compile(a, auth, env), compile(b, auth, env)),
        Expr::Not(a) => Cond::not(compile(a, auth, env)),
        Expr::Eq(a, b) | Expr::Ne(a, b) => {
            let eq = matches!(e, Expr::Eq(..));
            let op = if eq { CmpOp::Eq } else { CmpOp::Ne };
            match (operand(a, auth, env), operand(b, auth, env)) {
                (Some(Operand::Value { v: x, literal: lx }), Some(Operand::Value { v: y, literal: ly })) => {
                    Cond::Const(match (x.is_null(), y.is_null()) {
                        (true, true) if lx || ly => eq,
                        (true, false) | (false, true) if lx || ly => !eq,
                        (true, _) | (_, true) => false,
                        _ => const_eq(&x, &y) == eq,
                    })
                }
                (Some(Operand::Field(f)), Some(Operand::Value { v, literal }))
                | (Some(Operand::Value { v, literal }), Some(Operand::Field(f))) => {
                    if v.is_null() && !literal {
                        Cond::Const(false)
                    } else {
                        Cond::Filter(Filter::Cmp { field: f, op, value: json_to_sql(&v) })
                    }
                }
                _ => Cond::Const(false),
            }
        }
        Expr::In(a, b) => match (operand(a, auth, env), operand(b, auth, env)) {
            (Some(Operand::Value { v, .. }), Some(Operand::List(items))) => {
                Cond::Const(!v.is_null() && items.iter().any(|i| const_eq(&v, i)))
            }
            (Some(Operand::Field(f)), Some(Operand::List(items))) => {
                Cond::Filter(Filter::In { field: f, values: items.iter().map(json_to_sql).collect() })
            }
            (Some(Operand::Value { v, .. }), Some(Operand::Field(f))) if !v.is_null() => {
                Cond::Filter(Filter::Contains { field: f, value: json_to_sql(&v) })
            }
            (Some(Operand::Value { v, .. }), Some(Operand::Value { v: Value::Array(items), .. })) => {
                Cond::Const(!v.is_null() && items.iter().any(|i| const_eq(&v, i)))
            }
            _ => Cond::Const(false),
        },
        Expr::Lit(Value::Bool(b)) => Cond::Const(*b),
        Expr::Auth(_) | Expr::Room(_) => match operand(e, auth, env) {
            Some(Operand::Value { v: Value::Bool(b), .. }) => Cond::Const(b),
            _ => Cond::Const(false),
        },
        Expr::Data(f) => Cond::Filter(Filter::Cmp { field: f.clone(), op: CmpOp::Eq, value: SqlValue::Integer(1) }),
        Expr::Old(f) => Cond::Const(env.old.and_then(|r| r.get(f)).is_some_and(|v| const_eq(v, &Value::Bool(true)))),
        Expr::Lit(_) | Expr::List(_) => Cond::Const(false),
    }
}

// ---------------------------------------------------------------- parse

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
}

fn position(src: &str, offset: usize) -> String {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line} column {column}")
}

fn lex(src: &str) -> std::result::Result<Vec<(Tok, usize)>, String> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        if let Some(op) = ["==", "!=", "&&", "||"].into_iter().find(|op| *op == two) {
            out.push((Tok::Op(op), start));
            i += 2;
        } else if let Some(op) = ["!", "(", ")", "[", "]", ","].into_iter().find(|op| op.as_bytes()[0] == bytes[i]) {
            out.push((Tok::Op(op), start));
            i += 1;
        } else if c == '"' || c == '\'' {
            let end = src[i + 1..].find(c).ok_or_else(|| format!("{}: unterminated string", position(src, start)))?;
            out.push((Tok::Str(src[i + 1..i + 1 + end].to_string()), start));
            i += end + 2;
        } else if c.is_ascii_digit() || c == '-' {
            let end = src[i + 1..].find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).map_or(src.len(), |e| i + 1 + e);
            let n = src[i..end].parse().map_err(|_| format!("{}: bad number '{}'", position(src, start), &src[i..end]))?;
            out.push((Tok::Num(n), start));
            i = end;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = src[i..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')).map_or(src.len(), |e| i + e);
            out.push((Tok::Ident(src[i..end].to_string()), start));
            i = end;
        } else {
            return Err(format!("{}: unexpected '{c}'", position(src, start)));
        }
    }
    Ok(out)
}

/// What an expression is about: a row of `entity` (`data.*`, and `old.*` in update rules), a
/// room (`room.name`), or another context such as a pub/sub topic (`topic.name`).
#[derive(Clone, Copy)]
enum Scope<'a> {
    Row { entity: &'a EntityDef, allow_old: bool },
    Room,
    Context { root: &'static str, fields: &'a [&'a str] },
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    at: usize,
    scope: Scope<'a>,
}

fn parse(src: &str, scope: Scope<'_>) -> std::result::Result<Expr, String> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(format!("longer than {MAX_EXPRESSION_LEN} characters"));
    }
    let mut p = Parser { src, toks: lex(src)?, at: 0, scope };
    let e = p.or()?;
    match p.toks.get(p.at) {
        None => Ok(e),
        Some((t, pos)) => Err(format!("{}: unexpected {t:?} after a complete expression", position(src, *pos))),
    }
}

impl Parser<'_> {
    fn here(&self) -> String {
        position(self.src, self.toks.get(self.at).map_or(self.src.len(), |t| t.1))
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.toks.get(self.at), Some((Tok::Op(o), _)) if *o == op)
            || matches!(self.toks.get(self.at), Some((Tok::Ident(i), _)) if i == op)
        {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> std::result::Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> std::result::Result<Expr, String> {
        let mut e = self.unary()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> std::result::Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let left = self.primary()?;
        if self.eat("==") {
            return self.comparison(left, Expr::Eq);
        }
        if self.eat("!=") {
            return self.comparison(left, Expr::Ne);
        }
        if self.eat("in") {
            let right = self.primary()?;
            if let (Expr::Data(f), false) = (&right, matches!(left, Expr::Data(_))) {
                let entity = match self.scope {
                    Scope::Row { entity, .. } => Some(entity),
                    Scope::Room | Scope::Context { .. } => None,
                };
                if entity.and_then(|e| e.field(f)).map(|d| &d.ty) != Some(&FieldType::Json) {
                    return Err(format!("{}: `x in data.{f}` needs a json field holding an array", self.here()));
                }
            } else if !matches!(right, Expr::List(_) | Expr::Old(_)) {
                return Err(format!("{}: `in` takes a [list] or a json field on its right", self.here()));
            }
            return Ok(Expr::In(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    fn comparison(&mut self, left: Expr, make: fn(Box<Expr>, Box<Expr>) -> Expr) -> std::result::Result<Expr, String> {
        let right = self.primary()?;
        if matches!((&left, &right), (Expr::Data(_), Expr::Data(_))) {
            return Err(format!("{}: comparing two data fields is not supported", self.here()));
        }
        Ok(make(Box::new(left), Box::new(right)))
    }

    fn literal(&mut self) -> std::result::Result<Value, String> {
        let here = self.here();
        match self.toks.get(self.at).cloned() {
            Some((Tok::Str(s), _)) => {
                self.at += 1;
                Ok(Value::String(s))
            }
            Some((Tok::Num(n), _)) => {
                self.at += 1;
                Ok(if n.fract() == 0.0 && n.abs() < 9e15 { Value::from(n as i64) } else { Value::from(n) })
            }
            Some((Tok::Ident(i), _)) if matches!(i.as_str(), "true" | "false" | "null") => {
                self.at += 1;
                Ok(match i.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Null,
                })
            }
            _ => Err(format!("{here}: expected a literal")),
        }
    }

    fn primary(&mut self) -> std::result::Result<Expr, String> {
        let here = self.here();
        if self.eat("(") {
            let e = self.or()?;
            return if self.eat(")") { Ok(e) } else { Err(format!("{}: expected ')'", self.here())) };
        }
        if self.eat("[") {
            let mut items = Vec::new();
            if !self.eat("]") {
                loop {
                    items.push(self.literal()?);
                    if self.eat("]") {
                        break;
                    }
                    if !self.eat(",") {
                        return Err(format!("{}: expected ',' or ']'", self.here()));
                    }
                }
            }
            return Ok(Expr::List(items));
        }
        match self.toks.get(self.at).cloned() {
            Some((Tok::Ident(path), _)) if !matches!(path.as_str(), "true" | "false" | "null" | "in") => {
                self.at += 1;
                let roots = match self.scope {
                    Scope::Row { .. } => "auth.* or data.*".to_string(),
                    Scope::Room => "auth.* or room.name".to_string(),
                    Scope::Context { root, .. } => format!("auth.* or {root}.*"),
                };
                let (root, field) = path.split_once('.').ok_or_else(|| format!("{here}: '{path}' is not {roots}"))?;
                match (root, self.scope) {
                    ("auth", _) => match field {
                        "userId" => Ok(Expr::Auth("userId")),
                        "guest" => Ok(Expr::Auth("guest")),
                        "admin" => Ok(Expr::Auth("admin")),
                        "verified" => Ok(Expr::Auth("verified")),
                        _ => Err(format!(
                            "{here}: unknown auth.{field} (expected auth.userId, auth.guest, auth.admin or auth.verified)"
                        )),
                    },
                    ("room", Scope::Room) if field == "name" => Ok(Expr::Room("name")),
                    ("room", Scope::Room) => Err(format!("{here}: unknown room.{field} (expected room.name)")),
                    ("data" | "old", Scope::Room) => Err(format!("{here}: {root}.* is not available in room rules (auth.* and room.name are)")),
                    // A context's fields compile like a row's, over the context's values.
                    (r, Scope::Context { root, fields }) if r == root => match fields.contains(&field) {
                        true => Ok(Expr::Data(field.to_string())),
                        false => Err(format!("{here}: unknown {root}.{field}")),
                    },
                    ("data" | "old", Scope::Context { root, .. }) => Err(format!("{here}: {path} is not available here ({root}.* is)")),
                    ("data" | "old", Scope::Row { entity, .. }) if !entity.has_column(field) => {
                        Err(format!("{here}: {} has no field '{field}'", entity.name))
                    }
                    ("data", _) => Ok(Expr::Data(field.to_string())),
                    ("old", Scope::Row { allow_old: true, .. }) => Ok(Expr::Old(field.to_string())),
                    ("old", _) => Err(format!("{here}: old.* is only available in update and write rules")),
                    _ => Err(format!("{here}: '{path}' is not {roots}")),
                }
            }
            Some(_) => Ok(Expr::Lit(self.literal()?)),
            None => Err(format!("{here}: expression ends too early")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(policy: &str) -> AppManifest {
        AppManifest::from_json(&format!(
            r#"{{"entities":[{{"name":"Todo","fields":[{{"name":"title","type":"string"}},{{"name":"ownerId","type":"string","optional":true}},
            {{"name":"members","type":"json","optional":true}},{{"name":"public","type":"bool","optional":true}}]}}],
            "policies":[{{"entity":"Todo",{policy}}}]}}"#
        ))
        .unwrap()
    }

    fn policies(policy: &str) -> Policies {
        Policies::from_manifest(&manifest(policy), DefaultPolicy::Allow).unwrap()
    }

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn owner_rule_for_users_guests_and_anonymous() {
        let p = policies(r#""read":"auth.userId == data.ownerId && !auth.guest""#);
        let mine = row(json!({"ownerId":"u1","title":"a"}));
        let orphan = row(json!({"ownerId":null,"title":"b"}));
        let u1 = AuthContext::user("u1");
        assert!(p.cond("Todo", Action::Read, &u1, None).allows(&mine));
        assert!(!p.cond("Todo", Action::Read, &AuthContext::user("u2"), None).allows(&mine));
        assert!(!p.cond("Todo", Action::Read, &AuthContext::default(), None).allows(&orphan), "null never equals null");
        let guest = AuthContext { user_id: Some("u1".into()), guest: true, ..Default::default() };
        assert_eq!(p.cond("Todo", Action::Read, &guest, None), Cond::Const(false));
        assert!(p.cond("Todo", Action::Read, &AuthContext::admin(), None).allows(&orphan));
        // Compiles to SQL, not to a scan.
        assert_eq!(
            p.cond("Todo", Action::Read, &u1, None),
            Cond::Filter(Filter::Cmp { field: "ownerId".into(), op: CmpOp::Eq, value: SqlValue::Text("u1".into()) })
        );
    }

    #[test]
    fn membership_literals_and_null_tests() {
        let p = policies(r#""read":"auth.userId in data.members || data.public == true || data.ownerId == null""#);
        let u = AuthContext::user("u9");
        assert!(p.cond("Todo", Action::Read, &u, None).allows(&row(json!({"members":["u1","u9"],"ownerId":"x"}))));
        assert!(p.cond("Todo", Action::Read, &u, None).allows(&row(json!({"members":null,"public":1,"ownerId":"x"}))));
        assert!(p.cond("Todo", Action::Read, &u, None).allows(&row(json!({"ownerId":null}))));
        assert!(!p.cond("Todo", Action::Read, &u, None).allows(&row(json!({"members":["u1"],"public":0,"ownerId":"x"}))));
        let q = policies(r#""read":"data.title in ['a', 'b'] && auth.userId != null""#);
        assert!(q.cond("Todo", Action::Read, &u, None).allows(&row(json!({"title":"b"}))));
        assert_eq!(q.cond("Todo", Action::Read, &AuthContext::default(), None), Cond::Const(false));
    }

    #[test]
    fn writes_check_old_and_new_rows() {
        let p = policies(r#""read":"true","write":"auth.userId == data.ownerId""#);
        let u1 = AuthContext::user("u1");
        let mine = row(json!({"ownerId":"u1"}));
        let theirs = row(json!({"ownerId":"u2"}));
        assert!(p.check_write("Todo", &u1, None, Some(&mine)).is_ok());
        assert!(p.check_write("Todo", &u1, None, Some(&theirs)).is_err());
        assert!(p.check_write("Todo", &u1, Some(&theirs), Some(&mine)).is_err(), "cannot take over a row");
        assert!(p.check_write("Todo", &u1, Some(&mine), Some(&theirs)).is_err(), "cannot give a row away");
        assert!(p.check_write("Todo", &u1, Some(&mine), None).is_ok());
        assert!(matches!(p.check_write("Todo", &u1, Some(&theirs), None), Err(PlazaError::Forbidden(_))));
    }

    #[test]
    fn default_policy_applies_without_a_rule() {
        let m = manifest(r#""read":"true""#);
        let deny = Policies::from_manifest(&m, DefaultPolicy::Deny).unwrap();
        assert_eq!(deny.cond("Todo", Action::Insert, &AuthContext::user("u"), None), Cond::Const(false));
        assert_eq!(deny.cond("Todo", Action::Read, &AuthContext::user("u"), None), Cond::Const(true));
        let allow = Policies::from_manifest(&m, DefaultPolicy::Allow).unwrap();
        assert_eq!(allow.cond("Todo", Action::Insert, &AuthContext::user("u"), None), Cond::Const(true));
    }

    #[test]
    fn room_rules_see_the_caller_and_the_room_name() {
        let m = AppManifest::from_json(
            r#"{"rooms":{"rules":[
                {"pattern":"vip-*","join":"!auth.guest","broadcast":"auth.userId == 'host'","persist":true},
                {"pattern":"own:*","join":"room.name == 'own:' || room.name in ['own:alice', 'own:bob']"},
                {"pattern":"*","state":"false"}]}}"#,
        )
        .unwrap();
        let rules = RoomRules::from_manifest(&m).unwrap();
        let guest = AuthContext { user_id: Some("guest_1".into()), guest: true, ..Default::default() };
        let (alice, host) = (AuthContext::user("alice"), AuthContext::user("host"));
        assert!(!rules.allows(RoomAction::Join, &guest, "vip-1"));
        assert!(rules.allows(RoomAction::Join, &alice, "vip-1"));
        assert!(!rules.allows(RoomAction::Broadcast, &alice, "vip-1"));
        assert!(rules.allows(RoomAction::Broadcast, &host, "vip-1"));
        assert!(rules.allows(RoomAction::State, &alice, "vip-1"), "an action the first matching rule leaves out is open");
        assert!(rules.allows(RoomAction::Join, &alice, "own:alice") && !rules.allows(RoomAction::Join, &alice, "own:carol"));
        assert!(!rules.allows(RoomAction::State, &alice, "lobby") && rules.allows(RoomAction::Join, &alice, "lobby"));
        assert!(!rules.allows(RoomAction::Join, &AuthContext::default(), "lobby"), "anonymous callers may do nothing");
        assert!(rules.allows(RoomAction::State, &AuthContext::admin(), "lobby"));
        assert!(rules.persists("vip-1") && !rules.persists("lobby"));
        assert!(matches!(rules.check(RoomAction::Join, &guest, "vip-1"), Err(PlazaError::Forbidden(_))));

        let bad = AppManifest::from_json(r#"{"rooms":{"rules":[{"pattern":"g-*","join":"data.ownerId == auth.userId","state":"room.nope"}]}}"#).unwrap();
        let err = RoomRules::from_manifest(&bad).unwrap_err().to_string();
        assert!(err.contains("rooms.rules[0] (g-*).join: line 1 column 1: data.* is not available in room rules"), "{err}");
        assert!(err.contains("(g-*).state: line 1 column 1: unknown room.nope"), "{err}");
        let m = manifest(r#""read":"room.name == 'x'""#);
        let err = Policies::from_manifest(&m, DefaultPolicy::Allow).unwrap_err().to_string();
        assert!(err.contains("'room.name' is not auth.* or data.*"), "{err}");
    }

    #[test]
    fn parse_errors_name_rule_line_and_column() {
        let bad = |rule: &str| {
            let mut m = manifest(r#""read":"true""#);
            m.policies[0].rules.insert("read".into(), rule.into());
            Policies::from_manifest(&m, DefaultPolicy::Allow).unwrap_err().to_string()
        };
        assert_eq!(bad("auth.userId == data.owner"), "policy Todo.read: line 1 column 16: Todo has no field 'owner'");
        assert!(bad("auth.userId ==").contains("line 1 column 15: expression ends too early"), "{}", bad("auth.userId =="));
        assert!(bad("auth.userId == data.ownerId &&\n  (auth.nope)").contains("line 2 column 4: unknown auth.nope"));
        assert!(bad("data.title == 'x").contains("unterminated string"));
        assert!(bad("old.title == 'x'").contains("only available in update"));
        assert!(bad("auth.userId in data.title").contains("needs a json field"));
    }
}
