//! Batch autoscale formulas: the part of the language pool owners commonly write.
//!
//! Statements `name = expr;` (names with or without `$`); numbers, `?:`, `||`, `&&`, comparisons,
//! `+ - * / %`, unary `-` and `!`; `min`, `max`, `avg`, `sum`, `count`, `len`, `ceil`, `floor`,
//! `round`, `abs`, `time()`; the metrics `$PendingTasks`, `$ActiveTasks`, `$RunningTasks` with
//! `GetSample(interval | count [, percent])` and `GetSamplePercent(interval)`; `TimeInterval_*`;
//! `.hour`, `.minute`, `.weekday` (Sunday = 0), `.day`, `.month`, `.year` on times; and the outputs
//! `$TargetDedicatedNodes`, `$TargetLowPriorityNodes`, `$NodeDeallocationOption`. Anything else is an
//! error with Batch's "Line L, Col C: …" position.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

/// What the formula sees of the pool.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now: OffsetDateTime,
    pub current_dedicated: u32,
    pub current_low_priority: u32,
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    /// Samples taken every 30 s, oldest first: (time, active tasks, running tasks).
    pub samples: Vec<(OffsetDateTime, u32, u32)>,
}

/// The outcome, as `AutoScaleRun.results` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    pub deallocation: String,
}

impl Outputs {
    pub fn results(&self) -> String {
        format!(
            "$TargetDedicatedNodes={};$TargetLowPriorityNodes={};$NodeDeallocationOption={}",
            self.target_dedicated, self.target_low_priority, self.deallocation
        )
    }
}

/// An error at a position in the formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormulaError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for FormulaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Line {}, Col {}: {}", self.line, self.col, self.message)
    }
}

/// The sampling period of Batch's metrics.
pub const SAMPLE_PERIOD: Duration = Duration::seconds(30);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(&'static str),
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    line: usize,
    col: usize,
}

const OPERATORS: [&str; 22] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", "=", "(",
    ")", ",", ".", ";",
];

fn tokenize(text: &str) -> Result<Vec<Spanned>, FormulaError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0, 1, 1);
    while i < chars.len() {
        let c = chars[i];
        let start = (line, col);
        if c == '\n' {
            line += 1;
            col = 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let token = if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let begin = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[begin..i].iter().collect();
            col += i - begin;
            Token::Number(text.parse().map_err(|_| FormulaError {
                line: start.0,
                col: start.1,
                message: format!("Invalid number: {text}"),
            })?)
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let begin = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            col += i - begin;
            Token::Name(chars[begin..i].iter().collect())
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPERATORS
                .iter()
                .find(|op| rest.starts_with(**op))
                .ok_or(FormulaError {
                    line,
                    col,
                    message: format!("Unexpected character: '{c}'"),
                })?;
            i += op.len();
            col += op.len();
            Token::Op(op)
        };
        tokens.push(Spanned {
            token,
            line: start.0,
            col: start.1,
        });
    }
    Ok(tokens)
}

#[derive(Debug, Clone)]
enum Expr {
    Number(f64),
    Name(String, usize, usize),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>, usize, usize),
    Member(Box<Expr>, String, Option<Vec<Expr>>, usize, usize),
}

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
    end: (usize, usize),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|s| &s.token)
    }

    fn position(&self) -> (usize, usize) {
        self.tokens
            .get(self.at)
            .map(|s| (s.line, s.col))
            .unwrap_or(self.end)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, FormulaError> {
        let (line, col) = self.position();
        Err(FormulaError {
            line,
            col,
            message: message.into(),
        })
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.peek() == Some(&Token::Op(op_static(op))) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), FormulaError> {
        if self.eat(op) {
            Ok(())
        } else {
            self.fail(format!("Expected '{op}'"))
        }
    }

    fn statements(&mut self) -> Result<Statements, FormulaError> {
        let mut statements = Vec::new();
        while self.peek().is_some() {
            if self.eat(";") {
                continue;
            }
            let target = match (self.tokens.get(self.at), self.tokens.get(self.at + 1)) {
                (
                    Some(Spanned {
                        token: Token::Name(name),
                        line,
                        col,
                    }),
                    Some(Spanned {
                        token: Token::Op("="),
                        ..
                    }),
                ) => {
                    let target = (name.clone(), *line, *col);
                    self.at += 2;
                    Some(target)
                }
                _ => None,
            };
            let expr = self.expr()?;
            statements.push((target, expr));
            if self.peek().is_some() && !self.eat(";") {
                return self.fail("Expected ';'");
            }
        }
        Ok(statements)
    }

    fn expr(&mut self) -> Result<Expr, FormulaError> {
        let condition = self.binary(0)?;
        if self.eat("?") {
            let then = self.expr()?;
            self.expect(":")?;
            let otherwise = self.expr()?;
            return Ok(Expr::Ternary(
                Box::new(condition),
                Box::new(then),
                Box::new(otherwise),
            ));
        }
        Ok(condition)
    }

    fn binary(&mut self, level: usize) -> Result<Expr, FormulaError> {
        const LEVELS: [&[&str]; 5] = [
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(Token::Op(op)) = self.peek().cloned() {
            if !LEVELS[level].contains(&op) {
                break;
            }
            self.at += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        if self.eat("-") {
            return Ok(Expr::Unary("-", Box::new(self.unary()?)));
        }
        if self.eat("!") {
            return Ok(Expr::Unary("!", Box::new(self.unary()?)));
        }
        let mut expr = self.primary()?;
        while self.eat(".") {
            let (line, col) = self.position();
            let Some(Token::Name(member)) = self.peek().cloned() else {
                return self.fail("Expected a member name after '.'");
            };
            self.at += 1;
            let args = if self.eat("(") {
                Some(self.arguments()?)
            } else {
                None
            };
            expr = Expr::Member(Box::new(expr), member, args, line, col);
        }
        Ok(expr)
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, FormulaError> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, FormulaError> {
        let (line, col) = self.position();
        match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.at += 1;
                Ok(Expr::Number(n))
            }
            Some(Token::Name(name)) => {
                self.at += 1;
                if self.eat("(") {
                    Ok(Expr::Call(name, self.arguments()?, line, col))
                } else {
                    Ok(Expr::Name(name, line, col))
                }
            }
            Some(Token::Op("(")) => {
                self.at += 1;
                let expr = self.expr()?;
                self.expect(")")?;
                Ok(expr)
            }
            Some(Token::Op(op)) => self.fail(format!("Unexpected '{op}'")),
            None => self.fail("Unexpected end of formula"),
        }
    }
}

fn op_static(op: &str) -> &'static str {
    OPERATORS.iter().find(|o| **o == op).copied().unwrap_or("")
}

#[derive(Debug, Clone)]
enum Val {
    Num(f64),
    Interval(f64),
    Time(OffsetDateTime),
    Vector(Vec<f64>),
    Metric(&'static str),
    Text(String),
}

/// Checks that `formula` parses; Batch refuses a syntax error when autoscale is enabled.
pub fn check_syntax(formula: &str) -> Result<(), FormulaError> {
    parse(formula).map(|_| ())
}

/// Statements with their assignment target (name, line, column), if any.
type Statements = Vec<(Option<(String, usize, usize)>, Expr)>;

fn parse(formula: &str) -> Result<Statements, FormulaError> {
    let tokens = tokenize(formula)?;
    let lines = formula.lines().count().max(1);
    let last_col = formula
        .lines()
        .last()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    let mut parser = Parser {
        tokens,
        at: 0,
        end: (lines, last_col),
    };
    parser.statements()
}

/// Evaluates `formula` against the pool's inputs.
pub fn evaluate(formula: &str, inputs: &Inputs) -> Result<Outputs, FormulaError> {
    let statements = parse(formula)?;
    let mut scope: HashMap<String, Val> = HashMap::new();
    scope.insert(
        "$TargetDedicatedNodes".into(),
        Val::Num(inputs.target_dedicated as f64),
    );
    scope.insert(
        "$TargetLowPriorityNodes".into(),
        Val::Num(inputs.target_low_priority as f64),
    );
    scope.insert(
        "$NodeDeallocationOption".into(),
        Val::Text("requeue".into()),
    );
    for (target, expr) in &statements {
        let value = eval(expr, &scope, inputs)?;
        if let Some((name, line, col)) = target {
            if is_read_only(name) {
                return Err(FormulaError {
                    line: *line,
                    col: *col,
                    message: format!("Cannot assign to read-only symbol: {name}"),
                });
            }
            scope.insert(name.clone(), value);
        }
    }
    let count = |name: &str| -> Result<u32, FormulaError> {
        match scope.get(name) {
            Some(Val::Num(n)) if n.is_finite() => Ok(n.max(0.0).round() as u32),
            _ => Err(FormulaError {
                line: 1,
                col: 1,
                message: format!("{name} must be a number"),
            }),
        }
    };
    let deallocation = match scope.get("$NodeDeallocationOption") {
        Some(Val::Text(text)) => text.clone(),
        _ => "requeue".into(),
    };
    Ok(Outputs {
        target_dedicated: count("$TargetDedicatedNodes")?,
        target_low_priority: count("$TargetLowPriorityNodes")?,
        deallocation,
    })
}

/// System variables a formula may read but not assign.
fn is_read_only(name: &str) -> bool {
    matches!(
        name,
        "$PendingTasks"
            | "$ActiveTasks"
            | "$RunningTasks"
            | "$CurrentDedicatedNodes"
            | "$CurrentDedicated"
            | "$CurrentLowPriorityNodes"
    )
}

fn eval(expr: &Expr, scope: &HashMap<String, Val>, inputs: &Inputs) -> Result<Val, FormulaError> {
    let fail = |line: usize, col: usize, message: String| FormulaError { line, col, message };
    match expr {
        Expr::Number(n) => Ok(Val::Num(*n)),
        Expr::Name(name, line, col) => {
            if let Some(value) = scope.get(name) {
                return Ok(value.clone());
            }
            let interval = |seconds: f64| Ok(Val::Interval(seconds));
            match name.as_str() {
                "$PendingTasks" => Ok(Val::Metric("pending")),
                "$ActiveTasks" => Ok(Val::Metric("active")),
                "$RunningTasks" => Ok(Val::Metric("running")),
                "$CurrentDedicatedNodes" | "$CurrentDedicated" => {
                    Ok(Val::Num(inputs.current_dedicated as f64))
                }
                "$CurrentLowPriorityNodes" => Ok(Val::Num(inputs.current_low_priority as f64)),
                "TimeInterval_Zero" => interval(0.0),
                "TimeInterval_100ns" => interval(1e-7),
                "TimeInterval_Microsecond" => interval(1e-6),
                "TimeInterval_Millisecond" => interval(1e-3),
                "TimeInterval_Second" => interval(1.0),
                "TimeInterval_Minute" => interval(60.0),
                "TimeInterval_Hour" => interval(3600.0),
                "TimeInterval_Day" => interval(86400.0),
                "TimeInterval_Week" => interval(604800.0),
                "requeue" | "terminate" | "taskcompletion" | "retaineddata" => {
                    Ok(Val::Text(name.clone()))
                }
                _ => Err(fail(*line, *col, format!("Undefined symbol: {name}"))),
            }
        }
        Expr::Unary(op, inner) => match (op, eval(inner, scope, inputs)?) {
            (&"-", Val::Num(n)) => Ok(Val::Num(-n)),
            (&"-", Val::Interval(n)) => Ok(Val::Interval(-n)),
            (&"!", Val::Num(n)) => Ok(Val::Num(if n == 0.0 { 1.0 } else { 0.0 })),
            (op, _) => Err(fail(
                1,
                1,
                format!("Operator '{op}' cannot be applied to this value"),
            )),
        },
        Expr::Ternary(condition, then, otherwise) => match eval(condition, scope, inputs)? {
            Val::Num(n) if n != 0.0 => eval(then, scope, inputs),
            Val::Num(_) => eval(otherwise, scope, inputs),
            _ => Err(fail(1, 1, "The condition of '?:' must be a number".into())),
        },
        Expr::Binary(op, left, right) => {
            binary(op, eval(left, scope, inputs)?, eval(right, scope, inputs)?)
        }
        Expr::Call(name, args, line, col) => {
            let values = args
                .iter()
                .map(|a| eval(a, scope, inputs))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, values, inputs).map_err(|message| fail(*line, *col, message))
        }
        Expr::Member(target, member, args, line, col) => {
            let target = eval(target, scope, inputs)?;
            let args = match args {
                Some(args) => Some(
                    args.iter()
                        .map(|a| eval(a, scope, inputs))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            member_of(target, member, args, inputs).map_err(|message| fail(*line, *col, message))
        }
    }
}

fn truth(b: bool) -> Val {
    Val::Num(if b { 1.0 } else { 0.0 })
}

fn binary(op: &str, left: Val, right: Val) -> Result<Val, FormulaError> {
    use Val::{Interval, Num, Time};
    let err = || FormulaError {
        line: 1,
        col: 1,
        message: format!("Operator '{op}' cannot be applied to these operands"),
    };
    let compare = |a: f64, b: f64| match op {
        "==" => Some(truth(a == b)),
        "!=" => Some(truth(a != b)),
        "<" => Some(truth(a < b)),
        "<=" => Some(truth(a <= b)),
        ">" => Some(truth(a > b)),
        ">=" => Some(truth(a >= b)),
        _ => None,
    };
    Ok(match (left, right) {
        (Num(a), Num(b)) => match op {
            "+" => Num(a + b),
            "-" => Num(a - b),
            "*" => Num(a * b),
            "/" => Num(if b == 0.0 { 0.0 } else { a / b }),
            "%" => Num(if b == 0.0 { 0.0 } else { a % b }),
            "&&" => truth(a != 0.0 && b != 0.0),
            "||" => truth(a != 0.0 || b != 0.0),
            _ => compare(a, b).ok_or_else(err)?,
        },
        (Interval(a), Num(b)) | (Num(b), Interval(a)) if op == "*" => Interval(a * b),
        (Interval(a), Num(b)) if op == "/" => Interval(if b == 0.0 { 0.0 } else { a / b }),
        (Interval(a), Interval(b)) => match op {
            "+" => Interval(a + b),
            "-" => Interval(a - b),
            "/" => Num(if b == 0.0 { 0.0 } else { a / b }),
            _ => compare(a, b).ok_or_else(err)?,
        },
        (Time(t), Interval(i)) if op == "+" => Time(t + Duration::seconds_f64(i)),
        (Time(t), Interval(i)) if op == "-" => Time(t - Duration::seconds_f64(i)),
        (Time(a), Time(b)) if op == "-" => Interval((a - b).as_seconds_f64()),
        (Time(a), Time(b)) => compare(
            a.unix_timestamp_nanos() as f64,
            b.unix_timestamp_nanos() as f64,
        )
        .ok_or_else(err)?,
        _ => return Err(err()),
    })
}

fn numbers(values: Vec<Val>) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for value in values {
        match value {
            Val::Num(n) => out.push(n),
            Val::Vector(v) => out.extend(v),
            _ => return Err("Expected numbers or sample vectors".into()),
        }
    }
    Ok(out)
}

fn call(name: &str, args: Vec<Val>, inputs: &Inputs) -> Result<Val, String> {
    let single = |args: Vec<Val>| -> Result<f64, String> {
        match args.as_slice() {
            [Val::Num(n)] => Ok(*n),
            _ => Err(format!("Function {name} takes one number")),
        }
    };
    Ok(match name {
        "time" if args.is_empty() => Val::Time(inputs.now),
        "min" | "max" | "avg" | "sum" | "count" | "len" => {
            let values = numbers(args)?;
            match name {
                "count" | "len" => Val::Num(values.len() as f64),
                "sum" => Val::Num(values.iter().sum()),
                _ if values.is_empty() => Val::Num(0.0),
                "avg" => Val::Num(values.iter().sum::<f64>() / values.len() as f64),
                "min" => Val::Num(values.iter().copied().fold(f64::INFINITY, f64::min)),
                _ => Val::Num(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            }
        }
        "ceil" => Val::Num(single(args)?.ceil()),
        "floor" => Val::Num(single(args)?.floor()),
        "round" => Val::Num(single(args)?.round()),
        "abs" => Val::Num(single(args)?.abs()),
        _ => return Err(format!("Undefined function: {name}")),
    })
}

fn member_of(
    target: Val,
    member: &str,
    args: Option<Vec<Val>>,
    inputs: &Inputs,
) -> Result<Val, String> {
    match (target, args) {
        (Val::Time(t), None) => Ok(Val::Num(match member {
            "hour" => t.hour() as f64,
            "minute" => t.minute() as f64,
            "second" => t.second() as f64,
            "weekday" => t.weekday().number_days_from_sunday() as f64,
            "day" => t.day() as f64,
            "month" => u8::from(t.month()) as f64,
            "year" => t.year() as f64,
            "yearday" => t.ordinal() as f64,
            _ => return Err(format!("Undefined member: {member}")),
        })),
        (Val::Metric(metric), Some(args)) => metric_method(metric, member, args, inputs),
        _ => Err(format!("Undefined member: {member}")),
    }
}

fn metric_method(
    metric: &str,
    method: &str,
    args: Vec<Val>,
    inputs: &Inputs,
) -> Result<Val, String> {
    let value = |sample: &(OffsetDateTime, u32, u32)| -> f64 {
        match metric {
            "active" => sample.1 as f64,
            "running" => sample.2 as f64,
            _ => (sample.1 + sample.2) as f64,
        }
    };
    let window = |seconds: f64| -> (Vec<f64>, f64) {
        let since = inputs.now - Duration::seconds_f64(seconds);
        let values: Vec<f64> = inputs
            .samples
            .iter()
            .filter(|s| s.0 > since)
            .map(value)
            .collect();
        let expected = (seconds / SAMPLE_PERIOD.as_seconds_f64()).floor().max(1.0);
        let percent = (values.len() as f64 / expected * 100.0).min(100.0);
        (values, percent)
    };
    match (method, args.as_slice()) {
        ("GetSamplePercent", [Val::Interval(seconds)]) => Ok(Val::Num(window(*seconds).1)),
        ("GetSample", [Val::Interval(seconds)]) => Ok(Val::Vector(window(*seconds).0)),
        ("GetSample", [Val::Interval(seconds), Val::Num(required)]) => {
            let (values, percent) = window(*seconds);
            if percent < *required {
                return Err(format!(
                    "GetSample() Error: The number of samples ({percent:.0}%) is below the required percentage ({required:.0}%)"
                ));
            }
            Ok(Val::Vector(values))
        }
        ("GetSample", [Val::Num(count)]) => {
            let count = count.max(0.0) as usize;
            let values: Vec<f64> = inputs.samples.iter().rev().take(count).map(value).collect();
            Ok(Val::Vector(values.into_iter().rev().collect()))
        }
        ("Count", []) => Ok(Val::Num(inputs.samples.len() as f64)),
        _ => Err(format!("Undefined member: {method}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn inputs(now: OffsetDateTime, samples: Vec<(OffsetDateTime, u32, u32)>) -> Inputs {
        Inputs {
            now,
            current_dedicated: 0,
            current_low_priority: 0,
            target_dedicated: 0,
            target_low_priority: 0,
            samples,
        }
    }

    const WORK_HOURS: &str = "$Now=time(); $WorkHours=$Now.hour>=6 && $Now.hour<7; $IsWeekday=$Now.weekday>=1 && $Now.weekday<=5;
$IsWorkingWeekdayHour=$WorkHours && $IsWeekday; $TargetDedicatedNodes=$IsWorkingWeekdayHour?1:0;
$NodeDeallocationOption=taskcompletion;";

    const PENDING_TASKS: &str = "maxNumberofVMs = 10; samplingInterval = 5 * TimeInterval_Minute; averageProcessingTimeSeconds = 5;
targetProcessingTimeSeconds = 60; pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(samplingInterval);
pendingTasksCount = (pendingTaskSamplePercent < 70) ? 0 : avg($PendingTasks.GetSample(samplingInterval));
estimatedProcessingTimeSeconds = pendingTasksCount * averageProcessingTimeSeconds;
processorTarget = pendingTasksCount > 0 ? max(estimatedProcessingTimeSeconds / targetProcessingTimeSeconds, 1) : 0;
$TargetDedicatedNodes = min(maxNumberofVMs, processorTarget); $NodeDeallocationOption = taskcompletion;";

    #[test]
    fn the_working_hours_formula_follows_the_clock() {
        let monday_six = datetime!(2026-01-05 06:30 UTC);
        let out = evaluate(WORK_HOURS, &inputs(monday_six, vec![])).unwrap();
        assert_eq!(
            out.results(),
            "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion"
        );
        for off_hours in [
            datetime!(2026-01-05 07:00 UTC),
            datetime!(2026-01-04 06:30 UTC),
            datetime!(2026-01-10 06:30 UTC),
        ] {
            assert_eq!(
                evaluate(WORK_HOURS, &inputs(off_hours, vec![]))
                    .unwrap()
                    .target_dedicated,
                0,
                "{off_hours}"
            );
        }
    }

    #[test]
    fn the_pending_tasks_formula_needs_enough_samples() {
        let now = datetime!(2026-01-05 12:00 UTC);
        let samples = |n: i64, active: u32| {
            (0..n)
                .map(|i| (now - Duration::seconds(30 * i), active, 0))
                .rev()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            evaluate(PENDING_TASKS, &inputs(now, samples(3, 100)))
                .unwrap()
                .target_dedicated,
            0,
            "30% of samples"
        );
        assert_eq!(
            evaluate(PENDING_TASKS, &inputs(now, samples(10, 36)))
                .unwrap()
                .target_dedicated,
            3,
            "36 tasks * 5 s / 60 s"
        );
        assert_eq!(
            evaluate(PENDING_TASKS, &inputs(now, samples(10, 1000)))
                .unwrap()
                .target_dedicated,
            10,
            "capped at 10"
        );
        assert_eq!(
            evaluate(PENDING_TASKS, &inputs(now, samples(10, 2)))
                .unwrap()
                .target_dedicated,
            1,
            "at least one"
        );
        assert_eq!(
            evaluate(PENDING_TASKS, &inputs(now, samples(10, 0)))
                .unwrap()
                .target_dedicated,
            0
        );
    }

    #[test]
    fn errors_carry_batchs_position() {
        let now = datetime!(2026-01-05 12:00 UTC);
        let cases = [
            (
                "something_useless",
                "Line 1, Col 1: Undefined symbol: something_useless",
            ),
            (
                "$TargetDedicatedNodes = 1;\n$TargetLowPriorityNodes = nope;",
                "Line 2, Col 27: Undefined symbol: nope",
            ),
            (
                "$TargetDedicatedNodes = (1 + ;",
                "Line 1, Col 30: Unexpected ';'",
            ),
            (
                "$TargetDedicatedNodes = 2 $x",
                "Line 1, Col 27: Expected ';'",
            ),
            (
                "$TargetDedicatedNodes = foo(1);",
                "Line 1, Col 25: Undefined function: foo",
            ),
            (
                "$CurrentDedicatedNodes = 1;",
                "Line 1, Col 1: Cannot assign to read-only symbol",
            ),
            (
                "$TargetDedicatedNodes = 1 # 2;",
                "Line 1, Col 27: Unexpected character: \'#\'",
            ),
        ];
        for (formula, expected) in cases {
            let error = evaluate(formula, &inputs(now, vec![]))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{formula}: {error}");
        }
    }

    #[test]
    fn arithmetic_and_defaults() {
        let now = datetime!(2026-01-05 12:00 UTC);
        let out = evaluate(
            "$TargetDedicatedNodes = 7 % 4 + -1; $TargetLowPriorityNodes = !0 ? ceil(2.2) : 9;",
            &inputs(now, vec![]),
        )
        .unwrap();
        assert_eq!(
            (
                out.target_dedicated,
                out.target_low_priority,
                out.deallocation.as_str()
            ),
            (2, 3, "requeue")
        );
        let last = evaluate(
            "$TargetDedicatedNodes = max($ActiveTasks.GetSample(1));",
            &inputs(now, vec![(now, 4, 1)]),
        )
        .unwrap();
        assert_eq!(last.target_dedicated, 4);
    }
}
