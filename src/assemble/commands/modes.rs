//! The modes `chmod`, `install -m` and `mkdir -m` take: octal, or symbolic as GNU chmod reads
//! them.

/// An octal mode (`640`, `2755`), up to 07777.
pub(super) fn octal(m: &str) -> Option<u32> {
    if m.is_empty() || m.len() > 5 || !m.chars().all(|c| c.is_digit(8)) {
        return None;
    }
    u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777)
}

/// A symbolic mode (`g+rwx`, `u=rw,go=r`, `+x`, `g+s`): the function from an entry's mode
/// (and whether it is a directory) to its new mode, as GNU chmod reads it with the umask of
/// root's maintainer scripts (022) where no `ugoa` is given; `None` for a form not read
/// here (copying another class's bits, `g=u`).
pub(super) fn symbolic(m: &str) -> Option<impl Fn(u32, bool) -> u32> {
    let mut clauses = Vec::new();
    for clause in m.split(',') {
        let who_end = clause.find(|c| !"ugoa".contains(c)).unwrap_or(clause.len());
        let (who, mut rest) = clause.split_at(who_end);
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let op = rest.chars().next()?;
            if !"+-=".contains(op) {
                return None;
            }
            let end = rest[1..]
                .find(['+', '-', '='])
                .map_or(rest.len(), |i| i + 1);
            let perms = &rest[1..end];
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return None;
            }
            clauses.push((who.to_string(), op, perms.to_string()));
            rest = &rest[end..];
        }
    }
    Some(move |mode: u32, dir: bool| {
        let mut mode = mode;
        for (who, op, perms) in &clauses {
            let all = who.is_empty() || who.contains('a');
            let classes: Vec<(u32, u32)> = [('u', 6, 0o4000), ('g', 3, 0o2000), ('o', 0, 0)]
                .into_iter()
                .filter(|(c, _, _)| all || who.contains(*c))
                .map(|(_, shift, special)| (shift, special))
                .collect();
            // No `ugoa`: the umask's bits are left as they are.
            let keep = if who.is_empty() { 0o022 } else { 0 };
            let any_x = mode & 0o111 != 0;
            let mut bits = 0;
            let mut mask = 0;
            let mut specials = 0;
            for (shift, special) in &classes {
                mask |= 0o7 << shift;
                specials |= special;
                for p in perms.chars() {
                    bits |= match p {
                        'r' => 0o4 << shift,
                        'w' => 0o2 << shift,
                        'x' => 0o1 << shift,
                        'X' if dir || any_x => 0o1 << shift,
                        's' => *special,
                        't' if *shift == 0 => 0o1000,
                        _ => 0,
                    };
                }
            }
            bits &= !keep;
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                // `=` sets the classes' rwx bits (a directory keeps its set-id bits).
                _ => {
                    let special = if dir { 0 } else { specials };
                    (mode & !((mask | special) & !keep)) | bits
                }
            };
        }
        mode
    })
}
