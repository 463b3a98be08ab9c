//! Programs for the XDP benchmark (`benches/xdp/`): a live-frames sender,
//! a bare XDP_TX reflector (the ceiling of an interface), a counting sink
//! and a pass-through. Not used by the daemon.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::Ebpf;

use aya::maps::Array;

use crate::abi::{BenchFrame, BenchStats, BENCH_FRAME_LEN};
use crate::error::{chain, load_error, map_error, Error};
use crate::plan::AttachMode;
use crate::testrun::run_live;

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
        let name = p.name();
        let prog = ebpf.program_mut(name).ok_or(Error::MissingObject {
            kind: "program",
            name,
        })?;
        prog.try_into().map_err(|e: ProgramError| Error::Load {
            what: "program type",
            reason: chain(&e),
        })
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
        let name = BenchProgram::Send.name();
        let prog: &Xdp = self
            .ebpf
            .program(name)
            .ok_or(Error::MissingObject {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|e: ProgramError| Error::Load {
                what: "program type",
                reason: chain(&e),
            })?;
        run_live(prog, frame, ifindex, repeat, batch)
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
