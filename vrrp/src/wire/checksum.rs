//! The Internet checksum (RFC 1071) and the IPv4 / IPv6 pseudo-headers.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running 32-bit one's-complement accumulator, as 16-bit
/// big-endian words (an odd trailing byte is padded with zero).
pub(crate) fn accumulate(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([*last, 0])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Folds the accumulator and returns the one's complement: the value to
/// place in a checksum field (computed with that field zeroed).
pub(crate) fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

/// Accumulator primed with the IPv4 pseudo-header (RFC 768 style:
/// source, destination, zero, protocol, upper-layer length).
pub(crate) fn ipv4_pseudo(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc = accumulate(acc, &[0, protocol]);
    accumulate(acc, &len.to_be_bytes())
}

/// Accumulator primed with the IPv6 pseudo-header (RFC 8200 section 8.1:
/// source, destination, 32-bit upper-layer length, zeros, next header).
pub(crate) fn ipv6_pseudo(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc = accumulate(acc, &len.to_be_bytes());
    accumulate(acc, &[0, 0, 0, next_header])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0x12]), !0x1200);
        assert_eq!(checksum(&[]), 0xffff);
    }
}
