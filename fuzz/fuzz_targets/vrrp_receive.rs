//! Every VRRP parser on arbitrary bytes; parsed adverts must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vrrp::wire::fuzz_entry(data);
});
