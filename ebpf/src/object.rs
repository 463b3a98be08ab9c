//! The compiled BPF objects, embedded at build time (see build.rs).

/// The balancer (`bpf/halb_xdp.c`), or `None` in a build without clang.
pub fn balancer() -> Option<&'static [u8]> {
    #[cfg(halb_xdp_built)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/halb_xdp.o"
        )))
    }
    #[cfg(not(halb_xdp_built))]
    {
        None
    }
}

/// The backend-side decapsulation program (`bpf/halb_decap.c`).
pub fn decap() -> Option<&'static [u8]> {
    #[cfg(halb_xdp_built)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/halb_decap.o"
        )))
    }
    #[cfg(not(halb_xdp_built))]
    {
        None
    }
}

/// The benchmark programs (`bpf/halb_bench.c`).
pub fn bench() -> Option<&'static [u8]> {
    #[cfg(halb_xdp_built)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/halb_bench.o"
        )))
    }
    #[cfg(not(halb_xdp_built))]
    {
        None
    }
}

/// Whether this build carries the XDP programs.
pub fn built() -> bool {
    balancer().is_some()
}
