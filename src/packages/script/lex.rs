//! Splitting a shell script into words and operators, as the evaluator reads it.

/// A token of a shell script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// A word, quotes removed, `$(...)`, `${...}` and backquotes kept as written.
    Word(String),
    /// An operator: `;;`, `;`, `&&`, `||`, `|`, `&`, `(`, `)`; `1>` and `1>>` for standard
    /// output written or appended to the file named next, `<<` before a here-document, and
    /// `>` for any other redirection.
    Op(&'static str),
    /// A here-document's lines, and whether `$NAME` in them is expanded (its delimiter was
    /// not quoted).
    Here(String, bool),
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

/// Marks a word that is one unquoted `$NAME` or `${NAME}` and nothing else: its value is
/// split into fields where a list of words is taken (`for x in $LIST`, a command's
/// arguments), as the shell splits it.
pub(super) const SPLIT: char = '\u{2}';

/// The characters that mean something to the shell unquoted (an expansion, a pattern, a
/// command substitution's parentheses) and what stands for each when it was quoted (`'$x'`,
/// `"[client]"`, `\*`): the text itself, never an expansion or a pattern. Expansion turns
/// them back ([`unquote`]).
const QUOTED: [(char, char); 6] = [
    ('$', '\u{3}'),
    ('*', '\u{10}'),
    ('?', '\u{11}'),
    ('[', '\u{12}'),
    ('(', '\u{13}'),
    (')', '\u{14}'),
];

/// `c` as it is kept when quoted.
fn literal(c: char) -> char {
    QUOTED.iter().find(|(q, _)| *q == c).map_or(c, |(_, m)| *m)
}

/// The text a lexed word stands for, its quoted characters as themselves.
pub(super) fn unquote(w: &str) -> String {
    w.chars()
        .map(|c| QUOTED.iter().find(|(_, m)| *m == c).map_or(c, |(q, _)| *q))
        .collect()
}

/// Whether `w` is exactly `$NAME`, `${NAME}`, or `${NAME:-WORD}` and the like (`-`, `+`,
/// `=`, with or without the colon): debhelper's `${DPKG_ROOT:+--root="$DPKG_ROOT"}` is no
/// word at all when the variable is empty.
fn lone_expansion(w: &str) -> bool {
    let name_len = |n: &str| {
        let starts = n
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if starts {
            n.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(n.len())
        } else {
            0
        }
    };
    if let Some(inner) = w.strip_prefix("${").and_then(|n| n.strip_suffix('}')) {
        // One pair of braces: none closes before the end.
        let mut depth = 0i32;
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
        }
        let n = name_len(inner);
        let op = &inner[n..];
        return n > 0
            && (op.is_empty()
                || [":-", ":+", ":=", "-", "+", "="]
                    .iter()
                    .any(|o| op.starts_with(o)));
    }
    w.strip_prefix('$')
        .is_some_and(|n| n.len() == name_len(n) && !n.is_empty())
}

/// Split a script into tokens (no expansion). Comments and line continuations go.
pub(super) fn lex(script: &str) -> Vec<Tok> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    // A word was started (so an empty quoted word counts).
    let mut started = false;
    // Here-documents whose lines start at the next new line: delimiter, `<<-`, and where
    // their `Here` token is.
    let mut heredocs: Vec<(String, bool, usize)> = Vec::new();
    let mut i = 0;
    // Some part of the word was quoted or escaped (so no field splitting applies to it).
    let mut quoted = false;
    let flush = |out: &mut Vec<Tok>, word: &mut String, started: &mut bool, quoted: &mut bool| {
        if *started {
            let w = std::mem::take(word);
            out.push(Tok::Word(if !*quoted && lone_expansion(&w) {
                format!("{SPLIT}{w}")
            } else {
                w
            }));
            *started = false;
        }
        *quoted = false;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\\' => {
                quoted = true;
                if let Some(n) = chars.get(i + 1) {
                    word.push(literal(*n));
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
                flush(&mut out, &mut word, &mut started, &mut quoted);
                i += 1;
            }
            '\n' => {
                flush(&mut out, &mut word, &mut started, &mut quoted);
                // After `&&`, `||` or `|` the command goes on on the next line.
                if !matches!(out.last(), Some(Tok::Op("&&" | "||" | "|"))) {
                    out.push(Tok::Nl);
                }
                i += 1;
                for (delim, strip, at) in std::mem::take(&mut heredocs) {
                    let mut body = String::new();
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
                        body.push_str(line);
                        body.push('\n');
                    }
                    if let Some(Tok::Here(text, _)) = out.get_mut(at) {
                        *text = body;
                    }
                }
            }
            '\'' => {
                started = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(literal(chars[i]));
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                started = true;
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            word.push(literal(chars[i + 1]));
                            i += 2;
                        }
                        '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
                        '`' => i = nested(&chars, i, &mut word),
                        '$' if matches!(chars.get(i + 1), Some('(' | '{')) => {
                            i = nested(&chars, i, &mut word)
                        }
                        // `$` stays an expansion inside double quotes; a pattern's
                        // characters do not.
                        '$' => {
                            word.push('$');
                            i += 1;
                        }
                        ch => {
                            word.push(literal(ch));
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
                flush(&mut out, &mut word, &mut started, &mut quoted);
                i += 2;
                let strip = chars.get(i) == Some(&'-');
                if strip {
                    i += 1;
                }
                while i < chars.len() && matches!(chars[i], ' ' | '\t') {
                    i += 1;
                }
                let mut delim = String::new();
                let mut quoted = false;
                while i < chars.len()
                    && !matches!(
                        chars[i],
                        ' ' | '\t' | '\n' | ';' | '|' | '&' | '>' | '<' | ')'
                    )
                {
                    if matches!(chars[i], '\'' | '"' | '\\') {
                        quoted = true;
                    } else {
                        delim.push(chars[i]);
                    }
                    i += 1;
                }
                out.push(Tok::Op("<<"));
                heredocs.push((delim, strip, out.len()));
                out.push(Tok::Here(String::new(), !quoted));
            }
            '>' | '<' => {
                // A file descriptor number before it belongs to the redirection.
                let mut fd = None;
                if started && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit()) {
                    fd = Some(std::mem::take(&mut word));
                    started = false;
                }
                flush(&mut out, &mut word, &mut started, &mut quoted);
                let start = i;
                i += 1;
                while i < chars.len() && matches!(chars[i], '>' | '&' | '|') {
                    i += 1;
                }
                let op: String = chars[start..i].iter().collect();
                let stdout = matches!(fd.as_deref(), None | Some("1"));
                out.push(Tok::Op(match op.as_str() {
                    ">" | ">|" if stdout => "1>",
                    ">>" if stdout => "1>>",
                    _ => ">",
                }));
            }
            ';' | '&' | '|' | '(' | ')' => {
                flush(&mut out, &mut word, &mut started, &mut quoted);
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
    flush(&mut out, &mut word, &mut started, &mut quoted);
    out
}
