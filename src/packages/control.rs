//! Parser for Debian control-file paragraphs (RFC 822 style, as in `Release` and `Packages`).

/// One paragraph: fields in file order; names compared case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// Value of a field (continuation lines joined with `\n`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All fields.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

/// Split text into paragraphs. Lines that are neither `Name: value` nor continuations are
/// reported with their line number.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, String> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match cur.fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => return Err(format!("line {}: continuation without a field", no + 1)),
            }
            continue;
        }
        match line.split_once(':') {
            Some((k, v)) => cur
                .fields
                .push((k.trim().to_string(), v.trim().to_string())),
            None => return Err(format!("line {}: expected `Field: value`", no + 1)),
        }
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn paragraphs_and_continuations() {
        let p = super::parse("Package: a\nDescription: x\n more\n\nPackage: b\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("description"), Some("x\nmore"));
        assert!(super::parse("garbage\n").is_err());
    }
}
