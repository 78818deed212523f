//! What a package's `postinst` certainly does on a first install, read without running it:
//! the script is evaluated the way `postinst configure` runs on a machine that never had the
//! package (`$1` is `configure`, `$2`, the old version, is empty), and every simple command it
//! certainly reaches, with every word known, is returned in order. The assembly picks the ones
//! it acts on (`ucf`, `a2enmod`, ...).
//!
//! The evaluation knows what can be known without a machine: variables in order, `if`, `elif`,
//! `else` and `case` on conditions it can decide (a comparison of known words, `-n`/`-z`,
//! `dpkg --compare-versions` against the empty old version, a debconf answer `db_get` reads,
//! which on a first install is the template's default, the status a function returns, and,
//! through [`Paths`], a file test or `command -v` the image answers), functions called with
//! their arguments, and `for` loops over known words. Whatever sits behind a condition it
//! cannot decide (another command's output or status), a `while` loop, or an unknown word, it
//! leaves out: a command counts only when it certainly runs.

use std::collections::BTreeMap;

/// A token of a shell script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word, quotes removed, `$(...)`, `${...}` and backquotes kept as written.
    Word(String),
    /// An operator: `;;`, `;`, `&&`, `||`, `|`, `&`, `(`, `)`, or `>` for any redirection.
    Op(&'static str),
    /// The end of a line.
    Nl,
}

/// Copy a `$(...)`, `${...}` or backquoted part into `word`, through its closing character.
fn nested(chars: &[char], mut i: usize, word: &mut String) -> usize {
    let (open, close) = match (chars[i], chars.get(i + 1)) {
        ('`', _) => ('`', '`'),
        ('$', Some('(')) => ('(', ')'),
        _ => ('{', '}'),
    };
    if open == '`' {
        word.push('`');
        i += 1;
        while i < chars.len() && chars[i] != '`' {
            word.push(chars[i]);
            i += 1;
        }
        if i < chars.len() {
            word.push('`');
            i += 1;
        }
        return i;
    }
    word.push('$');
    word.push(open);
    i += 2;
    let mut depth = 1;
    while i < chars.len() && depth > 0 {
        let c = chars[i];
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
        }
        word.push(c);
        i += 1;
    }
    i
}

/// Split a script into tokens (no expansion). Comments and line continuations go.
fn lex(script: &str) -> Vec<Tok> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    // A word was started (so an empty quoted word counts).
    let mut started = false;
    // Here-documents whose lines start at the next new line: delimiter, `<<-`.
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    let flush = |out: &mut Vec<Tok>, word: &mut String, started: &mut bool| {
        if *started {
            out.push(Tok::Word(std::mem::take(word)));
            *started = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\\' => {
                if let Some(n) = chars.get(i + 1) {
                    word.push(*n);
                }
                started = true;
                i += 2;
            }
            '#' if !started => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' | '\r' => {
                flush(&mut out, &mut word, &mut started);
                i += 1;
            }
            '\n' => {
                flush(&mut out, &mut word, &mut started);
                out.push(Tok::Nl);
                i += 1;
                for (delim, strip) in std::mem::take(&mut heredocs) {
                    while i < chars.len() {
                        let end = chars[i..]
                            .iter()
                            .position(|c| *c == '\n')
                            .map_or(chars.len(), |n| i + n);
                        let line: String = chars[i..end].iter().collect();
                        i = (end + 1).min(chars.len());
                        let line = if strip {
                            line.trim_start_matches('\t')
                        } else {
                            &line
                        };
                        if line == delim {
                            break;
                        }
                    }
                }
            }
            '\'' => {
                started = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                started = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            word.push(chars[i + 1]);
                            i += 2;
                        }
                        '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
                        '`' => i = nested(&chars, i, &mut word),
                        '$' if matches!(chars.get(i + 1), Some('(' | '{')) => {
                            i = nested(&chars, i, &mut word)
                        }
                        ch => {
                            word.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '`' => {
                started = true;
                i = nested(&chars, i, &mut word);
            }
            '$' if matches!(chars.get(i + 1), Some('(' | '{')) => {
                started = true;
                i = nested(&chars, i, &mut word);
            }
            '<' if chars.get(i + 1) == Some(&'<') && chars.get(i + 2) != Some(&'<') => {
                // A here-document: its lines are data, never commands. They start at the
                // next line and end at the delimiter's own line (tabs before it go with `<<-`).
                flush(&mut out, &mut word, &mut started);
                i += 2;
                let strip = chars.get(i) == Some(&'-');
                if strip {
                    i += 1;
                }
                while i < chars.len() && matches!(chars[i], ' ' | '\t') {
                    i += 1;
                }
                let mut delim = String::new();
                while i < chars.len()
                    && !matches!(
                        chars[i],
                        ' ' | '\t' | '\n' | ';' | '|' | '&' | '>' | '<' | ')'
                    )
                {
                    if !matches!(chars[i], '\'' | '"' | '\\') {
                        delim.push(chars[i]);
                    }
                    i += 1;
                }
                out.push(Tok::Op(">"));
                out.push(Tok::Word(delim.clone()));
                heredocs.push((delim, strip));
            }
            '>' | '<' => {
                // A file descriptor number before it belongs to the redirection.
                if started && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    started = false;
                }
                flush(&mut out, &mut word, &mut started);
                i += 1;
                while i < chars.len() && matches!(chars[i], '>' | '&' | '|') {
                    i += 1;
                }
                out.push(Tok::Op(">"));
            }
            ';' | '&' | '|' | '(' | ')' => {
                flush(&mut out, &mut word, &mut started);
                let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let op = match two.as_str() {
                    ";;" => ";;",
                    "&&" => "&&",
                    "||" => "||",
                    _ => match c {
                        ';' => ";",
                        '&' => "&",
                        '|' => "|",
                        '(' => "(",
                        _ => ")",
                    },
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            _ => {
                word.push(c);
                started = true;
                i += 1;
            }
        }
    }
    flush(&mut out, &mut word, &mut started);
    out
}

/// What is known of a condition or of whether a command runs.
pub type Known = Option<bool>;

fn and(a: Known, b: Known) -> Known {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn not(a: Known) -> Known {
    a.map(|b| !b)
}

fn or(a: Known, b: Known) -> Known {
    not(and(not(a), not(b)))
}

/// What the image answers about a path: `test(path, op)` for `[ -OP PATH ]` with `op` one of
/// `e f d L h x s r w` (following links as `test` does, but for `L` and `h`), for `c`,
/// whether `command -v PATH` finds it, and for `o`, whether `dpkg-statoverride --list PATH`
/// does. `None` when it cannot say.
pub type Paths<'a> = &'a dyn Fn(&str, char) -> Known;

/// An open compound command.
#[derive(Debug)]
enum Frame {
    /// `if`: whether the branch being read runs, and whether an earlier branch did.
    If { now: Known, taken: Known },
    /// `case`: its word (where known), whether the arm being read runs, whether an earlier
    /// arm did, and whether a pattern list comes next.
    Case {
        word: Option<String>,
        arm: Known,
        taken: Known,
        patterns_next: bool,
    },
    /// A `{ }` or `( )` group, a `while` loop, a function's call: whether its body runs.
    Block { runs: Known, close: &'static str },
    /// A function's definition (its body does not run here): its name and first token.
    Define { name: String, start: usize },
    /// A `for` loop: whether its body runs, the variable, the values still to come, and
    /// where its body starts (after `do`).
    For {
        runs: Known,
        var: String,
        rest: Vec<String>,
        body: Option<usize>,
    },
}

impl Frame {
    fn runs(&self) -> Known {
        match self {
            Frame::If { now, .. } => *now,
            Frame::Case { arm, .. } => *arm,
            Frame::Block { runs, .. } | Frame::For { runs, .. } => *runs,
            Frame::Define { .. } => Some(false),
        }
    }
}

/// Whether the body of every frame runs (a frame known not to run decides it even where
/// another is not known, so this is no short-circuiting fold).
fn all_run(frames: &[Frame]) -> Known {
    let mut k = Some(true);
    for f in frames {
        k = and(k, f.runs());
    }
    k
}

/// A variable: its value (`None` once it is not known), the depth it was set at, and whether
/// the command that set it certainly ran.
struct Var {
    value: Option<String>,
    depth: usize,
    certain: bool,
}

/// How deep functions may call each other, and how many tokens an evaluation may read (a
/// script is short; this bounds a pathological one).
const MAX_CALLS: usize = 16;
const MAX_STEPS: usize = 1_000_000;

struct Eval<'a> {
    toks: Vec<Tok>,
    frames: Vec<Frame>,
    vars: BTreeMap<String, Var>,
    /// The positional parameters.
    args: Vec<String>,
    defaults: &'a BTreeMap<String, String>,
    paths: Paths<'a>,
    functions: BTreeMap<String, (usize, usize)>,
    /// A function's name was just read (`name()`): the next `{` opens its body.
    function_next: Option<String>,
    /// The commands that certainly run, expanded.
    ran: Vec<Vec<String>>,
    calls: usize,
    steps: usize,
    /// A `return` or `exit` certainly ran: the rest of the function (or script) does not.
    returning: bool,
    /// One may have run: nothing after it is certain.
    maybe_returned: bool,
    /// What the last `return` said (0 is true).
    returned: Known,
    /// The script certainly exited.
    exited: bool,
    /// The token being read (where a `}` closing a function's body is).
    at: usize,
}

fn name_ok(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Eval<'_> {
    /// Whether the command being read certainly runs.
    fn here(&self) -> Known {
        if self.maybe_returned {
            and(all_run(&self.frames), None)
        } else {
            all_run(&self.frames)
        }
    }

    /// `word` with its variables and parameters replaced; `None` when a part is not known.
    fn expand(&self, word: &str) -> Option<String> {
        // `$(dirname PATH)` and `$(basename PATH)` (or in backquotes) as a whole word: what
        // they print, which needs nothing but the word.
        let inner = word
            .strip_prefix("$(")
            .and_then(|w| w.strip_suffix(')'))
            .or_else(|| word.strip_prefix('`').and_then(|w| w.strip_suffix('`')));
        if let Some(cmd) = inner {
            let mut parts = cmd.split_whitespace();
            let (tool, arg) = (parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let arg = self.expand(arg.trim_matches('"'))?;
            let trimmed = arg.trim_end_matches('/');
            return match tool {
                "dirname" => Some(match trimmed.rsplit_once('/') {
                    Some(("", _)) => "/".to_string(),
                    Some((d, _)) => d.to_string(),
                    None => ".".to_string(),
                }),
                "basename" => Some(trimmed.rsplit('/').next()?.to_string()),
                _ => None,
            };
        }
        let out = super::accounts::substitute(word, |name| match name {
            "#" => Some(self.args.len().to_string()),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = n.parse().ok()?;
                // `$0` is the script: not a word anything here needs.
                (i > 0).then(|| self.args.get(i - 1).cloned().unwrap_or_default())
            }
            n if name_ok(n) => self.vars.get(n)?.value.clone(),
            _ => None,
        })?;
        (!out.contains(['`', '*', '?', '[', '(', ')', '$'])).then_some(out)
    }

    /// A command's words expanded, `$@` and `$*` as the parameters that are not empty (as
    /// unquoted; the quotes are gone by now); `None` when one is not known.
    fn expand_all(&self, words: &[String]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for w in words {
            if matches!(w.as_str(), "$@" | "$*" | "${@}" | "${*}") {
                out.extend(self.args.iter().filter(|a| !a.is_empty()).cloned());
            } else {
                out.push(self.expand(w)?);
            }
        }
        Some(out)
    }

    fn set(&mut self, name: &str, value: Option<String>, certain: bool) {
        let depth = self.frames.len();
        self.vars.insert(
            name.to_string(),
            Var {
                value,
                depth,
                certain,
            },
        );
    }

    /// Close the innermost frame: what was set in it only where it may not have run is no
    /// longer known.
    fn pop(&mut self) {
        if let Some(Frame::Define { name, start }) = self.frames.pop() {
            // Its body ends at the `}` being read.
            self.functions.insert(name, (start, self.at));
        }
        let depth = self.frames.len();
        for v in self.vars.values_mut() {
            if v.depth > depth {
                if !v.certain {
                    v.value = None;
                }
                v.depth = depth;
            }
        }
    }
}

impl Eval<'_> {
    /// What a command used as a condition returns, where known (a function's status comes
    /// from its call).
    fn test(&self, words: &[String]) -> Known {
        let (neg, w) = match words.split_first() {
            Some((b, rest)) if b == "!" => (true, rest),
            _ => (false, words),
        };
        // `if $flag`: the command a variable names.
        let expanded;
        let w = match w.first() {
            Some(f) if f.contains('$') => {
                expanded = [vec![self.expand(f)?], w[1..].to_vec()].concat();
                &expanded[..]
            }
            _ => w,
        };
        let k = self.test_plain(w);
        if neg {
            not(k)
        } else {
            k
        }
    }

    fn test_plain(&self, w: &[String]) -> Known {
        let first = w.first()?.as_str();
        // The tool `$(command -v NAME)` or a path names.
        let tool = |x: &str| -> Option<String> {
            let x = x.strip_prefix("$(command -v ")?.strip_suffix(')')?;
            Some(x.trim().to_string())
        };
        match first {
            "true" | ":" => return Some(true),
            "false" => return Some(false),
            "command" if w.get(1).map(String::as_str) == Some("-v") => {
                return (self.paths)(&self.expand(w.get(2)?)?, 'c');
            }
            "which" => return (self.paths)(&self.expand(w.get(1)?)?, 'c'),
            "dpkg" if w.get(1).map(String::as_str) == Some("--compare-versions") => {
                // An empty version (no old version on a first install) is earlier than any.
                let (a, op, b) = (self.expand(w.get(2)?)?, w.get(3)?, self.expand(w.get(4)?)?);
                if !a.is_empty() || b.is_empty() {
                    return None;
                }
                return match op.as_str() {
                    "lt" | "le" | "<<" | "<=" | "ne" => Some(true),
                    "gt" | "ge" | ">>" | ">=" | "eq" => Some(false),
                    _ => None,
                };
            }
            // Whether an override of the path is recorded: on a first install, only one an
            // earlier script added.
            "dpkg-statoverride" if w.get(1).map(String::as_str) == Some("--list") => {
                return (self.paths)(&self.expand(w.get(2)?)?, 'o');
            }
            "[" | "test" => {}
            f if self.functions.contains_key(f) => return self.returned,
            _ => return None,
        }
        let mut args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
        if first == "[" {
            if args.last() != Some(&"]") {
                return None;
            }
            args.pop();
        }
        // `-x "$(command -v NAME)"`: whether NAME is there to run.
        if let ["-x", p] = args.as_slice() {
            if let Some(t) = tool(p) {
                return (self.paths)(&t, 'c');
            }
        }
        self.expression(&args)
    }

    /// A `test` expression: `-o` joins `-a` joins terms, each maybe after `!`.
    fn expression(&self, args: &[&str]) -> Known {
        if let Some(at) = args.iter().position(|a| *a == "-o") {
            return or(
                self.expression(&args[..at]),
                self.expression(&args[at + 1..]),
            );
        }
        if let Some(at) = args.iter().position(|a| *a == "-a") {
            return and(
                self.expression(&args[..at]),
                self.expression(&args[at + 1..]),
            );
        }
        match args {
            ["!", rest @ ..] => not(self.expression(rest)),
            [a] => Some(!self.expand(a)?.is_empty()),
            ["-n", a] => Some(!self.expand(a)?.is_empty()),
            ["-z", a] => Some(self.expand(a)?.is_empty()),
            [op, p] if op.len() == 2 && op.starts_with('-') => {
                let c = op.chars().nth(1)?;
                if !"efdLhxsrw".contains(c) {
                    return None;
                }
                let p = self.expand(p)?;
                if p.starts_with('/') {
                    (self.paths)(&p, c)
                } else {
                    None
                }
            }
            [a, op @ ("=" | "==" | "!="), b] => {
                let same = self.expand(a)? == self.expand(b)?;
                Some(if *op == "!=" { !same } else { same })
            }
            _ => None,
        }
    }

    /// Run one simple command whose running is `runs`.
    fn command(&mut self, words: &[String], runs: Known) {
        if runs == Some(false) || words.is_empty() {
            return;
        }
        let certain = runs == Some(true);
        // `! cmd` runs cmd.
        let words = match words.split_first() {
            Some((b, rest)) if b == "!" => rest,
            _ => words,
        };
        if words.is_empty() {
            return;
        }
        // Assignments alone set variables; before a command, only its environment.
        let assigns = words
            .iter()
            .take_while(|w| w.split_once('=').is_some_and(|(n, _)| name_ok(n)))
            .count();
        if assigns == words.len() {
            for w in words {
                let (n, v) = w.split_once('=').unwrap_or_default();
                let value = self.expand(v);
                self.set(n, value, certain);
            }
            return;
        }
        let words = &words[assigns..];
        let first = words[0].as_str();
        match first {
            "export" | "readonly" | "local" | "unset" | "read" | "getopts" => {
                for w in &words[1..] {
                    let (n, v) = match w.split_once('=') {
                        Some((n, v)) if !matches!(first, "read" | "unset") => (n, self.expand(v)),
                        _ => (w.as_str(), None),
                    };
                    if name_ok(n) {
                        self.set(n, v, certain);
                    }
                }
                return;
            }
            "db_get" => {
                let value = words.get(1).and_then(|t| self.defaults.get(t)).cloned();
                self.set("RET", value, certain);
                return;
            }
            "return" | "exit" => {
                let code = words.get(1).and_then(|c| self.expand(c));
                let ok = match code.as_deref() {
                    None => None,
                    Some(c) => c.parse::<i64>().ok().map(|c| c == 0),
                };
                if certain {
                    self.returned = ok;
                    self.returning = true;
                    self.exited |= first == "exit";
                } else {
                    self.returned = None;
                    self.maybe_returned = true;
                }
                return;
            }
            "break" | "continue" => {
                // The loop it leaves (or goes on with) runs no further certainly; a certain
                // `break` ends it.
                if let Some(Frame::For { runs: r, rest, .. }) = self
                    .frames
                    .iter_mut()
                    .rev()
                    .find(|f| matches!(f, Frame::For { .. }))
                {
                    if certain && first == "break" {
                        *r = Some(false);
                        rest.clear();
                    } else {
                        *r = and(*r, None);
                    }
                }
                return;
            }
            _ => {}
        }
        if let Some(&(start, end)) = self.functions.get(first) {
            let Some(args) = self.expand_all(&words[1..]) else {
                // Arguments not known: what it does is not either.
                self.call(start, end, None, Vec::new());
                self.returned = None;
                return;
            };
            self.call(start, end, runs, args);
            return;
        }
        if certain {
            if let Some(w) = self.expand_all(words) {
                self.ran.push(w);
            }
        }
    }

    /// Run a function's body with `args`.
    fn call(&mut self, start: usize, end: usize, runs: Known, args: Vec<String>) {
        if self.calls >= MAX_CALLS {
            self.returned = None;
            return;
        }
        self.calls += 1;
        let saved_args = std::mem::replace(&mut self.args, args);
        let saved_maybe = std::mem::take(&mut self.maybe_returned);
        let base = self.frames.len();
        self.frames.push(Frame::Block {
            runs,
            close: "call",
        });
        self.returned = None;
        self.walk(start, end);
        while self.frames.len() > base {
            self.pop();
        }
        if !self.returning && !self.maybe_returned {
            // It ran to its end: its status is its last command's, not known here.
            self.returned = None;
        }
        if self.maybe_returned {
            self.returned = None;
        }
        if !self.exited {
            self.returning = false;
        }
        self.maybe_returned = saved_maybe;
        self.args = saved_args;
        self.calls -= 1;
    }

    /// Read one and-or list (simple commands joined by `&&` and `||`) where it runs as
    /// `runs` says; returns what the list is known to return.
    fn list(&mut self, cmds: &[(Vec<String>, &'static str)], runs: Known) -> Known {
        let mut result: Known = Some(true);
        for (n, (words, joined)) in cmds.iter().enumerate() {
            let this_runs = match (n, *joined) {
                (0, _) => runs,
                (_, "&&") => and(runs, result),
                _ => and(runs, not(result)),
            };
            self.command(words, this_runs);
            let r = self.test(words);
            result = match (n, *joined) {
                (0, _) => r,
                (_, "&&") => and(result, r),
                _ => or(result, r),
            };
            if self.returning {
                break;
            }
        }
        result
    }

    /// Evaluate the tokens from `from` to `to`.
    fn walk(&mut self, from: usize, to: usize) {
        let mut i = from;
        while i < to && !self.returning {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                self.maybe_returned = true;
                self.returning = true;
                return;
            }
            // A case's pattern list: words joined by `|`, up to `)`.
            if let Some(Frame::Case {
                patterns_next: true,
                ..
            }) = self.frames.last()
            {
                match &self.toks[i] {
                    Tok::Nl | Tok::Op(";") => {
                        i += 1;
                        continue;
                    }
                    Tok::Word(w) if w == "esac" => {
                        self.pop();
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                let mut patterns = Vec::new();
                while i < to && self.toks[i] != Tok::Op(")") {
                    if let Tok::Word(w) = &self.toks[i] {
                        patterns.push(self.expand(w));
                    }
                    i += 1;
                }
                i += 1;
                if let Some(Frame::Case {
                    word,
                    arm,
                    taken,
                    patterns_next,
                }) = self.frames.last_mut()
                {
                    let exact = |p: &Option<String>| {
                        p.as_deref()
                            .is_some_and(|p| p == "*" || Some(p) == word.as_deref())
                    };
                    let matches: Known = if word.is_none() {
                        None
                    } else if patterns.iter().any(exact) {
                        Some(true)
                    } else if patterns.iter().any(Option::is_none) {
                        // A pattern that is not a plain word may match too.
                        None
                    } else {
                        Some(false)
                    };
                    *arm = and(not(*taken), matches);
                    *taken = or(*taken, matches);
                    *patterns_next = false;
                }
                continue;
            }
            // One and-or list, up to `;`, `;;`, `&`, a new line, or a `(`/`)` that groups.
            let list_start = i;
            let mut cmds: Vec<(Vec<String>, &'static str)> = Vec::new();
            let mut words: Vec<String> = Vec::new();
            let mut joined: &'static str = "";
            let mut end: Option<&'static str> = None;
            let mut redirect = false;
            let mut piped = false;
            while i < to {
                match &self.toks[i] {
                    Tok::Word(w) => {
                        if !std::mem::take(&mut redirect) {
                            words.push(w.clone());
                        }
                    }
                    Tok::Op(">") => redirect = true,
                    Tok::Op(op @ ("&&" | "||")) => {
                        cmds.push((std::mem::take(&mut words), joined));
                        joined = op;
                    }
                    Tok::Op("|") => piped = true,
                    Tok::Op("(") if words.is_empty() => {
                        end = Some("(");
                        i += 1;
                        break;
                    }
                    Tok::Op("(")
                        if words.len() == 1 && self.toks.get(i + 1) == Some(&Tok::Op(")")) =>
                    {
                        // `name()`: a function's definition.
                        self.function_next = words.pop();
                        i += 2;
                        continue;
                    }
                    Tok::Op(op) => {
                        end = Some(op);
                        i += 1;
                        break;
                    }
                    Tok::Nl => {
                        end = Some("\n");
                        i += 1;
                        break;
                    }
                }
                i += 1;
            }
            if !words.is_empty() || cmds.is_empty() {
                cmds.push((words, joined));
            }
            // Keywords at the start of the list.
            let mut first = std::mem::take(&mut cmds[0].0);
            let mut at = list_start;
            while let Some(k) = first.first().cloned() {
                self.at = at;
                at += 1;
                match k.as_str() {
                    "then" => {
                        first.remove(0);
                    }
                    "do" => {
                        first.remove(0);
                        if let Some(Frame::For { body: b @ None, .. }) = self.frames.last_mut() {
                            *b = Some(at);
                        }
                    }
                    "else" => {
                        first.remove(0);
                        if let Some(Frame::If { now, taken }) = self.frames.last_mut() {
                            *now = not(*taken);
                            *taken = Some(true);
                        }
                    }
                    "done" => {
                        first.remove(0);
                        // The next value of a `for` loop goes round its body again.
                        if let Some(Frame::For {
                            var,
                            rest,
                            body: Some(b),
                            runs,
                        }) = self.frames.last_mut()
                        {
                            if !rest.is_empty() {
                                let (var, value, b, certain) =
                                    (var.clone(), rest.remove(0), *b, *runs == Some(true));
                                self.set(&var, Some(value), certain);
                                i = b;
                                first.clear();
                                end = None;
                                break;
                            }
                        }
                        self.pop();
                    }
                    "fi" | "esac" | "}" => {
                        first.remove(0);
                        self.pop();
                    }
                    "{" => {
                        first.remove(0);
                        match self.function_next.take() {
                            Some(name) => self.frames.push(Frame::Define { name, start: at }),
                            None => {
                                let runs = self.here();
                                self.frames.push(Frame::Block { runs, close: "}" });
                            }
                        }
                    }
                    "function" => {
                        // `function name {`
                        self.function_next = first.get(1).cloned();
                        first.drain(..first.len().min(2));
                    }
                    "for" => {
                        // `for VAR in WORDS...` (`do` follows); over known words it runs its
                        // body once for each.
                        let var = first.get(1).filter(|v| name_ok(v)).cloned();
                        let values = match first.get(2).map(String::as_str) {
                            Some("in") => self.expand_all(&first[3..]),
                            _ => None,
                        };
                        let here = self.here();
                        first.clear();
                        let Some(var) = var else {
                            self.frames.push(Frame::Block {
                                runs: Some(false),
                                close: "done",
                            });
                            continue;
                        };
                        match values {
                            Some(mut v) if !v.is_empty() => {
                                let value = v.remove(0);
                                self.set(&var, Some(value), here == Some(true));
                                self.frames.push(Frame::For {
                                    runs: here,
                                    var,
                                    rest: v,
                                    body: None,
                                });
                            }
                            Some(_) => self.frames.push(Frame::For {
                                runs: Some(false),
                                var,
                                rest: Vec::new(),
                                body: None,
                            }),
                            None => {
                                self.set(&var, None, false);
                                self.frames.push(Frame::For {
                                    runs: and(here, None),
                                    var,
                                    rest: Vec::new(),
                                    body: None,
                                });
                            }
                        }
                    }
                    "while" | "until" => {
                        first.remove(0);
                        let runs = and(self.here(), None);
                        self.frames.push(Frame::Block {
                            runs,
                            close: "done",
                        });
                    }
                    _ => break,
                }
            }
            cmds[0].0 = first;
            let head = cmds[0].0.first().cloned().unwrap_or_default();
            match head.as_str() {
                "if" | "elif" => {
                    cmds[0].0.remove(0);
                    let elif = head == "elif";
                    // An elif's condition runs where its if stands and no earlier branch ran.
                    let (outside, taken) = match (elif, self.frames.split_last()) {
                        (true, Some((Frame::If { taken, .. }, rest))) => (all_run(rest), *taken),
                        _ => (self.here(), Some(false)),
                    };
                    let cond = if piped {
                        None
                    } else {
                        self.list(&cmds, and(outside, not(taken)))
                    };
                    if elif {
                        if let Some(Frame::If { now, taken }) = self.frames.last_mut() {
                            *now = and(not(*taken), cond);
                            *taken = or(*taken, cond);
                        }
                    } else {
                        self.frames.push(Frame::If {
                            now: cond,
                            taken: cond,
                        });
                    }
                }
                "case" => {
                    let word = cmds[0].0.get(1).and_then(|w| self.expand(w));
                    self.frames.push(Frame::Case {
                        word,
                        arm: None,
                        taken: Some(false),
                        patterns_next: true,
                    });
                }
                _ => {
                    // A pipeline's commands run in subshells: nothing they set stays, and
                    // none of the helpers the assembly stands in for is piped.
                    if !piped {
                        let runs = self.here();
                        self.list(&cmds, runs);
                    }
                }
            }
            match end {
                Some(";;") => {
                    if let Some(Frame::Case { patterns_next, .. }) = self.frames.last_mut() {
                        *patterns_next = true;
                    }
                }
                Some("(") => {
                    let runs = self.here();
                    self.frames.push(Frame::Block { runs, close: ")" });
                }
                Some(")") => {
                    if matches!(self.frames.last(), Some(Frame::Block { close: ")", .. })) {
                        self.pop();
                    }
                }
                _ => {}
            }
        }
    }
}

/// The `Default` of each template in a package's debconf `templates` file.
pub fn template_defaults(templates: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for para in templates.split("\n\n") {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        if let (Some(t), Some(d)) = (field("Template"), field("Default")) {
            out.insert(t, d);
        }
    }
    out
}

/// The simple commands a `postinst` certainly runs on a first configure, in order, each with
/// every word known; `defaults` are its package's debconf template defaults, `paths` what the
/// image says about a path.
pub fn first_configure(
    script: &str,
    defaults: &BTreeMap<String, String>,
    paths: Paths,
) -> Vec<Vec<String>> {
    let toks = lex(script);
    let n = toks.len();
    let mut e = Eval {
        toks,
        frames: Vec::new(),
        vars: BTreeMap::new(),
        args: vec!["configure".to_string(), String::new()],
        defaults,
        paths,
        functions: BTreeMap::new(),
        function_next: None,
        ran: Vec::new(),
        calls: 0,
        steps: 0,
        returning: false,
        maybe_returned: false,
        returned: None,
        exited: false,
        at: 0,
    };
    e.walk(0, n);
    e.ran
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands of `script` that start with one of `tools`, as single strings.
    fn ran(script: &str, defaults: &BTreeMap<String, String>, tools: &[&str]) -> Vec<String> {
        // An image with ucf and apache's helpers, that cannot say what else it has.
        let helpers = |p: &str, op: char| match op {
            'c' => Some(matches!(
                p,
                "ucf" | "ucfr" | "a2enmod" | "a2enconf" | "a2ensite"
            )),
            _ => None,
        };
        ran_in(script, defaults, &helpers, tools)
    }

    /// [`ran`] in an image that answers path questions with `paths`.
    fn ran_in(
        script: &str,
        defaults: &BTreeMap<String, String>,
        paths: Paths,
        tools: &[&str],
    ) -> Vec<String> {
        first_configure(script, defaults, paths)
            .into_iter()
            .filter(|c| tools.contains(&c[0].as_str()))
            .map(|c| c.join(" "))
            .collect()
    }

    #[test]
    fn the_lexer_keeps_quotes_substitutions_and_operators_apart() {
        let t = lex("a \"b c\" 'd;e' $(x \"y\") ${z} 2>/dev/null;; f&&g||h|i # c\n(j)");
        let w = |s: &str| Tok::Word(s.into());
        assert_eq!(
            t,
            [
                w("a"),
                w("b c"),
                w("d;e"),
                w("$(x \"y\")"),
                w("${z}"),
                Tok::Op(">"),
                w("/dev/null"),
                Tok::Op(";;"),
                w("f"),
                Tok::Op("&&"),
                w("g"),
                Tok::Op("||"),
                w("h"),
                Tok::Op("|"),
                w("i"),
                Tok::Nl,
                Tok::Op("("),
                w("j"),
                Tok::Op(")"),
            ]
        );
    }

    #[test]
    fn here_documents_are_data() {
        let script = "cat > /etc/x <<-EOF\n\trm -f /etc/passwd\n\tEOF\ntouch /a\n\
            grep -q x <<'END' && touch /b\nrm -f /etc/shadow\nEND\ntouch /c\n";
        assert_eq!(
            ran(script, &BTreeMap::new(), &["rm", "touch"]),
            ["touch /a", "touch /c"]
        );
    }

    #[test]
    fn the_configure_arm_runs_and_conditions_it_cannot_decide_are_left_out() {
        // As chrony's postinst: ucf behind `command -v ucf`, statoverrides behind another
        // command's output, a migration only for upgrades, other arms.
        let script = r#"#!/bin/sh
set -e
case "$1" in
    configure)
        adduser --system --group --home /var/lib/chrony --no-create-home _chrony
        if command -v ucf >/dev/null
        then
            ucf --three-way /usr/share/chrony/chrony.conf /etc/chrony/chrony.conf
            if [ -x "$(command -v ucfr)" ]; then
                ucfr chrony /etc/chrony/chrony.conf
            fi
        fi
        if ! chronyd -p | grep -q "^user"; then
            dpkg-statoverride --update --add _chrony _chrony 0750 /var/lib/chrony
        fi
        if [ -n "$2" ] && dpkg --compare-versions "$2" lt 4.0~pre4-1; then
            ucf /usr/share/chrony/old /etc/chrony/old
        fi
    ;;
    abort-upgrade|abort-remove|abort-deconfigure)
        ucf /usr/share/chrony/abort /etc/chrony/abort
    ;;
    *)
        echo "postinst called with unknown argument \`$1'" >&2
        exit 1
    ;;
esac
exit 0
ucf /after/exit /etc/never
"#;
        assert_eq!(
            ran(
                script,
                &BTreeMap::new(),
                &["adduser", "ucf", "ucfr", "dpkg-statoverride", "echo"]
            ),
            [
                "adduser --system --group --home /var/lib/chrony --no-create-home _chrony",
                "ucf --three-way /usr/share/chrony/chrony.conf /etc/chrony/chrony.conf",
                "ucfr chrony /etc/chrony/chrony.conf",
            ]
        );
    }

    #[test]
    fn a_debconf_answer_picks_the_branch_and_variables_follow_the_script() {
        // As unattended-upgrades' postinst: the file to install depends on a debconf
        // boolean; the same variables name another file further down.
        let script = r#"#!/bin/sh
set -e
. /usr/share/debconf/confmodule
case "$1" in
    configure)
        db_get unattended-upgrades/enable_auto_updates || true
	CONFIG="/etc/apt/apt.conf.d/20auto-upgrades"
        if [ "${RET}" = "true" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
        elif [ "${RET}" = "false" ] && [ -e "$CONFIG" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades-disabled"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
        fi
	CONFIG="/etc/apt/apt.conf.d/50unattended-upgrades"
	NEWFILE="/usr/share/unattended-upgrades/50unattended-upgrades"
        if dpkg --compare-versions "$2" lt "1.8~" \
	        && [ -e $CONFIG.ucftmp ]; then
	    mv $CONFIG.ucftmp $CONFIG
	fi
	ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
        ;;
esac
"#;
        let templates = "Template: unattended-upgrades/enable_auto_updates\nType: boolean\n\
            Default: true\nDescription: Automatically?\n Long text.\n\n\
            Template: other/x\nType: string\n";
        let defaults = template_defaults(templates);
        assert_eq!(
            defaults.get("unattended-upgrades/enable_auto_updates"),
            Some(&"true".to_string())
        );
        let first = "ucf --three-way --debconf-ok /usr/share/unattended-upgrades/20auto-upgrades /etc/apt/apt.conf.d/20auto-upgrades";
        let second = "ucf --three-way --debconf-ok /usr/share/unattended-upgrades/50unattended-upgrades /etc/apt/apt.conf.d/50unattended-upgrades";
        assert_eq!(ran(script, &defaults, &["ucf", "mv"]), [first, second]);
        // Answered false, the disabled file would go in only over an existing one: unknown.
        let off: BTreeMap<String, String> = [(
            "unattended-upgrades/enable_auto_updates".to_string(),
            "false".to_string(),
        )]
        .into();
        assert_eq!(ran(script, &off, &["ucf"]), [second]);
        // Without the template the answer is not known, and neither is the first file.
        assert_eq!(ran(script, &BTreeMap::new(), &["ucf"]), [second]);
    }

    #[test]
    fn functions_run_with_their_arguments_and_loops_over_known_words_unroll() {
        // As apache2's postinst: helpers called with "$@", a fresh-install test returning a
        // status, loops over module names, a loop left early.
        let script = r#"#!/bin/sh
set -e
is_fresh_install()
{
	if [ -z "$2" ] ; then
		return 0
	fi
	return 1
}
enable_default_modules()
{
	if is_fresh_install $@; then
		for module in authz_host auth_basic \
				alias dir ; do
			a2enmod -m -q $module
		done
	fi
}
has_index() {
	[ -e /var/www/html/index.html ] && return 0
	return 1
}
site() {
	local name="$1" copy=true
	if $copy; then
		a2ensite -q "$name"
	fi
}
case "$1" in
	configure)
		enable_default_modules $@
		if has_index; then a2enconf never; fi
		if ! is_fresh_install $@; then a2enmod upgrade-only; fi
		site 000-default
		for conf in charset security; do
			a2enconf -m -q $conf
			if [ "$conf" = charset ]; then break; fi
		done
		for f in $(ls /x); do a2enconf unknown-$f; done
		while true; do a2enconf in-a-while; break; done
	;;
esac
"#;
        assert_eq!(
            ran(
                script,
                &BTreeMap::new(),
                &["a2enmod", "a2ensite", "a2enconf"]
            ),
            [
                "a2enmod -m -q authz_host",
                "a2enmod -m -q auth_basic",
                "a2enmod -m -q alias",
                "a2enmod -m -q dir",
                "a2ensite -q 000-default",
                "a2enconf -m -q charset",
            ]
        );
    }

    #[test]
    fn file_tests_and_command_lookups_are_what_the_image_answers() {
        let script = r#"
if [ ! -L /etc/a2/sites-enabled/000.conf -a ! -f /etc/a2/sites-enabled/000.conf ]; then
    a2ensite -q 000
fi
if [ -d /etc/present ] || [ -e /etc/absent ]; then a2enconf dir-or-absent; fi
if [ -e /etc/absent -o -x /usr/bin/tool ]; then a2enconf executable; fi
if command -v update-binfmts >/dev/null; then update-binfmts --import x; fi
if [ -x "$(command -v ucf)" ]; then ucf /usr/share/u /etc/u; fi
[ -e relative ] && a2enconf relative
LOCAL_APP_PROFILE="/etc/apparmor.d/local/usr.sbin.x"
test -e "$LOCAL_APP_PROFILE" || {
    mkdir -p `dirname "$LOCAL_APP_PROFILE"`
    install --mode 644 /dev/null "$LOCAL_APP_PROFILE"
    touch /tmp/$(basename $LOCAL_APP_PROFILE) $(dirname /x)
}
Setup_dir () {
	DIR="${1}"
	mkdir -p ${DIR}
	if ! dpkg-statoverride --list ${DIR} >/dev/null 2>&1
	then
		chown redis ${DIR}
	fi
}
Setup_dir /var/lib/redis
Setup_dir /var/lib/overridden
"#;
        let image = |p: &str, op: char| -> Known {
            Some(match (op, p) {
                ('L' | 'f' | 'e', "/etc/a2/sites-enabled/000.conf") => false,
                ('d', "/etc/present") => true,
                ('e', "/etc/absent") => false,
                ('x', "/usr/bin/tool") => true,
                ('c', "ucf") => true,
                ('c', _) => false,
                ('o', p) => p == "/var/lib/overridden",
                ('e', "/etc/apparmor.d/local/usr.sbin.x") => false,
                _ => return None,
            })
        };
        assert_eq!(
            ran_in(
                script,
                &BTreeMap::new(),
                &image,
                &[
                    "a2ensite",
                    "a2enconf",
                    "update-binfmts",
                    "ucf",
                    "mkdir",
                    "chown",
                    "install",
                    "touch"
                ]
            ),
            [
                "a2ensite -q 000",
                "a2enconf dir-or-absent",
                "a2enconf executable",
                "ucf /usr/share/u /etc/u",
                "mkdir -p /etc/apparmor.d/local",
                "install --mode 644 /dev/null /etc/apparmor.d/local/usr.sbin.x",
                "mkdir -p /var/lib/redis",
                "chown redis /var/lib/redis",
                "mkdir -p /var/lib/overridden",
            ]
        );
        // Where the image cannot say, nothing behind a file test runs.
        assert!(ran_in(
            script,
            &BTreeMap::new(),
            &|_, _| None,
            &["a2ensite", "a2enconf"]
        )
        .is_empty());
    }

    #[test]
    fn what_a_script_does_not_certainly_run_is_left_out() {
        let script = r#"
tmp=$(mktemp)
ucf --debconf-ok $tmp /etc/from-a-temp-file
if [ -d /etc/x ]; then ucf /usr/share/x /etc/x/conf; fi
[ -e /etc/y ] && ucf /usr/share/y /etc/y
true && ucf /usr/share/z /etc/z
false || ucf /usr/share/w /etc/w
if [ "$1" = "configure" ]; then ucf /usr/share/v /etc/v; else ucf /usr/share/nv /etc/nv; fi
( ucf /usr/share/sub /etc/sub )
X=/usr/share/one
X=/usr/share/two
ucf $X /etc/two
Y=/usr/share/y1
if [ -e /etc/q ]; then Y=/usr/share/y2; fi
ucf $Y /etc/maybe
f() { return 0; }
g() { ucf /usr/share/g /etc/g; }
if [ -e /etc/r ]; then return 0; fi
ucf /usr/share/after-a-maybe-return /etc/m
"#;
        assert_eq!(
            ran(script, &BTreeMap::new(), &["ucf"]),
            [
                "ucf /usr/share/z /etc/z",
                "ucf /usr/share/w /etc/w",
                "ucf /usr/share/v /etc/v",
                "ucf /usr/share/sub /etc/sub",
                "ucf /usr/share/two /etc/two",
            ]
        );
    }
}
