//! The daemon inside a network namespace made by the test harness: fixed
//! ports (127.0.0.1:9100) cannot collide with anything outside the lab.

mod common;

use std::time::Duration;

use common::{http_get, metric, Node};
use testsupport::{Lab, Signal};

#[test]
fn daemon_in_a_namespace_serves_status_metrics_and_reloads(
) -> Result<(), Box<dyn std::error::Error>> {
    testsupport::require_root!("the daemon runs in a network namespace");
    let lab = Lab::new("dmn")?;
    let ns = lab.netns("lb")?;
    let config = "[node]\nname = \"lb-ns\"\nadmin_socket = \"{socket}\"\nmetrics_listen = \"127.0.0.1:9100\"\n";
    let mut node = Node::start(&ns, lab.dir(), "lb", config);

    let s = node.status();
    assert_eq!(s["node"], "lb-ns");
    assert_eq!(s["metrics"]["listen"], "127.0.0.1:9100");
    let m = http_get(&ns, "127.0.0.1:9100".parse().unwrap(), "/metrics")?;
    assert_eq!(metric(&m, "halb_config_generation", &[]), Some(1.0), "{m}");

    // A broken reload through SIGHUP is rejected and counted.
    let text = std::fs::read_to_string(&node.config)?;
    std::fs::write(&node.config, text.replace("name = \"lb-ns\"", "name = 7"))?;
    node.signal(Signal::SIGHUP);
    let s = node.wait_status("rejected reload", Duration::from_secs(10), |s| {
        s["last_reload"]["ok"] == false
    });
    assert_eq!(s["generation"], 1);
    let m = http_get(&ns, "127.0.0.1:9100".parse().unwrap(), "/metrics")?;
    assert_eq!(
        metric(&m, "halb_config_reload_failures_total", &[]),
        Some(1.0),
        "{m}"
    );

    assert_eq!(node.stop(Duration::from_secs(10)), Some(0));
    Ok(())
}
