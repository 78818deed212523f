//! HTML escaping and the page around the sections: one self-contained document (inline styles,
//! no scripts, a Content-Security-Policy that forbids every fetch), readable without JavaScript
//! and printable.

/// Escape text for an HTML element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;margin-top:2em}h3{margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
code,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}\
.ok{color:#176b2c;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
svg text{font:11px system-ui,sans-serif;fill:#222}svg .bar rect{fill:#4a78b0}\
svg .whole{fill:#eee;stroke:#999}svg .part rect{stroke:#fff}svg .p0 rect{fill:#8fb1d9}svg .p1 rect{fill:#4a78b0}svg .p2 rect{fill:#b0c94a}svg .p3 rect{fill:#d9a24a}\
svg .budget line{stroke:#b00020;stroke-width:2}svg .budget text{fill:#b00020}svg .data rect{fill:#5aa469}svg line.tick{stroke:#ddd}svg text.tick{fill:#777}\
rect.firmware{fill:#9e9e9e}rect.loader{fill:#c5a3d9}rect.kernel{fill:#4a78b0}rect.initramfs{fill:#7fb3e0}\
rect.init{fill:#d9a24a}rect.agent{fill:#5aa469}rect.checkin{fill:#333}\
.legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}\
@media print{body{margin:0}h2{page-break-before:auto}}";

/// The legend of the timeline's colours.
pub const LEGEND: &str = "<p class=\"legend\"><span><i style=\"background:#9e9e9e\"></i>firmware</span><span><i style=\"background:#c5a3d9\"></i>boot loader</span><span><i style=\"background:#4a78b0\"></i>kernel</span><span><i style=\"background:#7fb3e0\"></i>initramfs</span><span><i style=\"background:#d9a24a\"></i>init</span><span><i style=\"background:#5aa469\"></i>agent probes</span><span><i style=\"background:#333\"></i>check-in</span></p>";

/// The whole page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        esc(title)
    )
}

/// A two-column table of (key, value-as-HTML) rows.
pub fn kv_table(class: &str, rows: &[(String, String)]) -> String {
    let mut s = format!("<table class=\"{class}\">");
    for (k, v) in rows {
        s.push_str(&format!("<tr><th>{}</th><td>{v}</td></tr>", esc(k)));
    }
    s.push_str("</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_markup_character_is_escaped() {
        assert_eq!(
            esc("<script>alert(1)</script> & \"q\" 'a'\nb"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39;\nb"
        );
    }
}
