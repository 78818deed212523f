//! The configuration files a package's `postinst` installs with `ucf` rather than shipping them
//! as conffiles (chrony's `/etc/chrony/chrony.conf`, unattended-upgrades'
//! `/etc/apt/apt.conf.d/50unattended-upgrades`): `ucf [--three-way] NEW DEST` copies the file
//! the package ships under `/usr/share` into `/etc` on a first install, and `ucfr PACKAGE DEST`
//! registers it. Ingot runs no maintainer scripts, so the assembly makes the copies and ucf's
//! records itself (see `assemble::ucf`).
//!
//! Unlike the other readers, this one follows the script's control flow the way a first
//! `postinst configure` runs it (`$1` is `configure`, `$2`, the old version, is empty): only a
//! `ucf` the script certainly reaches counts. An `if` whose condition is known (`command -v
//! ucf`, a comparison of known words, `[ -n "$2" ]`, a debconf answer `db_get` reads, which on a
//! first install is the template's default) is followed; a branch behind any other condition,
//! a loop or a function body is not. Variables are followed in order, so a name the script sets
//! several times has the value it has where it is used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One file a script installs with ucf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UcfFile {
    /// The new version the package ships (an absolute path).
    pub source: String,
    /// Where ucf puts it.
    pub dest: String,
    /// `--three-way`: ucf also keeps a copy of the new version in its cache for later merges.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub three_way: bool,
    /// The package `ucfr` registers it to (none when the script does not register it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
}

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
type Known = Option<bool>;

fn and(a: Known, b: Known) -> Known {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
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

fn not(a: Known) -> Known {
    a.map(|b| !b)
}

/// An open compound command.
#[derive(Debug)]
enum Frame {
    /// `if`: whether the branch being read runs, and whether an earlier branch did.
    If { now: Known, taken: Known },
    /// `case`: whether its word is `$1`, whether the arm being read runs, whether an earlier
    /// arm did, and whether a pattern list comes next.
    Case {
        on_action: bool,
        arm: Known,
        taken: Known,
        patterns_next: bool,
    },
    /// A loop, a function body, or a `{ }` or `( )` group: `certain` says whether its body
    /// runs (once) where it stands.
    Block { certain: bool, close: &'static str },
}

impl Frame {
    fn runs(&self) -> Known {
        match self {
            Frame::If { now, .. } => *now,
            Frame::Case { arm, .. } => *arm,
            Frame::Block { certain, .. } => certain.then_some(true),
        }
    }
}

/// A variable: its value (`None` once it is not known) and the depth it was set at.
struct Var {
    value: Option<String>,
    depth: usize,
    certain: bool,
}

struct Reader<'a> {
    frames: Vec<Frame>,
    vars: BTreeMap<String, Var>,
    defaults: &'a BTreeMap<String, String>,
    out: Vec<UcfFile>,
    /// A function's name was just read (`name()`): the next `{` opens its body.
    function_next: bool,
}

fn name_ok(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Reader<'_> {
    /// Whether the command being read certainly runs.
    fn here(&self) -> Known {
        all_run(&self.frames)
    }

    /// `word` with its variables replaced; `None` when a part is not known.
    fn expand(&self, word: &str) -> Option<String> {
        let out = super::accounts::substitute(word, |name| match name {
            // A first `postinst configure`: no old version.
            "1" => Some("configure".into()),
            "2" => Some(String::new()),
            n if name_ok(n) => self.vars.get(n)?.value.clone(),
            _ => None,
        })?;
        (!out.contains(['`', '*', '?', '[', '(', ')'])).then_some(out)
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
        self.frames.pop();
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

    /// What a command used as a condition returns, where known.
    fn test(&self, words: &[String]) -> Known {
        let (neg, w) = match words.split_first() {
            Some((b, rest)) if b == "!" => (true, rest),
            _ => (false, words),
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
        let ucf_tool = |x: &str| {
            let x = x.trim_end_matches(')');
            matches!(x.rsplit(['/', ' ']).next(), Some("ucf" | "ucfr"))
        };
        match first {
            "true" | ":" => return Some(true),
            "false" => return Some(false),
            // ucf is there wherever the assembly acts on what this reads (it checks).
            "command" if w.get(1).map(String::as_str) == Some("-v") => {
                return w.get(2).filter(|t| ucf_tool(t)).map(|_| true)
            }
            "which" => return w.get(1).filter(|t| ucf_tool(t)).map(|_| true),
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
            "[" | "test" => {}
            _ => return None,
        }
        let mut args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
        if first == "[" {
            if args.last() != Some(&"]") {
                return None;
            }
            args.pop();
        }
        match args.as_slice() {
            ["-x", p] if ucf_tool(p) => Some(true),
            ["-n", a] => Some(!self.expand(a)?.is_empty()),
            ["-z", a] => Some(self.expand(a)?.is_empty()),
            [a, op @ ("=" | "==" | "!="), b] => {
                let same = self.expand(a)? == self.expand(b)?;
                Some(if *op == "!=" { !same } else { same })
            }
            _ => None,
        }
    }

    /// Run one simple command whose running is `runs`.
    fn command(&mut self, words: &[String], runs: Known) {
        let certain = runs == Some(true);
        if runs == Some(false) {
            return;
        }
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
        let first = &words[0];
        let tool = first.rsplit('/').next().unwrap_or(first);
        match tool {
            "export" | "readonly" | "local" | "unset" | "read" => {
                for w in &words[1..] {
                    let (n, v) = match w.split_once('=') {
                        Some((n, v)) if tool != "read" && tool != "unset" => (n, self.expand(v)),
                        _ => (w.as_str(), None),
                    };
                    if name_ok(n) {
                        self.set(n, v, certain);
                    }
                }
            }
            "db_get" => {
                let value = words.get(1).and_then(|t| self.defaults.get(t)).cloned();
                self.set("RET", value, certain);
            }
            "ucf" if certain => {
                let mut three_way = false;
                let mut plain = Vec::new();
                let mut it = words[1..].iter();
                while let Some(w) = it.next() {
                    match w.as_str() {
                        "--three-way" | "-3" => three_way = true,
                        "--debconf-ok" | "--verbose" | "-v" => {}
                        "--sum-file" => {
                            it.next();
                        }
                        // --purge, --no-action, another state directory...: not an install.
                        o if o.starts_with('-') => return,
                        _ => plain.push(w),
                    }
                }
                let [source, dest] = plain.as_slice() else {
                    return;
                };
                let (Some(source), Some(dest)) = (self.expand(source), self.expand(dest)) else {
                    return;
                };
                if path_ok(&source) && path_ok(&dest) {
                    self.out.retain(|u| u.dest != dest);
                    self.out.push(UcfFile {
                        source,
                        dest,
                        three_way,
                        registered: None,
                    });
                }
            }
            "ucfr" if certain => {
                let [pkg, dest] = &words[1..] else { return };
                let (Some(pkg), Some(dest)) = (self.expand(pkg), self.expand(dest)) else {
                    return;
                };
                if let Some(u) = self.out.iter_mut().find(|u| u.dest == dest) {
                    u.registered = Some(pkg);
                }
            }
            _ => {}
        }
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
                _ => not(and(not(result), not(r))),
            };
        }
        result
    }
}

/// An absolute path that names one file.
fn path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == "..") && p.len() > 1
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

/// The files a `postinst` installs with ucf on a first configure, in its order, given the
/// package's debconf template defaults.
pub fn from_script(script: &str, defaults: &BTreeMap<String, String>) -> Vec<UcfFile> {
    let toks = lex(script);
    let mut r = Reader {
        frames: Vec::new(),
        vars: BTreeMap::new(),
        defaults,
        out: Vec::new(),
        function_next: false,
    };
    let mut i = 0;
    while i < toks.len() {
        // A case's pattern list: words joined by `|`, up to `)`.
        if let Some(Frame::Case {
            patterns_next: true,
            ..
        }) = r.frames.last()
        {
            match &toks[i] {
                Tok::Nl | Tok::Op(";") => {
                    i += 1;
                    continue;
                }
                Tok::Word(w) if w == "esac" => {
                    r.pop();
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let mut patterns = Vec::new();
            while i < toks.len() && toks[i] != Tok::Op(")") {
                if let Tok::Word(w) = &toks[i] {
                    patterns.push(r.expand(w));
                }
                i += 1;
            }
            i += 1;
            if let Some(Frame::Case {
                on_action,
                arm,
                taken,
                patterns_next,
            }) = r.frames.last_mut()
            {
                let plain = |p: &Option<String>| matches!(p.as_deref(), Some("configure" | "*"));
                let matches: Known = if !*on_action {
                    None
                } else if patterns.iter().any(plain) {
                    Some(true)
                } else if patterns.iter().any(Option::is_none) {
                    // A pattern that is not a plain word may match too.
                    None
                } else {
                    Some(false)
                };
                *arm = and(not(*taken), matches);
                *taken = not(and(not(*taken), not(matches)));
                *patterns_next = false;
            }
            continue;
        }
        // One and-or list, up to `;`, `;;`, `&`, a new line, or a `(`/`)` that groups.
        let mut cmds: Vec<(Vec<String>, &'static str)> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut joined: &'static str = "";
        let mut end: Option<&'static str> = None;
        let mut redirect = false;
        let mut piped = false;
        while i < toks.len() {
            match &toks[i] {
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
                Tok::Op("(") if words.len() == 1 && toks.get(i + 1) == Some(&Tok::Op(")")) => {
                    // `name()`: a function definition.
                    words.clear();
                    r.function_next = true;
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
        while let Some(k) = first.first().cloned() {
            match k.as_str() {
                "then" | "do" => {
                    first.remove(0);
                }
                "else" => {
                    first.remove(0);
                    if let Some(Frame::If { now, taken }) = r.frames.last_mut() {
                        *now = not(*taken);
                        *taken = Some(true);
                    }
                }
                "fi" | "done" | "esac" | "}" => {
                    first.remove(0);
                    r.pop();
                }
                "{" => {
                    first.remove(0);
                    let certain = !std::mem::take(&mut r.function_next);
                    r.frames.push(Frame::Block {
                        certain,
                        close: "}",
                    });
                }
                "function" => {
                    first.clear();
                    r.function_next = true;
                }
                "for" | "while" | "until" => {
                    if k == "for" {
                        if let Some(v) = first.get(1).filter(|v| name_ok(v)).cloned() {
                            r.set(&v, None, false);
                        }
                        first.clear();
                    } else {
                        first.remove(0);
                    }
                    r.frames.push(Frame::Block {
                        certain: false,
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
                let (outside, taken) = match (elif, r.frames.split_last()) {
                    (true, Some((Frame::If { taken, .. }, rest))) => (all_run(rest), *taken),
                    _ => (r.here(), Some(false)),
                };
                let cond = if piped {
                    None
                } else {
                    r.list(&cmds, and(outside, not(taken)))
                };
                if elif {
                    if let Some(Frame::If { now, taken }) = r.frames.last_mut() {
                        *now = and(not(*taken), cond);
                        *taken = not(and(not(*taken), not(cond)));
                    }
                } else {
                    r.frames.push(Frame::If {
                        now: cond,
                        taken: cond,
                    });
                }
            }
            "case" => {
                let on_action = matches!(cmds[0].0.get(1).map(String::as_str), Some("$1" | "${1}"));
                r.frames.push(Frame::Case {
                    on_action,
                    arm: None,
                    taken: Some(false),
                    patterns_next: true,
                });
            }
            _ => {
                let runs = r.here();
                if piped {
                    // A pipeline's commands run in subshells: nothing they set stays.
                } else {
                    r.list(&cmds, runs);
                }
            }
        }
        match end {
            Some(";;") => {
                if let Some(Frame::Case { patterns_next, .. }) = r.frames.last_mut() {
                    *patterns_next = true;
                }
            }
            Some("(") => r.frames.push(Frame::Block {
                certain: true,
                close: ")",
            }),
            Some(")") => {
                if matches!(r.frames.last(), Some(Frame::Block { close: ")", .. })) {
                    r.pop();
                }
            }
            _ => {}
        }
    }
    r.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(source: &str, dest: &str, three_way: bool, registered: Option<&str>) -> UcfFile {
        UcfFile {
            source: source.into(),
            dest: dest.into(),
            three_way,
            registered: registered.map(Into::into),
        }
    }

    #[test]
    fn chrony_installs_its_configuration_and_keys() {
        let script = r#"#!/bin/sh
set -e
case "$1" in
    configure)
        adduser --force-badname --system --group --quiet \
                --home /var/lib/chrony --no-create-home _chrony

        if command -v ucf >/dev/null
        then
            ucf --three-way /usr/share/chrony/chrony.conf /etc/chrony/chrony.conf
            ucf --three-way /usr/share/chrony/chrony.keys /etc/chrony/chrony.keys
            if [ -x "$(command -v ucfr)" ]; then
                ucfr chrony /etc/chrony/chrony.conf
                ucfr chrony /etc/chrony/chrony.keys
            fi
        fi
        if ! chronyd -p | grep -q "^user"; then
            for d in /var/lib/chrony /var/log/chrony; do
                ucf /usr/share/x/$d /etc/loop
            done
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
"#;
        assert_eq!(
            from_script(script, &BTreeMap::new()),
            [
                u(
                    "/usr/share/chrony/chrony.conf",
                    "/etc/chrony/chrony.conf",
                    true,
                    Some("chrony")
                ),
                u(
                    "/usr/share/chrony/chrony.keys",
                    "/etc/chrony/chrony.keys",
                    true,
                    Some("chrony")
                ),
            ]
        );
    }

    #[test]
    fn a_debconf_answer_picks_the_branch_and_variables_follow_the_script() {
        // unattended-upgrades: which file becomes 20auto-upgrades depends on a debconf
        // boolean; the same variables name another file further down.
        let script = r#"#!/bin/sh
set -e
. /usr/share/debconf/confmodule
uu_running() {
    NEWFILE=/usr/share/inside/a-function
    ucf /usr/share/f /etc/f
}
case "$1" in
    configure)
        db_get unattended-upgrades/enable_auto_updates || true
	CONFIG="/etc/apt/apt.conf.d/20auto-upgrades"
        if [ "${RET}" = "true" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
	    ucfr unattended-upgrades "$CONFIG"
        elif [ "${RET}" = "false" ] && [ -e "$CONFIG" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades-disabled"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
	    ucfr unattended-upgrades "$CONFIG"
        fi

	CONFIG="/etc/apt/apt.conf.d/50unattended-upgrades"
	NEWFILE="/usr/share/unattended-upgrades/50unattended-upgrades"
        if dpkg --compare-versions "$2" lt "1.8~" \
	        && [ -e $CONFIG.ucftmp ]; then
	    mv $CONFIG.ucftmp $CONFIG
	fi
	ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
	ucfr unattended-upgrades "$CONFIG"
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
        let want = [
            u(
                "/usr/share/unattended-upgrades/20auto-upgrades",
                "/etc/apt/apt.conf.d/20auto-upgrades",
                true,
                Some("unattended-upgrades"),
            ),
            u(
                "/usr/share/unattended-upgrades/50unattended-upgrades",
                "/etc/apt/apt.conf.d/50unattended-upgrades",
                true,
                Some("unattended-upgrades"),
            ),
        ];
        assert_eq!(from_script(script, &defaults), want);
        // Answered false, the disabled file would go in only over an existing one: unknown.
        let off: BTreeMap<String, String> = [(
            "unattended-upgrades/enable_auto_updates".to_string(),
            "false".to_string(),
        )]
        .into();
        assert_eq!(from_script(script, &off), want[1..]);
        // Without the template the answer is not known, and neither is the first file.
        assert_eq!(from_script(script, &BTreeMap::new()), want[1..]);
    }

    #[test]
    fn what_a_script_does_not_certainly_install_is_left_out() {
        let script = r#"
tmp=$(mktemp)
ucf --debconf-ok $tmp /etc/from-a-temp-file
ucf --purge /etc/purged
ucf /usr/share/a /etc/a /etc/too-many
ucf relative /etc/relative
if [ -d /etc/x ]; then ucf /usr/share/x /etc/x/conf; fi
[ -e /etc/y ] && ucf /usr/share/y /etc/y
true && ucf /usr/share/z /etc/z
false || ucf /usr/share/w /etc/w
if [ "$1" = "configure" ]; then ucf /usr/share/v /etc/v; else ucf /usr/share/nv /etc/nv; fi
for f in a b; do ucf /usr/share/$f /etc/$f; done
( ucf /usr/share/sub /etc/sub )
X=/usr/share/one
X=/usr/share/two
ucf $X /etc/two
Y=/usr/share/y1
if [ -e /etc/q ]; then Y=/usr/share/y2; fi
ucf $Y /etc/maybe
"#;
        assert_eq!(
            from_script(script, &BTreeMap::new()),
            [
                u("/usr/share/z", "/etc/z", false, None),
                u("/usr/share/w", "/etc/w", false, None),
                u("/usr/share/v", "/etc/v", false, None),
                u("/usr/share/sub", "/etc/sub", false, None),
                u("/usr/share/two", "/etc/two", false, None),
            ]
        );
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
}
