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
    if let Some(c) = &status.cluster {
        crate::parts::cluster::render_html(c, &mut o);
    }
    crate::parts::vrrp::render_html(&status.vrrp, &mut o);
    dataplane_tables(&status.dataplane, &mut o);
    o.push_str("</body></html>\n");
    o
}

/// HAProxy-style tables: one for the frontends, one per backend with a row
/// per server coloured by state.
fn dataplane_tables(dp: &dataplane::Status, o: &mut String) {
    if !dp.frontends.is_empty() {
        o.push_str(
            "<h2>Frontends</h2><table><tr><th class=\"l\">name</th><th class=\"l\">mode</th>\
             <th class=\"l\">address</th><th class=\"l\">backend</th><th>active</th>\
             <th>connections</th><th>requests</th><th>bytes in</th><th>bytes out</th>\
             <th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th></tr>",
        );
        for f in &dp.frontends {
            let _ = write!(
                o,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.name),
                esc(&format!("{:?}", f.mode).to_lowercase()),
                f.local_addr.unwrap_or(f.bind),
                esc(&f.backend),
                f.active_connections,
                f.total_connections,
                f.requests,
                f.bytes_in,
                f.bytes_out,
                f.responses.c2xx,
                f.responses.c3xx,
                f.responses.c4xx,
                f.responses.c5xx,
            );
        }
        o.push_str("</table>");
    }
    for b in &dp.backends {
        let _ = write!(
            o,
            "<h2>Backend {} ({:?}, {} of {} up, queue {})</h2>\
             <table><tr><th class=\"l\">server</th><th class=\"l\">address</th>\
             <th class=\"l\">state</th><th>weight</th><th>active</th><th>total</th>\
             <th>errors</th><th>bytes in</th><th>bytes out</th><th class=\"l\">last check</th></tr>",
            esc(&b.name),
            b.algorithm,
            b.servers_up,
            b.servers.len(),
            b.queue_length
        );
        for s in &b.servers {
            let class = s.state.as_str().to_ascii_lowercase();
            let check = match &s.last_check {
                None => "-".to_string(),
                Some(c) if c.ok => format!("ok, {} us", c.latency_us),
                Some(c) => format!("failed: {}", c.detail.as_deref().unwrap_or("")),
            };
            let _ = write!(
                o,
                "<tr class=\"{class}\"><td class=\"l\">{}{}</td><td class=\"l\">{}</td>\
                 <td class=\"l\">{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(&s.name),
                if s.backup { " (backup)" } else { "" },
                s.address,
                s.state.as_str(),
                s.effective_weight,
                s.weight,
                s.active_connections,
                s.total_requests,
                s.errors,
                s.bytes_in,
                s.bytes_out,
                esc(&check),
            );
        }
        o.push_str("</table>");
    }
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
