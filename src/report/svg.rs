//! The two pictures of the report, as inline SVG: sorted bars of bytes per package (the size
//! map) and one row per boot on a shared time axis (the boot timeline). Every text is escaped;
//! every number is written with a fixed precision, so the same input gives the same bytes.

use std::fmt::Write as _;

use super::html::esc;
use crate::boottest::timeline::Phase;

/// Human bytes: `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Sorted horizontal bars, largest first: (label, bytes). Each bar is a `<g class="bar">` with
/// `data-name` and `data-bytes`, so a reader (or a test) can take the numbers from the DOM.
pub fn bars(items: &[(String, u64)], class: &str) -> String {
    let row = 18;
    let (label_w, bar_w) = (260, 520);
    let h = row * items.len().max(1) + 4;
    let max = items.iter().map(|(_, b)| *b).max().unwrap_or(1).max(1);
    let mut s = format!(
        "<svg class=\"{class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">",
        w = label_w + bar_w + 110
    );
    for (i, (name, b)) in items.iter().enumerate() {
        let y = i * row + 2;
        let len = (*b as f64 / max as f64 * bar_w as f64).max(1.0);
        let _ = write!(
            s,
            "<g class=\"bar\" data-name=\"{n}\" data-bytes=\"{b}\"><text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{n}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bh}\"/><text x=\"{vx:.1}\" y=\"{ty}\">{v}</text></g>",
            n = esc(name),
            tx = label_w - 6,
            ty = y + 12,
            bh = row - 4,
            vx = label_w as f64 + len + 6.0,
            v = bytes(*b),
        );
    }
    s.push_str("</svg>");
    s
}

/// The disk and its partitions as one stacked bar; below it, the data written against the
/// size budget (red mark) on the same scale.
pub fn disk(
    parts: &[(String, u64, u64)],
    size: u64,
    data: Option<u64>,
    budget: Option<u64>,
) -> String {
    let w = 880.0;
    let full = size.max(budget.unwrap_or(0)).max(data.unwrap_or(0)).max(1);
    let scale = |b: u64| b as f64 / full as f64 * w;
    let h = if data.is_some() || budget.is_some() {
        76
    } else {
        46
    };
    let mut s = format!(
        "<svg class=\"disk\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{tw}\" height=\"{h}\" viewBox=\"0 0 {tw} {h}\" role=\"img\"><rect class=\"whole\" x=\"0\" y=\"4\" width=\"{:.1}\" height=\"22\"/>",
        scale(size),
        tw = w + 10.0,
    );
    for (i, (name, off, len)) in parts.iter().enumerate() {
        let _ = write!(
            s,
            "<g class=\"part p{}\" data-name=\"{n}\" data-bytes=\"{len}\"><rect x=\"{:.1}\" y=\"4\" width=\"{:.1}\" height=\"22\"/><text x=\"{:.1}\" y=\"40\">{n}</text></g>",
            i % 4,
            scale(*off),
            scale(*len).max(1.0),
            scale(*off) + 2.0,
            n = esc(name),
        );
    }
    if let Some(d) = data {
        let _ = write!(
            s,
            "<g class=\"data\" data-bytes=\"{d}\"><rect x=\"0\" y=\"50\" width=\"{:.1}\" height=\"12\"/><text x=\"{:.1}\" y=\"60\">data written {}</text></g>",
            scale(d).max(1.0),
            scale(d) + 6.0,
            bytes(d)
        );
    }
    if let Some(b) = budget {
        let x = scale(b);
        let _ = write!(
            s,
            "<g class=\"budget\" data-bytes=\"{b}\"><line x1=\"{x:.1}\" y1=\"46\" x2=\"{x:.1}\" y2=\"66\"/><text x=\"{:.1}\" y=\"75\" text-anchor=\"end\">budget {}</text></g>",
            x,
            bytes(b)
        );
    }
    s.push_str("</svg>");
    s
}

/// CSS class of a phase: agents share one colour.
fn kind(name: &str) -> &'static str {
    match name {
        "firmware" | "firmware and boot loader" => "firmware",
        "boot loader" => "loader",
        "kernel" | "kernel and init" => "kernel",
        "initramfs" => "initramfs",
        "init" => "init",
        "check-in" => "checkin",
        _ => "agent",
    }
}

/// One row per boot on one time axis. Rows are `<g class="boot" data-boot="LABEL">`, phases
/// `<rect class="phase KIND" data-phase="NAME" data-start data-end>` in time order.
pub fn timeline(rows: &[(String, Vec<Phase>)]) -> String {
    let (label_w, w) = (190.0, 700.0);
    let row = 30.0;
    let end = rows
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.end))
        .fold(1.0_f64, f64::max);
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0]
        .into_iter()
        .find(|s| end / s <= 12.0)
        .unwrap_or(120.0);
    let x = |t: f64| label_w + t / end * w;
    let h = row * rows.len() as f64 + 30.0;
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{tw:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {tw:.0} {h:.0}\" role=\"img\">",
        tw = label_w + w + 20.0
    );
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = write!(
            s,
            "<line class=\"tick\" x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{t:.0} s</text>",
            x(t),
            h - 18.0,
            h - 4.0
        );
        t += step;
    }
    for (i, (label, phases)) in rows.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let _ = write!(
            s,
            "<g class=\"boot\" data-boot=\"{l}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{l}</text>",
            label_w - 8.0,
            y + 15.0,
            l = esc(label)
        );
        let agents = phases
            .iter()
            .filter(|p| kind(&p.name) == "agent")
            .count()
            .max(1);
        let mut lane = 0;
        for p in phases {
            let (py, ph) = if kind(&p.name) == "agent" {
                lane += 1;
                let hh = 20.0 / agents as f64;
                (y + (lane - 1) as f64 * hh, hh)
            } else {
                (y, 20.0)
            };
            let _ = write!(
                s,
                "<rect class=\"phase {k}\" data-phase=\"{n}\" data-start=\"{a:.3}\" data-end=\"{b:.3}\" x=\"{:.1}\" y=\"{py:.1}\" width=\"{:.1}\" height=\"{ph:.1}\"><title>{n}: {a:.2} s to {b:.2} s ({d:.2} s)</title></rect>",
                x(p.start),
                (x(p.end) - x(p.start)).max(0.5),
                k = kind(&p.name),
                n = esc(&p.name),
                a = p.start,
                b = p.end,
                d = p.seconds(),
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn labels_are_escaped_and_bars_keep_their_order() {
        let s = bars(
            &[("<script>x</script>".into(), 10), ("b\"q".into(), 5)],
            "sizemap",
        );
        assert!(!s.contains("<script>"));
        assert!(s.contains("data-name=\"&lt;script&gt;x&lt;/script&gt;\""));
        assert!(s.contains("b&quot;q"));
        assert!(s.find("data-bytes=\"10\"") < s.find("data-bytes=\"5\""));
    }
}
