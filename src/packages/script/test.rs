//! Conditions: what `test`, `[`, `command -v`, `dpkg --compare-versions` and a function's
//! status say, where the evaluation can know it.

use super::*;

impl Eval<'_> {
    /// What a command used as a condition returns, where known (a function's status comes
    /// from its call).
    pub(super) fn test(&self, words: &[String]) -> Known {
        let words: Vec<String> = words
            .iter()
            .filter(|w| !w.starts_with(REDIRECT))
            .cloned()
            .collect();
        let (neg, w) = match words.split_first() {
            Some((b, rest)) if b == "!" => (true, rest),
            _ => (false, &words[..]),
        };
        if w.iter().any(|x| x == PIPE) {
            let k = self.pipeline(w);
            return if neg { not(k) } else { k };
        }
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

    /// What a pipeline returns (its last command's status): only `id -Gn USER | grep -qw
    /// GROUP`, whether USER is in GROUP (or in a group whose name holds it as a word), which
    /// postgresql-common asks before it adds postgres to ssl-cert.
    fn pipeline(&self, w: &[String]) -> Known {
        let parts: Vec<&[String]> = w.split(|x| x == PIPE).collect();
        let [id, grep] = parts.as_slice() else {
            return None;
        };
        fn strs(p: &[String]) -> Vec<&str> {
            p.iter().map(String::as_str).collect()
        }
        let user = match strs(id).as_slice() {
            ["id", "-Gn" | "-nG", user] | ["id", "-G", "-n", user] | ["id", "-n", "-G", user] => {
                self.expand(user)?
            }
            _ => return None,
        };
        let group = match strs(grep).as_slice() {
            ["grep", "-qw" | "-wq", g] | ["grep", "-q", "-w", g] | ["grep", "-w", "-q", g] => {
                self.expand(g)?
            }
            _ => return None,
        };
        if user.contains(' ') {
            return None;
        }
        (self.paths)(&format!("{user} {group}"), 'm')
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
            // A build starts no service: as under a policy-rc.d that forbids it (how image
            // builders run maintainer scripts), both answer 0, so debhelper's
            // `invoke-rc.d ... || exit 1` does not end the script.
            "invoke-rc.d" if !w.iter().any(|a| a == "--disclose-deny") => return Some(true),
            "deb-systemd-invoke" => return Some(true),
            // On a first install no state file exists: `was-enabled` defaults to true (so
            // debhelper's snippet runs `enable`) and nothing is `debian-installed` yet.
            "deb-systemd-helper" => {
                let op = w[1..].iter().find(|a| !a.starts_with('-'))?;
                return match op.as_str() {
                    "was-enabled" => Some(true),
                    "debian-installed" => Some(false),
                    _ => None,
                };
            }
            "command" if w.get(1).map(String::as_str) == Some("-v") => {
                return (self.paths)(&self.expand(w.get(2)?)?, 'c');
            }
            "which" => return (self.paths)(&self.expand(w.get(1)?)?, 'c'),
            // Whether an account is there: the image answers (`u` a user, `g` a group).
            "getent" if w.len() == 3 => {
                let op = match w[1].as_str() {
                    "passwd" => 'u',
                    "group" => 'g',
                    _ => return None,
                };
                return (self.paths)(&self.expand(&w[2])?, op);
            }
            "id" if w.len() == 2 || (w.len() == 3 && w[1] == "-u") => {
                return (self.paths)(&self.expand(w.last()?)?, 'u');
            }
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
            "su" => return self.su(&w[1..]),
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
                    self.path_test(&p, c)
                } else {
                    // Relative: against where the script went, when that is known.
                    let dir = self.cwd.as_deref()?.trim_end_matches('/');
                    self.path_test(&format!("{dir}/{p}"), c)
                }
            }
            [a, op @ ("=" | "==" | "!="), b] => {
                let same = self.expand(a)? == self.expand(b)?;
                Some(if *op == "!=" { !same } else { same })
            }
            [a, op @ ("-eq" | "-ne"), b] => {
                let same = match (self.id_of(a), self.id_of(b)) {
                    // postgresql-common's `[ "`id -u postgres`" -eq 0 ]`: whether the
                    // account's uid (or primary gid) is root's, which the image answers.
                    (Some((name, op)), None) if self.expand(b)?.trim() == "0" => {
                        (self.paths)(&name, op)?
                    }
                    (None, Some((name, op))) if self.expand(a)?.trim() == "0" => {
                        (self.paths)(&name, op)?
                    }
                    (None, None) => {
                        let n = |w: &str| self.expand(w)?.trim().parse::<i64>().ok();
                        n(a)? == n(b)?
                    }
                    _ => return None,
                };
                Some(if *op == "-ne" { !same } else { same })
            }
            _ => None,
        }
    }

    /// `su [-s SHELL] USER -c CMD` where CMD tests who owns a path, `test -O PATH && test -G
    /// PATH` (postgresql-common's check of postgres's home, which it chowns when that fails):
    /// whether PATH's owner is USER (`-O`) and its group USER's primary group (`-G`).
    fn su(&self, args: &[String]) -> Known {
        let (mut user, mut cmd) = (None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-s" | "--shell" => {
                    let shell = self.expand(it.next()?)?;
                    if !matches!(shell.as_str(), "/bin/sh" | "/bin/bash" | "/bin/dash") {
                        return None;
                    }
                }
                "-c" | "--command" => cmd = Some(self.expand(it.next()?)?),
                "-" | "-l" | "--login" => {}
                o if o.starts_with('-') => return None,
                u if user.is_none() => user = Some(self.expand(u)?),
                _ => return None,
            }
        }
        let (user, cmd) = (user?, cmd?);
        // Its words are the su'd shell's to expand: only literal ones are read here.
        if user.contains(' ') || cmd.contains(['$', '`', '\\']) {
            return None;
        }
        let mut result = Some(true);
        for part in cmd.split("&&") {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (op, path) = match words.as_slice() {
                ["test", op, p] | ["[", op, p, "]"] => (*op, p.to_string()),
                _ => return None,
            };
            let op = match op {
                "-O" => 'O',
                "-G" => 'E',
                _ => return None,
            };
            if !path.starts_with('/')
                || path.contains(['\'', '"', '|', ';', '&', '<', '>', '(', ')', '*', '?', '['])
            {
                return None;
            }
            let owned = match self.made.get(path.trim_end_matches('/')) {
                Some('-') => Some(false),
                // Made by the script (as root) where the image has nothing: root's.
                Some(_) if (self.paths)(&path, 'e') == Some(false) => {
                    (self.paths)(&user, if op == 'O' { 'U' } else { 'G' })
                }
                _ => (self.paths)(&format!("{user} {path}"), op),
            };
            result = and(result, owned);
        }
        result
    }

    /// `$(id -u NAME)` or `` `id -g NAME` `` as a whole word: NAME and the question whether
    /// that id is 0 (`U` for the uid, `G` for the primary group).
    fn id_of(&self, w: &str) -> Option<(String, char)> {
        match substitution(w)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["id", "-u", name] => Some((self.expand(name.trim_matches('"'))?, 'U')),
            ["id", "-g", name] => Some((self.expand(name.trim_matches('"'))?, 'G')),
            _ => None,
        }
    }

    /// `[ -OP PATH ]`: what the script's own earlier commands made of the path, else what
    /// the image says.
    pub(super) fn path_test(&self, p: &str, op: char) -> Known {
        let Some(&kind) = self.made.get(p) else {
            return (self.paths)(p, op);
        };
        match (kind, op) {
            ('-', _) => Some(false),
            // The script runs as root: what it made is root's.
            (_, 'R' | 'Q') => Some(true),
            (_, 'e' | 'r' | 'w') => Some(true),
            (k, 'f') => Some(k == 'f'),
            (k, 'd') => Some(k == 'd'),
            (k, 'L' | 'h') => Some(k == 'L'),
            // Its size and mode are not known here.
            _ => None,
        }
    }

    /// Note what a command that certainly ran made or removed (see `made`).
    pub(super) fn note_made(&mut self, w: &[String]) {
        let Some(tool) = w.first() else { return };
        // Options that take the next word (mkdir's mode, touch's date or reference file).
        let valued = ["-m", "-d", "-t", "-r"];
        let operands: Vec<&String> = w[1..]
            .iter()
            .enumerate()
            .filter(|(i, a)| !a.starts_with('-') && (*i == 0 || !valued.contains(&w[*i].as_str())))
            .map(|(_, a)| a)
            .collect();
        let absolute = |p: &str| -> Option<String> {
            if p.starts_with('/') {
                Some(p.trim_end_matches('/').to_string())
            } else {
                let dir = self.cwd.as_deref()?.trim_end_matches('/');
                Some(format!("{dir}/{}", p.trim_end_matches('/')))
            }
        };
        let mut marks: Vec<(String, char)> = Vec::new();
        match tool.as_str() {
            // ucf [options] NEW DESTINATION (not --purge, which removes its record).
            "ucf" if !w.iter().any(|a| a == "--purge") && operands.len() == 2 => {
                marks.extend(absolute(operands[1]).map(|p| (p, 'f')));
            }
            // bind9's `rndc-confgen -a` writes the rndc key (`-c FILE`: there).
            "rndc-confgen" if w.iter().any(|a| a == "-a") => {
                let file = w
                    .windows(2)
                    .find(|p| p[0] == "-c")
                    .map_or("/etc/bind/rndc.key", |p| p[1].as_str());
                marks.extend(absolute(file).map(|p| (p, 'f')));
            }
            "touch" | "mkdir" | "rm" => {
                let kind = match tool.as_str() {
                    "touch" => 'f',
                    "mkdir" => 'd',
                    _ => '-',
                };
                marks.extend(
                    operands
                        .iter()
                        .filter_map(|p| absolute(p))
                        .map(|p| (p, kind)),
                );
            }
            "ln" if w[1..]
                .iter()
                .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('s'))
                && operands.len() == 2 =>
            {
                marks.extend(absolute(operands[1]).map(|p| (p, 'L')));
            }
            t if t == WRITE || t == APPEND => {
                marks.extend(w.get(1).and_then(|p| absolute(p)).map(|p| (p, 'f')));
            }
            _ => {}
        }
        self.made.extend(marks);
    }
}
