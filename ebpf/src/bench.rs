//! Programs for the XDP benchmark (`benches/xdp/`): a live-frames sender,
//! a bare XDP_TX reflector (the ceiling of an interface), a counting sink
//! and a pass-through. Not used by the daemon.

use std::os::fd::OwnedFd;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use aya::maps::Array;

use crate::abi::{BenchFrame, BenchStats, BENCH_FRAME_LEN};
use crate::error::{chain, load_error, map_error, xdp_program, xdp_program_mut, Error};
use crate::plan::AttachMode;
use crate::testrun::{run_live, run_once, TestOutcome};

/// Run-time statistics the kernel keeps for one program while
/// [`enable_run_stats`] is in effect: how often it ran and for how long in
/// total. Enabling them costs two clock reads per run, so figures measured
/// with them on are slower than without.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Number of runs.
    pub runs: u64,
    /// Total run time.
    pub time: Duration,
}

impl RunStats {
    /// The runs and time between `earlier` and `self`.
    pub fn since(self, earlier: RunStats) -> RunStats {
        RunStats {
            runs: self.runs.saturating_sub(earlier.runs),
            time: self.time.saturating_sub(earlier.time),
        }
    }

    /// Mean time of one run, or `None` without runs.
    pub fn per_run(self) -> Option<Duration> {
        if self.runs == 0 {
            return None;
        }
        let nanos = self.time.as_nanos() / u128::from(self.runs);
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

/// Turn on the kernel's per-program run-time statistics
/// (`BPF_ENABLE_STATS`) for as long as the returned descriptor is open.
pub fn enable_run_stats() -> Result<OwnedFd, Error> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| Error::Load {
        what: "enable run-time statistics",
        reason: chain(&e),
    })
}

/// The run-time statistics of a loaded program.
pub(crate) fn run_stats(prog: &Xdp) -> Result<RunStats, Error> {
    let info = prog.info().map_err(|e| Error::Load {
        what: "program info",
        reason: chain(&e),
    })?;
    Ok(RunStats {
        runs: info.run_count(),
        time: info.run_time(),
    })
}

/// One of the benchmark programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchProgram {
    /// Returns XDP_TX for every frame: driven by live-frames test runs it
    /// transmits the injected frame out of the given interface.
    Send,
    /// Swaps MAC addresses and returns XDP_TX.
    Reflect,
    /// Counts and drops.
    Sink,
    /// Returns XDP_PASS: attached natively to a veth, it lets that veth
    /// receive frames its peer sends with XDP_TX or a redirect.
    Pass,
}

impl BenchProgram {
    fn name(self) -> &'static str {
        match self {
            BenchProgram::Send => "halb_bench_send",
            BenchProgram::Reflect => "halb_bench_reflect",
            BenchProgram::Sink => "halb_bench_sink",
            BenchProgram::Pass => "halb_bench_pass",
        }
    }
}

/// The loaded benchmark object.
pub struct BenchPrograms {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, BenchStats>,
    frame: Array<MapData, BenchFrame>,
}

impl std::fmt::Debug for BenchPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchPrograms").finish_non_exhaustive()
    }
}

impl BenchPrograms {
    /// Load all three programs.
    pub fn load() -> Result<BenchPrograms, Error> {
        let object = crate::object::bench().ok_or(Error::ProgramNotBuilt)?;
        let mut ebpf = Ebpf::load(object).map_err(|e| load_error("object", &e))?;
        for p in [
            BenchProgram::Send,
            BenchProgram::Reflect,
            BenchProgram::Sink,
            BenchProgram::Pass,
        ] {
            Self::prog_mut(&mut ebpf, p)?
                .load()
                .map_err(|e| load_error("verifier", &e))?;
        }
        let map = ebpf
            .take_map("halb_bench_stats")
            .ok_or(Error::MissingObject {
                kind: "map",
                name: "halb_bench_stats",
            })?;
        let stats = PerCpuArray::try_from(map).map_err(|e| map_error("halb_bench_stats", &e))?;
        let map = ebpf
            .take_map("halb_bench_frame")
            .ok_or(Error::MissingObject {
                kind: "map",
                name: "halb_bench_frame",
            })?;
        let frame = Array::try_from(map).map_err(|e| map_error("halb_bench_frame", &e))?;
        Ok(BenchPrograms { ebpf, stats, frame })
    }

    fn prog_mut(ebpf: &mut Ebpf, p: BenchProgram) -> Result<&mut Xdp, Error> {
        xdp_program_mut(ebpf, p.name())
    }

    /// Attach `program` to `interface` of the caller's namespace.
    pub fn attach(
        &mut self,
        program: BenchProgram,
        interface: &str,
        mode: AttachMode,
    ) -> Result<(), Error> {
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        Self::prog_mut(&mut self.ebpf, program)?
            .attach(interface, flags)
            .map_err(|e| Error::Attach {
                interface: interface.to_string(),
                mode: mode.as_str(),
                reason: chain(&e),
            })?;
        Ok(())
    }

    /// Send `frame` (exactly [`BENCH_FRAME_LEN`] bytes) `repeat` times out
    /// of `ifindex` (live frames, batches of `batch`). Returns the kernel's
    /// time per frame.
    pub fn send(
        &mut self,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
        batch: u32,
    ) -> Result<Duration, Error> {
        let bytes: [u8; BENCH_FRAME_LEN] = frame
            .try_into()
            .map_err(|_| Error::BadFrame("benchmark frames are 64 bytes"))?;
        self.frame
            .set(0, BenchFrame { bytes }, 0)
            .map_err(|e| map_error("halb_bench_frame", &e))?;
        let prog = xdp_program(&self.ebpf, BenchProgram::Send.name())?;
        run_live(prog, frame, ifindex, repeat, batch)
    }

    /// Run `program` once on `frame` with `BPF_PROG_TEST_RUN` (not live:
    /// nothing is sent), as if it arrived on `ingress_ifindex` of the
    /// caller's namespace.
    pub fn test_run(
        &self,
        program: BenchProgram,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
    ) -> Result<TestOutcome, Error> {
        let prog = xdp_program(&self.ebpf, program.name())?;
        run_once(prog, frame, ingress_ifindex)
    }

    /// The run-time statistics of `program` (see [`enable_run_stats`]).
    pub fn run_stats(&self, program: BenchProgram) -> Result<RunStats, Error> {
        let prog = xdp_program(&self.ebpf, program.name())?;
        run_stats(prog)
    }

    /// Frames counted by the sink so far.
    pub fn sink_stats(&self) -> Result<BenchStats, Error> {
        let v = self
            .stats
            .get(&0, 0)
            .map_err(|e| map_error("halb_bench_stats", &e))?;
        let mut total = BenchStats::default();
        for s in v.iter() {
            total.packets += s.packets;
            total.bytes += s.bytes;
        }
        Ok(total)
    }
}
