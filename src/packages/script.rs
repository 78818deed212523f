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

mod lex;
mod run;
mod test;
use lex::{lex, unquote, Tok, SPLIT};

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
/// whether `command -v PATH` finds it, for `o`, whether `dpkg-statoverride --list PATH`
/// does, for `u` and `g`, whether the user or group of that name is there (`getent`,
/// `id`), and for `U` and `G`, whether that user's uid or primary gid is 0 (`$(id -u NAME)`
/// compared with 0). Three take `USER WORD` (a space between): `m`, whether `id -Gn USER |
/// grep -qw WORD` succeeds; `O` and `E`, whether the path WORD is owned by USER, or by USER's
/// primary group (`su USER -c 'test -O WORD'`, `-G`); `R` and `Q`, whether the path's owner
/// (group) is root's (`ls -ln`). `None` when it cannot say.
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
    /// Where the script runs: `/` at the start, as dpkg starts it; `None` once a `cd` went
    /// somewhere not known.
    cwd: Option<String>,
    /// Paths the script's own earlier commands certainly made (`f` a file, `d` a directory,
    /// `L` a link) or removed (`-`): a later test of one answers from here, not from the
    /// image as it was before the script.
    made: BTreeMap<String, char>,
}

/// The command of a word that is one command substitution, `$(CMD)` or `` `CMD` ``.
fn substitution(word: &str) -> Option<&str> {
    word.strip_prefix("$(")
        .and_then(|w| w.strip_suffix(')'))
        .or_else(|| word.strip_prefix('`').and_then(|w| w.strip_suffix('`')))
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
        let word = word.strip_prefix(SPLIT).unwrap_or(word);
        // `$(dirname PATH)` and `$(basename PATH)` (or in backquotes) as a whole word: what
        // they print, which needs nothing but the word.
        if let Some(cmd) = substitution(word) {
            if let Some(cut) = self.echo_cut(cmd) {
                return Some(cut);
            }
            if let Some(id) = self.ls_owner(cmd) {
                return Some(id);
            }
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
        let out = super::accounts::substitute(word, &|name| self.lookup(name))?;
        (!out.contains(['`', '*', '?', '[', '(', ')', '$'])).then(|| unquote(&out))
    }

    /// `echo WORD | cut -b LIST` (or `-c`) for one range of an ASCII word: what dovecot-core's
    /// postinst asks of a file name's start.
    fn echo_cut(&self, cmd: &str) -> Option<String> {
        let parts: Vec<&str> = cmd.split_whitespace().collect();
        let (arg, opt, list) = match parts.as_slice() {
            ["echo", arg, "|", "cut", opt, list] if opt.len() == 2 => (*arg, &opt[1..], *list),
            ["echo", arg, "|", "cut", opt] if opt.len() > 2 => (*arg, &opt[1..2], &opt[2..]),
            _ => return None,
        };
        if !matches!(opt, "b" | "c") || arg.starts_with('-') {
            return None;
        }
        let value = self.expand(arg.trim_matches('"'))?;
        if !value.is_ascii() || value.contains('\n') {
            return None;
        }
        let (from, to) = list.split_once('-')?;
        let from: usize = if from.is_empty() {
            1
        } else {
            from.parse().ok()?
        };
        let to: usize = if to.is_empty() {
            value.len()
        } else {
            to.parse().ok()?
        };
        if from == 0 {
            return None;
        }
        let end = to.min(value.len());
        Some(value.get(from - 1..end).unwrap_or_default().to_string())
    }

    /// `ls -ln PATH | awk '{print $3}'` (or `$4`): the owner's (group's) number, known here
    /// only when it is root's: bind9's postinst asks it of the rndc key it just made.
    fn ls_owner(&self, cmd: &str) -> Option<String> {
        let parts: Vec<&str> = cmd.split_whitespace().collect();
        let (path, field) = match parts.as_slice() {
            ["ls", "-ln" | "-nl", p, "|", "awk", "'{print", f] => (*p, *f),
            _ => return None,
        };
        let op = match field {
            "$3}'" => 'R',
            "$4}'" => 'Q',
            _ => return None,
        };
        let path = self.expand(path.trim_matches('"'))?;
        if !path.starts_with('/') {
            return None;
        }
        self.path_test(&path, op)?.then(|| "0".to_string())
    }

    /// The value of `$name` (a variable or a positional parameter) when it is known.
    fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "#" => Some(self.args.len().to_string()),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = n.parse().ok()?;
                // `$0` is the script: not a word anything here needs.
                (i > 0).then(|| self.args.get(i - 1).cloned().unwrap_or_default())
            }
            n if name_ok(n) => self.vars.get(n)?.value.clone(),
            _ => None,
        }
    }

    /// A here-document's lines with `$NAME` expanded; `None` when they hold a command
    /// substitution, a backslash (an escape) or a name not known.
    fn expand_text(&self, text: &str) -> Option<String> {
        if text.contains(['`', '\\']) || text.contains("$(") {
            return None;
        }
        super::accounts::substitute(text, &|name| self.lookup(name))
    }

    /// A command's words expanded, `$@` and `$*` as the parameters that are not empty (as
    /// unquoted; the quotes are gone by now); `None` when one is not known.
    fn expand_all(&self, words: &[String]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for w in words {
            if matches!(w.as_str(), "$@" | "$*" | "${@}" | "${*}") {
                out.extend(self.args.iter().filter(|a| !a.is_empty()).cloned());
            } else if w.starts_with(SPLIT) {
                // Split at blanks and new lines (the default IFS); an empty value is no word.
                out.extend(self.expand(w)?.split_whitespace().map(str::to_string));
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

/// Marks a word that stands for a redirection of the command it came with, followed by `w`
/// (standard output written to the file named after it), `a` (appended to it), `h` (a
/// here-document's lines, `$NAME` in them expanded) or `q` (taken as they are).
const REDIRECT: char = '\u{1}';

/// The word that stands for a `|` between the commands of a pipeline. A pipeline runs in
/// subshells and none of the tools the assembly stands in for is piped, so no piped command
/// is taken as run; as a condition, only a pipeline [`Eval::test`] knows the status of
/// counts (`id -Gn USER | grep -qw GROUP`).
const PIPE: &str = "\u{3}";

/// What the evaluator reports for `cat <<EOF > FILE` or `echo WORDS > FILE` (`>>`: the append
/// form): the file and the text, when both are known.
pub const WRITE: &str = "ingot:write";
/// [`WRITE`] for `>>`.
pub const APPEND: &str = "ingot:append";

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
        cwd: Some("/".to_string()),
        made: BTreeMap::new(),
    };
    // What dpkg puts in a maintainer script's environment: the root it installs to, empty for
    // the running system (an image's scripts run on the machine itself), and the script's kind.
    e.set("DPKG_ROOT", Some(String::new()), true);
    e.set("DPKG_MAINTSCRIPT_NAME", Some("postinst".to_string()), true);
    e.walk(0, n);
    e.ran
}

#[cfg(test)]
mod tests;
