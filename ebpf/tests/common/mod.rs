//! Shared pieces of the ebpf crate's tests.

#![allow(dead_code)]

pub mod packets;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn backend_mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x0b, last]
}
