//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, section 3.4), extended with
//! weights.
//!
//! The table is shared with the XDP program in the `ebpf` crate, so every
//! step here is fixed and documented well enough to be reproduced in C:
//!
//! 1. Servers are sorted by name (bytewise ascending). `slots[i]` is an index
//!    into that sorted list ([`MaglevTable::names`]).
//! 2. For server `s` with name bytes `n`: `offset = hash64(SEED_OFFSET, n) % M`
//!    and `skip = hash64(SEED_SKIP, n) % (M - 1) + 1`. Its preference list is
//!    `offset, offset + skip, offset + 2*skip, ... (mod M)`; since `M` is
//!    prime every list is a permutation of `0..M`.
//! 3. Filling goes in rounds over the sorted servers. Each server carries an
//!    integer credit; every round it gains its weight, and when its credit
//!    reaches the largest weight `W` it spends `W` and takes the next free
//!    slot of its preference list. With equal weights every server takes one
//!    slot per round, which is exactly the paper's algorithm. Servers of
//!    weight 0 take no slot. Filling stops when all `M` slots are taken.
//!
//! [`hash64`] is FNV-1a 64 whose offset basis is xored with a seed, finished
//! with MurmurHash3's `fmix64` so the low bits used by `% M` are well mixed:
//!
//! ```text
//! h = 0xcbf29ce484222325 ^ seed
//! for each byte b: h ^= b; h *= 0x100000001b3        (wrapping)
//! h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
//! h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33               (wrapping)
//! ```
//!
//! Flow keys are hashed with [`hash_flow`] (seed [`SEED_FLOW`]); a lookup is
//! `slots[hash % M]`.

use std::net::IpAddr;

/// Default table size: a prime, the one the paper evaluates.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Seed for the offset hash of a server name (ASCII "halboffs").
pub const SEED_OFFSET: u64 = 0x6861_6c62_6f66_6673;
/// Seed for the skip hash of a server name (ASCII "halbskip").
pub const SEED_SKIP: u64 = 0x6861_6c62_736b_6970;
/// Seed for flow keys (ASCII "halbflow").
pub const SEED_FLOW: u64 = 0x6861_6c62_666c_6f77;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Largest accepted table size (slots are `u32` server indices and the table
/// must stay small enough to push into a BPF array map).
pub const MAX_TABLE_SIZE: u32 = 1 << 24;

/// Errors building a Maglev table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// The table size must be a prime.
    #[error("maglev table size {0} is not a prime")]
    SizeNotPrime(u32),
    /// The table size is outside `[number of servers, MAX_TABLE_SIZE]`.
    #[error("maglev table size {size} must be at least the number of servers ({servers}) and at most {max}")]
    SizeOutOfRange {
        /// Requested size.
        size: u32,
        /// Number of servers with a positive weight.
        servers: usize,
        /// [`MAX_TABLE_SIZE`].
        max: u32,
    },
    /// No server has a positive weight.
    #[error("maglev table needs at least one server with a positive weight")]
    NoServers,
    /// Two servers share a name, so the order would not be defined.
    #[error("duplicate server name {0:?} in maglev table")]
    DuplicateName(String),
}

/// Seeded FNV-1a 64 with a `fmix64` finaliser (see the module docs).
pub fn hash64(seed: u64, data: &[u8]) -> u64 {
    let mut h = FNV_OFFSET_BASIS ^ seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Hash of a flow key: `hash64(SEED_FLOW, bytes)` where `bytes` is the source
/// address in network order (4 bytes for IPv4, IPv4-mapped IPv6 addresses
/// converted to IPv4 first; 16 bytes for IPv6) followed, when `src_port` is
/// given, by the port as 2 bytes big-endian.
pub fn hash_flow(src: IpAddr, src_port: Option<u16>) -> u64 {
    let mut buf = [0u8; 18];
    let mut len = match src {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                4
            }
            None => {
                buf[..16].copy_from_slice(&v6.octets());
                16
            }
        },
    };
    if let Some(port) = src_port {
        buf[len..len + 2].copy_from_slice(&port.to_be_bytes());
        len += 2;
    }
    hash64(SEED_FLOW, &buf[..len])
}

/// Hash of an arbitrary key (an HTTP header or cookie value):
/// `hash64(SEED_FLOW, key)`.
pub fn hash_key(key: &[u8]) -> u64 {
    hash64(SEED_FLOW, key)
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let n64 = u64::from(n);
    let mut d: u64 = 3;
    while d * d <= n64 {
        if n64.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// A built Maglev lookup table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    /// `slots[i]` is an index into [`MaglevTable::names`]. Length is the
    /// table size `M`.
    pub slots: Vec<u32>,
    names: Vec<String>,
}

impl MaglevTable {
    /// Build the table for `servers` (`(name, weight)`, any order) with `m`
    /// slots. `m` must be a prime, at least the number of servers with a
    /// positive weight and at most [`MAX_TABLE_SIZE`].
    pub fn build<S: AsRef<str>>(servers: &[(S, u32)], m: u32) -> Result<Self, MaglevError> {
        let mut sorted: Vec<(&str, u32)> = servers.iter().map(|(n, w)| (n.as_ref(), *w)).collect();
        sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for pair in sorted.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(MaglevError::DuplicateName(pair[0].0.to_string()));
            }
        }
        let live = sorted.iter().filter(|(_, w)| *w > 0).count();
        if live == 0 {
            return Err(MaglevError::NoServers);
        }
        if (m as usize) < live || m > MAX_TABLE_SIZE {
            return Err(MaglevError::SizeOutOfRange {
                size: m,
                servers: live,
                max: MAX_TABLE_SIZE,
            });
        }
        if !is_prime(m) {
            return Err(MaglevError::SizeNotPrime(m));
        }
        let m64 = u64::from(m);
        let max_weight = sorted.iter().map(|(_, w)| u64::from(*w)).max().unwrap_or(1);

        struct Fill {
            index: u32,
            weight: u64,
            pos: u64,
            skip: u64,
            credit: u64,
        }
        let mut fills: Vec<Fill> = Vec::with_capacity(live);
        for (index, (name, weight)) in sorted.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            let offset = hash64(SEED_OFFSET, name.as_bytes()) % m64;
            let skip = hash64(SEED_SKIP, name.as_bytes()) % (m64 - 1) + 1;
            fills.push(Fill {
                // `index < servers.len() <= m <= MAX_TABLE_SIZE`, fits u32.
                index: u32::try_from(index).unwrap_or(u32::MAX),
                weight: u64::from(*weight),
                pos: offset,
                skip,
                credit: 0,
            });
        }

        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; m as usize];
        let mut filled: u64 = 0;
        'outer: loop {
            for f in fills.iter_mut() {
                f.credit += f.weight;
                if f.credit < max_weight {
                    continue;
                }
                f.credit -= max_weight;
                // The preference list is a permutation of 0..M and fewer than M
                // slots are taken, so this finds a free slot.
                while slots[f.pos as usize] != EMPTY {
                    f.pos = (f.pos + f.skip) % m64;
                }
                slots[f.pos as usize] = f.index;
                f.pos = (f.pos + f.skip) % m64;
                filled += 1;
                if filled == m64 {
                    break 'outer;
                }
            }
        }
        Ok(MaglevTable {
            slots,
            names: sorted.iter().map(|(n, _)| (*n).to_string()).collect(),
        })
    }

    /// Server names in table order (sorted bytewise); `slots` index this.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Table size `M`.
    pub fn size(&self) -> u32 {
        // Built with `m <= MAX_TABLE_SIZE`.
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Index (into [`MaglevTable::names`]) of the server for `hash`.
    pub fn lookup(&self, hash: u64) -> u32 {
        let m = self.slots.len() as u64;
        self.slots[(hash % m) as usize]
    }

    /// Name of the server for `hash`.
    pub fn lookup_name(&self, hash: u64) -> &str {
        &self.names[self.lookup(hash) as usize]
    }

    /// Number of slots held by each server, in [`MaglevTable::names`] order.
    pub fn slot_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.names.len()];
        for &s in &self.slots {
            counts[s as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn names(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("server-{i:04}"), 1)).collect()
    }

    #[test]
    fn hash_vectors_are_stable() {
        // Reference values for a C port of `hash64` / `hash_flow`.
        assert_eq!(hash64(0, b""), fmix64(FNV_OFFSET_BASIS));
        let a = hash64(SEED_FLOW, &[127, 0, 0, 1]);
        assert_eq!(a, hash_flow(IpAddr::V4(Ipv4Addr::LOCALHOST), None));
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(
            hash_flow(mapped, Some(80)),
            hash64(SEED_FLOW, &[127, 0, 0, 1, 0, 80])
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut bytes = Ipv6Addr::LOCALHOST.octets().to_vec();
        bytes.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(hash_flow(v6, Some(443)), hash64(SEED_FLOW, &bytes));
        assert_ne!(hash64(SEED_OFFSET, b"a"), hash64(SEED_SKIP, b"a"));
        // Literal vectors (cross-checked with an independent script).
        assert_eq!(hash64(SEED_FLOW, &[127, 0, 0, 1]), 0x9db8_cab7_4a07_f5cc);
        assert_eq!(hash64(0, b"a"), 0x82a2_a958_a9be_ce5b);
        let t = MaglevTable::build(&[("c", 1u32), ("b", 1), ("a", 1)], 7).unwrap();
        assert_eq!(t.slots, vec![1, 2, 1, 2, 0, 0, 0]);
    }

    #[test]
    fn primes() {
        assert!(is_prime(2) && is_prime(3) && is_prime(65_537) && is_prime(251));
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65_536) && !is_prime(9));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            MaglevTable::build(&names(3), 100),
            Err(MaglevError::SizeNotPrime(100))
        );
        assert!(matches!(
            MaglevTable::build(&names(5), 3),
            Err(MaglevError::SizeOutOfRange { .. })
        ));
        assert_eq!(
            MaglevTable::build::<&str>(&[], 7),
            Err(MaglevError::NoServers)
        );
        assert_eq!(
            MaglevTable::build(&[("a", 0)], 7),
            Err(MaglevError::NoServers)
        );
        assert_eq!(
            MaglevTable::build(&[("a", 1), ("a", 2)], 7),
            Err(MaglevError::DuplicateName("a".into()))
        );
    }

    #[test]
    fn unweighted_balance_is_floor_or_ceil() {
        for n in [1usize, 2, 3, 7, 10, 100, 1000] {
            let t = MaglevTable::build(&names(n), DEFAULT_TABLE_SIZE).unwrap();
            let lo = DEFAULT_TABLE_SIZE / n as u32;
            let hi = lo + u32::from(!DEFAULT_TABLE_SIZE.is_multiple_of(n as u32));
            for (i, c) in t.slot_counts().iter().enumerate() {
                assert!(*c == lo || *c == hi, "n={n} server {i} has {c} slots");
            }
        }
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut a = names(50);
        let t1 = MaglevTable::build(&a, 251).unwrap();
        a.reverse();
        let t2 = MaglevTable::build(&a, 251).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.names()[0], "server-0000");
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 20;
        let all = names(n);
        let t1 = MaglevTable::build(&all, DEFAULT_TABLE_SIZE).unwrap();
        let removed = "server-0007";
        let rest: Vec<_> = all.iter().filter(|(s, _)| s != removed).cloned().collect();
        let t2 = MaglevTable::build(&rest, DEFAULT_TABLE_SIZE).unwrap();
        let keys = 100_000u64;
        let mut moved = 0u64;
        let mut moved_not_from_removed = 0u64;
        for k in 0..keys {
            let h = hash64(SEED_FLOW, &k.to_be_bytes());
            let before = t1.lookup_name(h);
            let after = t2.lookup_name(h);
            if before != after {
                moved += 1;
                if before != removed {
                    moved_not_from_removed += 1;
                }
            }
        }
        let frac = moved as f64 / keys as f64;
        // Ideal: 1/N = 5 %. The paper shows Maglev moves a little more than ideal.
        assert!(frac > 0.04 && frac < 0.10, "moved {frac}");
        // Keys of surviving servers mostly stay put.
        assert!((moved_not_from_removed as f64 / keys as f64) < 0.05);
    }

    #[test]
    fn weights_are_proportional() {
        let servers = [("a", 1u32), ("b", 2), ("c", 3), ("d", 0)];
        let t = MaglevTable::build(&servers, DEFAULT_TABLE_SIZE).unwrap();
        let c = t.slot_counts();
        assert_eq!(c[3], 0, "weight 0 takes no slot");
        let total: u32 = c.iter().sum();
        assert_eq!(total, DEFAULT_TABLE_SIZE);
        let expect = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
        for i in 0..3 {
            let got = f64::from(c[i]) / f64::from(total);
            assert!(
                (got - expect[i]).abs() < 0.01,
                "server {i}: {got} vs {}",
                expect[i]
            );
        }
    }

    #[test]
    fn deterministic() {
        let a = MaglevTable::build(&names(30), 65_537).unwrap();
        let b = MaglevTable::build(&names(30), 65_537).unwrap();
        assert_eq!(a.slots, b.slots);
        // Every slot is filled with a valid index.
        assert!(a.slots.iter().all(|&s| (s as usize) < 30));
    }
}
