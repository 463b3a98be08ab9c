//! `halb_xdp_*` metrics. Label values come from the config (frontend and
//! server names, interface names) or from fixed lists, so they are bounded.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `halb_xdp_packets_total` | frontend | packets to the VIP |
//! | `halb_xdp_bytes_total` | frontend | bytes of those frames |
//! | `halb_xdp_new_flows_total` | frontend | TCP SYN / UDP packets that started a flow |
//! | `halb_xdp_flow_table_misses_total` | frontend | packets not found in the flow table |
//! | `halb_xdp_icmp_too_big_total` | frontend | ICMP "too big" replies sent |
//! | `halb_xdp_dropped_total` | frontend | no live server, no route or neighbour |
//! | `halb_xdp_server_packets_total` | frontend, server | packets forwarded to the server |
//! | `halb_xdp_server_bytes_total` | frontend, server | their bytes |
//! | `halb_xdp_server_new_flows_total` | frontend, server | new flows pinned to it |
//! | `halb_xdp_server_flow_table_misses_total` | frontend, server | packets pinned to it after a miss |
//! | `halb_xdp_passed_total` | reason | packets handed to the stack untouched |
//! | `halb_xdp_drops_total` | reason | packets dropped |
//! | `halb_xdp_transmitted_total` | how (`tx`, `redirect`) | packets sent out |
//! | `halb_xdp_attached` | interface, mode | 1 while attached in that mode |

use crate::balancer::{Stats, XdpState, XdpStatus};

pub(crate) fn export(stats: &Stats, status: &XdpStatus) {
    for (frontend, fs) in &stats.frontends {
        let f = frontend.clone();
        metrics::counter!("halb_xdp_packets_total", "frontend" => f.clone())
            .absolute(fs.vip.packets);
        metrics::counter!("halb_xdp_bytes_total", "frontend" => f.clone()).absolute(fs.vip.bytes);
        metrics::counter!("halb_xdp_new_flows_total", "frontend" => f.clone())
            .absolute(fs.vip.new_flows);
        metrics::counter!("halb_xdp_flow_table_misses_total", "frontend" => f.clone())
            .absolute(fs.vip.lru_misses);
        metrics::counter!("halb_xdp_icmp_too_big_total", "frontend" => f.clone())
            .absolute(fs.vip.icmp_too_big);
        metrics::counter!("halb_xdp_dropped_total", "frontend" => f.clone())
            .absolute(fs.vip.dropped);
        for (server, b) in &fs.servers {
            let labels = [("frontend", f.clone()), ("server", server.clone())];
            metrics::counter!("halb_xdp_server_packets_total", &labels).absolute(b.packets);
            metrics::counter!("halb_xdp_server_bytes_total", &labels).absolute(b.bytes);
            metrics::counter!("halb_xdp_server_new_flows_total", &labels).absolute(b.new_flows);
            metrics::counter!("halb_xdp_server_flow_table_misses_total", &labels)
                .absolute(b.lru_misses);
        }
    }
    let g = &stats.global;
    for (reason, v) in [
        ("not_ip", g.pass_not_ip),
        ("not_vip", g.pass_not_vip),
        ("fragment", g.pass_fragment),
        ("ip_options", g.pass_ip_options),
        ("malformed", g.pass_malformed),
    ] {
        metrics::counter!("halb_xdp_passed_total", "reason" => reason).absolute(v);
    }
    for (reason, v) in [
        ("no_backend", g.drop_no_backend),
        ("no_route", g.drop_no_route),
        ("not_onlink", g.drop_not_onlink),
        ("error", g.drop_error),
    ] {
        metrics::counter!("halb_xdp_drops_total", "reason" => reason).absolute(v);
    }
    metrics::counter!("halb_xdp_transmitted_total", "how" => "tx").absolute(g.tx);
    metrics::counter!("halb_xdp_transmitted_total", "how" => "redirect").absolute(g.redirect);
    for i in &status.interfaces {
        for (mode, state) in [("native", XdpState::Native), ("generic", XdpState::Generic)] {
            let v = if i.mode == state { 1.0 } else { 0.0 };
            metrics::gauge!("halb_xdp_attached", "interface" => i.interface.clone(), "mode" => mode)
                .set(v);
        }
    }
}
