//! Balancing algorithms over a server set.
//!
//! A [`Balancer`] is built once per backend snapshot from the configured
//! servers and picks among them through a [`ServerView`], which tells for each
//! server (by index, in configuration order) whether it may take new traffic,
//! its effective weight (after slow start) and its current load. The balancer
//! never reads a clock and never does I/O; randomness is injected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::Rng;

use crate::maglev::{MaglevError, MaglevTable};

/// The algorithm of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Algorithm {
    /// Next available server in turn, weights ignored.
    RoundRobin,
    /// nginx's smooth weighted round-robin.
    WeightedRoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Power of two random choices on outstanding requests.
    P2c,
    /// Weighted random.
    Random,
    /// Maglev consistent hashing on a flow key.
    Maglev,
}

/// What the balancer may know about the servers of a backend.
pub trait ServerView {
    /// Number of servers (indices `0..len()`).
    fn len(&self) -> usize;
    /// Whether there is no server.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether server `i` may take a new connection or request now.
    fn available(&self, i: usize) -> bool;
    /// Effective weight of server `i` (after slow start), > 0 when available.
    fn weight(&self, i: usize) -> u32;
    /// Current load of server `i`: active connections (TCP) or outstanding
    /// requests (HTTP).
    fn load(&self, i: usize) -> u64;
}

/// A server as the balancer is built over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Server name, unique in its backend.
    pub name: String,
    /// Configured weight.
    pub weight: u32,
}

/// Maximum number of re-hash probes when the Maglev choice is unavailable.
const MAGLEV_PROBES: u64 = 16;

/// Per-backend picking state.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    cursor: AtomicUsize,
    /// Smooth WRR current weights, one per server.
    swrr: Mutex<Vec<i64>>,
    /// Maglev table and mapping from table index to server index.
    maglev: Option<(MaglevTable, Vec<usize>)>,
}

impl Balancer {
    /// Build a balancer over `members` (configuration order). The Maglev table
    /// (size `maglev_size`) is built only for [`Algorithm::Maglev`].
    pub fn new(
        algorithm: Algorithm,
        members: &[Member],
        maglev_size: u32,
    ) -> Result<Self, MaglevError> {
        let maglev = if algorithm == Algorithm::Maglev {
            let pairs: Vec<(&str, u32)> = members
                .iter()
                .map(|m| (m.name.as_str(), m.weight))
                .collect();
            let table = MaglevTable::build(&pairs, maglev_size)?;
            let map = table
                .names()
                .iter()
                .map(|n| members.iter().position(|m| &m.name == n).unwrap_or(0))
                .collect();
            Some((table, map))
        } else {
            None
        };
        Ok(Balancer {
            algorithm,
            cursor: AtomicUsize::new(0),
            swrr: Mutex::new(vec![0; members.len()]),
            maglev,
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The Maglev table, for [`Algorithm::Maglev`].
    pub fn maglev_table(&self) -> Option<&MaglevTable> {
        self.maglev.as_ref().map(|(t, _)| t)
    }

    /// Pick a server index, or `None` when no server is available. `key` is
    /// the flow hash for Maglev (see [`crate::maglev::hash_flow`]); other
    /// algorithms ignore it. Servers in `exclude` (already tried) are skipped.
    pub fn pick<V: ServerView + ?Sized, R: Rng + ?Sized>(
        &self,
        view: &V,
        key: Option<u64>,
        exclude: &[usize],
        rng: &mut R,
    ) -> Option<usize> {
        let n = view.len();
        let ok = |i: usize| view.available(i) && !exclude.contains(&i);
        if n == 0 {
            return None;
        }
        match self.algorithm {
            Algorithm::RoundRobin => {
                // Rotate over the servers available now, so that a server
                // leaving the rotation does not hand its turns to its
                // neighbour (every available server keeps an equal share).
                let available = (0..n).filter(|&i| ok(i)).count();
                if available == 0 {
                    return None;
                }
                let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % available;
                (0..n).filter(|&i| ok(i)).nth(turn)
            }
            Algorithm::WeightedRoundRobin => {
                let mut current = match self.swrr.lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if current.len() != n {
                    current.resize(n, 0);
                }
                let mut total: i64 = 0;
                let mut best: Option<usize> = None;
                for i in 0..n {
                    if !ok(i) {
                        continue;
                    }
                    let w = i64::from(view.weight(i).max(1));
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    current[b] -= total;
                }
                best
            }
            Algorithm::LeastConnections => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<usize> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !ok(i) {
                        continue;
                    }
                    if best.is_none_or(|b| less_loaded(view, i, b)) {
                        best = Some(i);
                    }
                }
                best
            }
            Algorithm::P2c => {
                let cands: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
                match cands.len() {
                    0 => None,
                    1 => Some(cands[0]),
                    len => {
                        let a = rng.random_range(0..len);
                        let mut b = rng.random_range(0..len - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (cands[a], cands[b]);
                        Some(if less_loaded(view, b, a) { b } else { a })
                    }
                }
            }
            Algorithm::Random => weighted_random(view, &ok, rng),
            Algorithm::Maglev => {
                let Some((table, map)) = &self.maglev else {
                    return weighted_random(view, &ok, rng);
                };
                let Some(hash) = key else {
                    return weighted_random(view, &ok, rng);
                };
                // The table covers every configured server. When the chosen
                // one cannot take traffic, probe with re-hashed keys so only
                // that server's keys move, spread in proportion to weights.
                let mut h = hash;
                for probe in 0..MAGLEV_PROBES {
                    let i = map.get(table.lookup(h) as usize).copied();
                    if let Some(i) = i.filter(|&i| i < n && ok(i)) {
                        return Some(i);
                    }
                    h = crate::maglev::hash64(probe + 1, &hash.to_be_bytes());
                }
                (0..n).find(|&i| ok(i))
            }
        }
    }
}

/// `load(a)/weight(a) < load(b)/weight(b)`, in integers.
fn less_loaded<V: ServerView + ?Sized>(view: &V, a: usize, b: usize) -> bool {
    let la = u128::from(view.load(a)) * u128::from(view.weight(b).max(1));
    let lb = u128::from(view.load(b)) * u128::from(view.weight(a).max(1));
    la < lb
}

fn weighted_random<V: ServerView + ?Sized, R: Rng + ?Sized>(
    view: &V,
    ok: &dyn Fn(usize) -> bool,
    rng: &mut R,
) -> Option<usize> {
    let n = view.len();
    let total: u64 = (0..n)
        .filter(|&i| ok(i))
        .map(|i| u64::from(view.weight(i).max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    for i in (0..n).filter(|&i| ok(i)) {
        let w = u64::from(view.weight(i).max(1));
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// A plain in-memory [`ServerView`], for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct StaticView {
    /// `(available, weight, load)` per server.
    pub servers: Vec<(bool, u32, u64)>,
}

impl ServerView for StaticView {
    fn len(&self) -> usize {
        self.servers.len()
    }
    fn available(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| s.0)
    }
    fn weight(&self, i: usize) -> u32 {
        self.servers.get(i).map_or(0, |s| s.1)
    }
    fn load(&self, i: usize) -> u64 {
        self.servers.get(i).map_or(0, |s| s.2)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn members(weights: &[u32]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                name: format!("s{i}"),
                weight: w,
            })
            .collect()
    }

    fn view(weights: &[u32]) -> StaticView {
        StaticView {
            servers: weights.iter().map(|&w| (true, w, 0)).collect(),
        }
    }

    fn counts(b: &Balancer, v: &StaticView, picks: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c = vec![0; v.len()];
        for k in 0..picks {
            let key = crate::maglev::hash_key(&(k as u64).to_be_bytes());
            if let Some(i) = b.pick(v, Some(key), &[], &mut rng) {
                c[i] += 1;
            }
        }
        c
    }

    #[test]
    fn round_robin_cycles_and_skips_unavailable() {
        let b = Balancer::new(Algorithm::RoundRobin, &members(&[1, 1, 1]), 7).unwrap();
        let mut v = view(&[1, 5, 1]);
        let mut rng = StdRng::seed_from_u64(1);
        let seq: Vec<_> = (0..6)
            .filter_map(|_| b.pick(&v, None, &[], &mut rng))
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
        v.servers[1].0 = false;
        let seq: Vec<_> = (0..8)
            .filter_map(|_| b.pick(&v, None, &[], &mut rng))
            .collect();
        assert!(!seq.contains(&1));
        // The remaining servers share the turns equally: no server inherits
        // the turns of the one that left.
        let zeros = seq.iter().filter(|&&i| i == 0).count();
        assert_eq!(zeros, 4, "{seq:?}");
        assert_eq!(b.pick(&v, None, &[0, 2], &mut rng), None);
    }

    #[test]
    fn smooth_wrr_matches_nginx_sequence() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a.
        let b = Balancer::new(Algorithm::WeightedRoundRobin, &members(&[5, 1, 1]), 7).unwrap();
        let v = view(&[5, 1, 1]);
        let mut rng = StdRng::seed_from_u64(1);
        let seq: Vec<_> = (0..7)
            .filter_map(|_| b.pick(&v, None, &[], &mut rng))
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_connections_prefers_lowest_relative_load() {
        let b = Balancer::new(Algorithm::LeastConnections, &members(&[1, 1, 1]), 7).unwrap();
        let v = StaticView {
            servers: vec![(true, 1, 5), (true, 1, 2), (true, 1, 9)],
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..5 {
            assert_eq!(b.pick(&v, None, &[], &mut rng), Some(1));
        }
        // Weight 4 with load 6 beats weight 1 with load 2.
        let v = StaticView {
            servers: vec![(true, 4, 6), (true, 1, 2)],
        };
        assert_eq!(b.pick(&v, None, &[], &mut rng), Some(0));
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_two() {
        let b = Balancer::new(Algorithm::P2c, &members(&[1, 1]), 7).unwrap();
        let v = StaticView {
            servers: vec![(true, 1, 10), (true, 1, 1)],
        };
        let c = counts(&b, &v, 200, 3);
        assert_eq!(c, vec![0, 200]);
        // With three servers the most loaded one is never chosen.
        let v = StaticView {
            servers: vec![(true, 1, 10), (true, 1, 1), (true, 1, 5)],
        };
        let b = Balancer::new(Algorithm::P2c, &members(&[1, 1, 1]), 7).unwrap();
        let c = counts(&b, &v, 300, 4);
        assert_eq!(c[0], 0);
        assert!(c[1] > 0 && c[2] > 0);
    }

    #[test]
    fn random_is_weighted() {
        let b = Balancer::new(Algorithm::Random, &members(&[1, 3]), 7).unwrap();
        let c = counts(&b, &view(&[1, 3]), 40_000, 5);
        let frac = c[1] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    #[test]
    fn maglev_is_sticky_and_avoids_unavailable() {
        let m = members(&[1, 1, 1, 1]);
        let b = Balancer::new(Algorithm::Maglev, &m, 251).unwrap();
        let mut v = view(&[1, 1, 1, 1]);
        let mut rng = StdRng::seed_from_u64(1);
        let keys: Vec<u64> = (0..1000u64)
            .map(|k| crate::maglev::hash_key(&k.to_be_bytes()))
            .collect();
        let first: Vec<_> = keys
            .iter()
            .map(|&k| b.pick(&v, Some(k), &[], &mut rng))
            .collect();
        let again: Vec<_> = keys
            .iter()
            .map(|&k| b.pick(&v, Some(k), &[], &mut rng))
            .collect();
        assert_eq!(first, again);
        v.servers[2].0 = false;
        let after: Vec<_> = keys
            .iter()
            .map(|&k| b.pick(&v, Some(k), &[], &mut rng))
            .collect();
        for (a, b) in first.iter().zip(&after) {
            assert_ne!(*b, Some(2));
            if *a != Some(2) {
                assert_eq!(a, b, "keys of healthy servers stay");
            }
        }
    }

    #[test]
    fn nothing_available_gives_none() {
        for alg in [
            Algorithm::RoundRobin,
            Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections,
            Algorithm::P2c,
            Algorithm::Random,
            Algorithm::Maglev,
        ] {
            let b = Balancer::new(alg, &members(&[1, 1]), 7).unwrap();
            let v = StaticView {
                servers: vec![(false, 1, 0), (false, 1, 0)],
            };
            let mut rng = StdRng::seed_from_u64(1);
            assert_eq!(b.pick(&v, Some(42), &[], &mut rng), None, "{alg:?}");
        }
    }
}
