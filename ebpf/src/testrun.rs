//! `BPF_PROG_TEST_RUN` through aya: one frame in, the program's verdict and
//! the frame it left behind out (fixture tests), or many frames sent for
//! real in live-frames mode (the benchmark's sender).

use std::time::Duration;

use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};

use crate::error::{chain, Error};

/// An XDP verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum XdpAction {
    /// `XDP_ABORTED`
    Aborted,
    /// `XDP_DROP`
    Drop,
    /// `XDP_PASS`
    Pass,
    /// `XDP_TX`
    Tx,
    /// `XDP_REDIRECT`
    Redirect,
    /// Any other return value.
    Other(u32),
}

impl XdpAction {
    /// From the program's return value.
    pub fn from_code(code: u32) -> XdpAction {
        match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Other(other),
        }
    }
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The verdict.
    pub action: XdpAction,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's measured time of the run (`BPF_PROG_TEST_RUN`'s
    /// `duration`: the program plus the test harness's own overhead).
    pub duration: Duration,
}

/// `struct xdp_md` for `ctx_in`: the frame starts at offset 0 and arrived on
/// `ingress_ifindex` (0 = the loopback device of the caller's namespace).
pub(crate) fn xdp_md(len: usize, ingress_ifindex: u32) -> Result<[u8; 24], Error> {
    let len = u32::try_from(len).map_err(|_| Error::BadFrame("frame longer than 4 GiB"))?;
    let mut ctx = [0u8; 24];
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    ctx[4..8].copy_from_slice(&len.to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    Ok(ctx)
}

/// Frames shorter than an Ethernet header are refused by the kernel.
const MIN_FRAME: usize = 14;
/// Room for the program to grow the frame (encapsulation, ICMP).
const GROWTH: usize = 256;

/// Run `prog` once on `frame`.
pub(crate) fn run_once(
    prog: &Xdp,
    frame: &[u8],
    ingress_ifindex: Option<u32>,
) -> Result<TestOutcome, Error> {
    if frame.len() < MIN_FRAME {
        return Err(Error::BadFrame("shorter than an Ethernet header"));
    }
    let mut out = vec![0u8; frame.len() + GROWTH];
    let ctx = match ingress_ifindex {
        Some(ifindex) => Some(xdp_md(frame.len(), ifindex)?),
        None => None,
    };
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: ctx.as_ref().map(|c| &c[..]),
        ctx_out: None,
        repeat: 1,
        attrs: TestRunAttrs::new(),
    };
    let result = prog.test_run(opts).map_err(|e| Error::TestRun(chain(&e)))?;
    let len = (result.data_size_out as usize).min(out.len());
    out.truncate(len);
    Ok(TestOutcome {
        action: XdpAction::from_code(result.return_value),
        frame: out,
        duration: result.duration,
    })
}

/// Run `prog` `repeat` times on `frame` in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`): XDP_TX and XDP_REDIRECT really send.
/// Returns the kernel's measured time per run.
pub(crate) fn run_live(
    prog: &Xdp,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
    batch: u32,
) -> Result<Duration, Error> {
    if frame.len() < MIN_FRAME {
        return Err(Error::BadFrame("shorter than an Ethernet header"));
    }
    let ctx = xdp_md(frame.len(), ingress_ifindex)?;
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: None,
        ctx_in: Some(&ctx),
        ctx_out: None,
        repeat,
        attrs: TestRunAttrs::new().xdp_live_frames(batch),
    };
    let result = prog.test_run(opts).map_err(|e| Error::TestRun(chain(&e)))?;
    Ok(result.duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_from_codes() {
        assert_eq!(XdpAction::from_code(2), XdpAction::Pass);
        assert_eq!(XdpAction::from_code(3), XdpAction::Tx);
        assert_eq!(XdpAction::from_code(9), XdpAction::Other(9));
    }

    #[test]
    fn ctx_layout_is_xdp_md() {
        let ctx = xdp_md(60, 7).unwrap_or([0; 24]);
        assert_eq!(&ctx[0..4], &[0, 0, 0, 0]);
        assert_eq!(u32::from_ne_bytes([ctx[4], ctx[5], ctx[6], ctx[7]]), 60);
        assert_eq!(u32::from_ne_bytes([ctx[12], ctx[13], ctx[14], ctx[15]]), 7);
        assert!(ctx[16..].iter().all(|b| *b == 0));
    }
}
