//! A valid IPv4 + VRRPv3 header prefix followed by fuzzed bytes, so the
//! fuzzer reaches the advert checks behind the IPv4 header checks quickly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let total = 20 + data.len();
    let Ok(total16) = u16::try_from(total) else {
        return;
    };
    let mut datagram = Vec::with_capacity(total);
    datagram.extend_from_slice(&[0x45, 0xc0]);
    datagram.extend_from_slice(&total16.to_be_bytes());
    datagram.extend_from_slice(&[0, 1, 0, 0, 255, 112, 0, 0, 192, 0, 2, 1, 224, 0, 0, 18]);
    let sum = vrrp::wire::checksum::checksum(&datagram);
    datagram[10..12].copy_from_slice(&sum.to_be_bytes());
    datagram.extend_from_slice(data);
    vrrp::wire::fuzz_entry(&datagram);
});
