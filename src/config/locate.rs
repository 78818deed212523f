//! Where in a configuration file a rule was broken: line and column of an offset, of a key, or
//! of a key assigned a given value, and the errors that carry them.

use std::path::Path;

use super::ConfigError;

/// Line and column (1-based) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

pub(crate) fn rule(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Rule {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Where `key` is set in a TOML text: the first line, at or after the first line holding
/// `after` (when given), that assigns `key` (bare or quoted); its 1-based line and column.
pub(crate) fn find_key(text: &str, after: Option<&str>, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = match after {
        Some(a) => lines.iter().position(|l| l.contains(a))?,
        None => 0,
    };
    for (i, l) in lines.iter().enumerate().skip(start) {
        let t = l.trim_start();
        let rest = t
            .strip_prefix(key)
            .or_else(|| t.strip_prefix(&format!("\"{key}\"")));
        if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some((i + 1, l.len() - t.len() + 1));
        }
    }
    None
}

/// Each place `key` is assigned in a TOML text, as a whole bare or dotted-last key (in a
/// table or an inline table): its byte offset and the text after its `=`, blanks skipped.
fn assignments<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    text.match_indices(key).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return None;
        }
        let rest = text[at + key.len()..]
            .trim_start_matches([' ', '\t'])
            .strip_prefix('=')?;
        Some((at, rest.trim_start_matches([' ', '\t'])))
    })
}

/// Where `key = "value"` (or `'value'`) is written in a TOML text, in a table or an inline
/// table: the 1-based line and column of the key, on the first line that assigns that value.
pub(crate) fn find_assignment(text: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    assignments(text, key)
        .find(|(_, rest)| string_at(rest).is_some_and(|(s, _)| s == value))
        .map(|(at, _)| line_col(text, at))
}

/// Where an item of the string array `key = [ ... ]` (on one line or several, with comments)
/// that `wanted` accepts is written in a TOML text: the 1-based line and column of its quote.
pub(crate) fn find_array_item(
    text: &str,
    key: &str,
    wanted: impl Fn(&str) -> bool,
) -> Option<(usize, usize)> {
    for (_, rest) in assignments(text, key) {
        let Some(mut items) = rest.strip_prefix('[') else {
            continue;
        };
        loop {
            items = items.trim_start_matches([' ', '\t', '\r', '\n', ',']);
            if items.starts_with('#') {
                items = items.split_once('\n').map_or("", |(_, r)| r);
                continue;
            }
            let Some((item, len)) = string_at(items) else {
                break;
            };
            if wanted(&item) {
                return Some(line_col(text, text.len() - items.len()));
            }
            items = &items[len..];
        }
    }
    None
}

/// The TOML string (basic or literal, on one line) that `text` starts with, its escapes
/// decoded (a value written `"a\nb"` is found as the text it stands for), and its length as
/// written.
fn string_at(text: &str) -> Option<(String, usize)> {
    let quote = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let mut escaped = false;
    let end = text[1..].char_indices().find_map(|(i, c)| {
        let close = c == quote && !escaped;
        escaped = quote == '"' && c == '\\' && !escaped;
        close.then_some(i + 2)
    })?;
    let t: toml::Table = toml::from_str(&format!("v = {}", &text[..end])).ok()?;
    t.get("v")?.as_str().map(|s| (s.to_string(), end))
}

/// A rule about one value: at the line that assigns `key = "value"` in the first of `files`
/// that writes it literally; the first file alone when none does (escaped, or a default).
pub(crate) fn rule_at_value(
    files: &[&Path],
    key: &str,
    value: &str,
    message: impl Into<String>,
) -> ConfigError {
    rule_where(files, message, |t| find_assignment(t, key, value))
}

/// A rule about one item of a string array `key`, at the item in the first of `files` that
/// holds one `wanted` accepts; `None` when none does (the item came from elsewhere).
pub(crate) fn rule_at_item(
    files: &[&Path],
    key: &str,
    wanted: impl Fn(&str) -> bool,
    message: impl Into<String>,
) -> Option<ConfigError> {
    let (path, (line, column)) = files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        Some((f, find_array_item(&text, key, &wanted)?))
    })?;
    Some(ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message: message.into(),
    })
}

/// `key = "value"` in `path` is not what `key` takes (`what`), at that assignment.
pub(crate) fn not_a(path: &Path, key: &str, value: &str, what: &str) -> ConfigError {
    rule_at_value(
        &[path],
        key,
        value,
        format!("{key} `{}` is not {what}", value.escape_debug()),
    )
}

/// A rule broken at a place the files can show: the first of `files` (a profile, then the
/// profiles it extends) that sets `key` (after `after`), as `file:line:column`; the first file
/// alone when none does.
pub(crate) fn rule_at(
    files: &[&Path],
    after: Option<&str>,
    key: &str,
    message: impl Into<String>,
) -> ConfigError {
    rule_where(files, message, |t| find_key(t, after, key))
}

/// The rule at the first place `find` shows in the first of `files` where it shows one.
fn rule_where(
    files: &[&Path],
    message: impl Into<String>,
    find: impl Fn(&str) -> Option<(usize, usize)>,
) -> ConfigError {
    for f in files {
        let found = std::fs::read_to_string(f).ok().and_then(|t| find(&t));
        if let Some((line, column)) = found {
            return ConfigError::Invalid {
                path: f.to_path_buf(),
                line,
                column,
                message: message.into(),
            };
        }
    }
    rule(files.first().copied().unwrap_or(Path::new("")), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_is_found_in_tables_and_inline_tables_by_its_whole_key() {
        let text = "[[files]]\nxsource = \"a\"\nsource = 'b'\nfiles = [{ path = \"/p\", source = \"a\" }]\n";
        assert_eq!(find_assignment(text, "source", "b"), Some((3, 1)));
        // `xsource` is another key; the inline table's `source` is the match.
        assert_eq!(find_assignment(text, "source", "a"), Some((4, 25)));
        assert_eq!(find_assignment(text, "path", "/p"), Some((4, 12)));
        assert_eq!(find_assignment(text, "source", "c"), None);
        // Escapes are read as TOML reads them; a quote inside a string does not end it.
        let text = "name = \"pc\\nx\"\nx = { a = \"q\\\"\\\\\", b = 'c\\d' }\n";
        assert_eq!(find_assignment(text, "name", "pc\nx"), Some((1, 1)));
        assert_eq!(find_assignment(text, "a", "q\"\\"), Some((2, 7)));
        assert_eq!(find_assignment(text, "b", "c\\d"), Some((2, 20)));
        assert_eq!(find_assignment(text, "name", "pc"), None);
    }

    #[test]
    fn an_array_item_is_found_on_its_own_line_past_comments_and_other_keys() {
        let text = "exclude = [\"b\"]\n[packages]\ninclude = [\"a\", 'b=1',\n  # \"c\" \n  \"c\", # x\n]\nxinclude = [\"d\"]\n";
        let named = |n: &'static str| move |i: &str| i.split('=').next() == Some(n);
        assert_eq!(find_array_item(text, "include", named("a")), Some((3, 12)));
        assert_eq!(find_array_item(text, "include", named("b")), Some((3, 17)));
        // The commented-out "c" is passed over.
        assert_eq!(find_array_item(text, "include", named("c")), Some((5, 3)));
        // `xinclude` is another key; `exclude` holds "b" but is not asked about.
        assert_eq!(find_array_item(text, "include", named("d")), None);
        assert_eq!(find_array_item(text, "exclude", named("b")), Some((1, 12)));
        // A table or a scalar under the key is no array.
        assert_eq!(
            find_array_item("include = { a = 1 }\n", "include", |_| true),
            None
        );
    }
}
