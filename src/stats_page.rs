//! The stats page at `/` on `metrics_listen`: one self-contained HTML page
//! (no external assets) rendered from the daemon's status, refreshing itself.

use std::fmt::Write as _;

use crate::status::Status;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #bbb;padding:2px 8px;text-align:right}\
th{background:#446;color:#fff}td.l,th.l{text-align:left}\
tr.up td{background:#c8f0c8}tr.down td{background:#f4b4b4}\
tr.drain td{background:#f8e08c}tr.maint td{background:#b4c8f0}\
h1{font-size:18px}h2{font-size:15px;margin-bottom:0}.err{color:#b00}";

pub fn render(status: &Status) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <title>halb on {node}</title><style>{STYLE}</style></head><body>\
         <h1>halb {version} on {node}</h1>\
         <p>pid {pid}, up {up}s &middot; config {file}, generation {gen}, loaded {loaded}</p>",
        node = esc(&status.node),
        version = esc(&status.version),
        pid = status.pid,
        up = status.uptime_secs,
        file = esc(&status.config_file),
        gen = status.generation,
        loaded = esc(&status.loaded_at),
    );
    if let Some(r) = &status.last_reload {
        let verdict = if r.ok { "applied" } else { "rejected" };
        let _ = write!(
            o,
            "<p>last reload {} via {}: <b>{}</b></p>",
            esc(&r.at),
            esc(&r.trigger),
            verdict
        );
        if !r.errors.is_empty() {
            o.push_str("<pre class=\"err\">");
            for e in &r.errors {
                let _ = writeln!(o, "{}", esc(e));
            }
            o.push_str("</pre>");
        }
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
