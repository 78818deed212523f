//! Running the script: simple commands, function calls, and-or lists, and the walk over the
//! tokens that follows `if`, `case`, loops, groups and function definitions.

use super::*;

impl Eval<'_> {
    /// Run one simple command whose running is `runs`.
    fn command(&mut self, all: &[String], runs: Known) {
        let (redirects, words): (Vec<&String>, Vec<&String>) =
            all.iter().partition(|w| w.starts_with(REDIRECT));
        let words: Vec<String> = words.into_iter().cloned().collect();
        let words = &words[..];
        if runs == Some(false) || words.is_empty() || words.iter().any(|w| w == PIPE) {
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
            "cd" => {
                // Where later commands with relative paths act: an absolute path known for
                // certain, else a bare `cd` that says it is not known.
                let dir = match words {
                    [_, d] if certain => self.expand(d).filter(|d| d.starts_with('/')),
                    _ => None,
                };
                self.cwd.clone_from(&dir);
                self.ran
                    .push(std::iter::once("cd".to_string()).chain(dir).collect());
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
                if let Some(write) = self.written(&w, &redirects) {
                    self.note_made(&write);
                    self.ran.push(write);
                }
                self.note_made(&w);
                self.ran.push(w);
            }
        }
    }

    /// What `cat <<EOF > FILE` or `echo WORDS > FILE` (or `>>`) writes, as a [`WRITE`] or
    /// [`APPEND`] command: the file and the text, when both are known.
    fn written(&self, w: &[String], redirects: &[&String]) -> Option<Vec<String>> {
        let marked = |kinds: &[char]| {
            redirects.iter().rev().find_map(|r| {
                let mut c = r.chars().skip(1);
                let kind = c.next()?;
                kinds.contains(&kind).then(|| (kind, c.collect::<String>()))
            })
        };
        let (kind, file) = marked(&['w', 'a'])?;
        let file = self.expand(&file)?;
        let text = match w[0].as_str() {
            "cat" if w.len() == 1 => match marked(&['h', 'q'])? {
                ('h', text) => self.expand_text(&text)?,
                (_, text) => text,
            },
            // dash's echo reads backslash escapes and `-n`: only plain words are taken.
            "echo"
                if !w[1..]
                    .iter()
                    .any(|a| a.starts_with('-') || a.contains('\\')) =>
            {
                format!("{}\n", w[1..].join(" "))
            }
            _ => return None,
        };
        let tool = if kind == 'w' { WRITE } else { APPEND };
        Some(vec![tool.to_string(), file, text])
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
    pub(super) fn walk(&mut self, from: usize, to: usize) {
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
            let mut list_start = i;
            let mut cmds: Vec<(Vec<String>, &'static str)> = Vec::new();
            let mut words: Vec<String> = Vec::new();
            let mut joined: &'static str = "";
            let mut end: Option<&'static str> = None;
            // The redirection whose target is the next word: `None` for no redirection,
            // `Some(None)` for one whose target is dropped, `Some(Some(kind))` for standard
            // output, kept as a marked word (see `REDIRECT`).
            let mut redirect: Option<Option<char>> = None;
            while i < to {
                match &self.toks[i] {
                    Tok::Word(w) => match redirect.take() {
                        None => words.push(w.clone()),
                        Some(None) => {}
                        Some(Some(kind)) => words.push(format!("{REDIRECT}{kind}{w}")),
                    },
                    Tok::Here(text, expand) => {
                        let kind = if *expand { 'h' } else { 'q' };
                        words.push(format!("{REDIRECT}{kind}{text}"));
                    }
                    Tok::Op("<<") => {}
                    Tok::Op("1>") => redirect = Some(Some('w')),
                    Tok::Op("1>>") => redirect = Some(Some('a')),
                    Tok::Op(">") => redirect = Some(None),
                    Tok::Op(op @ ("&&" | "||")) => {
                        cmds.push((std::mem::take(&mut words), joined));
                        joined = op;
                    }
                    Tok::Op("|") => {
                        words.push(PIPE.to_string());
                        // `cmd | while read x; do ...; done`: a compound command after the
                        // `|` is read as a list of its own, so that its keywords open and
                        // close its frames. A loop's body is never certain; of the others
                        // (whose variables end with the pipeline's subshell) nothing is
                        // taken as certain, nor of what follows them.
                        if let Some(Tok::Word(k)) = self.toks.get(i + 1) {
                            let k = k.as_str();
                            if matches!(k, "while" | "until" | "for" | "if" | "case" | "{") {
                                if !matches!(k, "while" | "until") {
                                    self.maybe_returned = true;
                                }
                                end = Some("|");
                                i += 1;
                                break;
                            }
                        }
                    }
                    Tok::Op("(") if words.is_empty() => {
                        end = Some("(");
                        i += 1;
                        break;
                    }
                    Tok::Op("(")
                        if words.len() == 1 && self.toks.get(i + 1) == Some(&Tok::Op(")")) =>
                    {
                        // `name()`: a function's definition; its `{` is the list's first word.
                        self.function_next = words.pop();
                        i += 2;
                        list_start = i;
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
                        let n = first.len().min(2);
                        first.drain(..n);
                        at += n - 1;
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
                    let cond = self.list(&cmds, and(outside, not(taken)));
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
                    // A pipeline in the list is not run (see `PIPE`), but what it returns
                    // may be known, and with it whether the rest of the list runs.
                    let runs = self.here();
                    self.list(&cmds, runs);
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
                        // A subshell's `cd` ends with it; where the script was is not kept.
                        self.cwd = None;
                        self.ran.push(vec!["cd".to_string()]);
                    }
                }
                _ => {}
            }
        }
    }
}
