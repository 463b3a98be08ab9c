//! The driver's metrics. Labels are bounded: the instance name (from the
//! config) and fixed sets (`to`, `reason`).

use crate::StateKind;

/// `halb_vrrp_state` value of a state: 0 init, 1 backup, 2 master, 3 fault.
pub fn state_value(state: StateKind) -> f64 {
    match state {
        StateKind::Initialize => 0.0,
        StateKind::Backup => 1.0,
        StateKind::Master => 2.0,
        StateKind::Fault => 3.0,
    }
}

/// Registers descriptions of every VRRP metric (no-op without a recorder).
pub fn describe() {
    metrics::describe_gauge!(
        "halb_vrrp_state",
        "VRRP instance state: 0 initialize, 1 backup, 2 master, 3 fault"
    );
    metrics::describe_counter!(
        "halb_vrrp_transitions_total",
        "VRRP state transitions, by new state"
    );
    metrics::describe_counter!(
        "halb_vrrp_rx_dropped_total",
        "VRRP packets received and dropped, by reason"
    );
    metrics::describe_gauge!(
        "halb_vrrp_priority",
        "Effective VRRP priority (base priority adjusted by tracking)"
    );
    metrics::describe_counter!("halb_vrrp_adverts_sent_total", "VRRP adverts sent");
    metrics::describe_counter!(
        "halb_vrrp_adverts_received_total",
        "VRRP adverts that passed the receive checks"
    );
    metrics::describe_counter!(
        "halb_vrrp_send_errors_total",
        "VRRP adverts the kernel refused to send"
    );
    metrics::describe_counter!(
        "halb_vrrp_vip_errors_total",
        "Virtual IP add/remove requests that failed"
    );
    metrics::describe_counter!(
        "halb_vrrp_gratuitous_bursts_total",
        "Gratuitous ARP / unsolicited NA bursts started"
    );
}

pub(crate) fn set_state(instance: &str, state: StateKind) {
    metrics::gauge!("halb_vrrp_state", "instance" => instance.to_owned()).set(state_value(state));
}

pub(crate) fn transition(instance: &str, to: StateKind) {
    metrics::counter!(
        "halb_vrrp_transitions_total",
        "instance" => instance.to_owned(),
        "to" => to.as_str()
    )
    .increment(1);
}

pub(crate) fn priority(instance: &str, priority: u8) {
    metrics::gauge!("halb_vrrp_priority", "instance" => instance.to_owned())
        .set(f64::from(priority));
}

pub(crate) fn count(name: &'static str, instance: &str) {
    metrics::counter!(name, "instance" => instance.to_owned()).increment(1);
}
