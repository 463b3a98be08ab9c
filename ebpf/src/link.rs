//! XDP attachments as BPF links this crate owns (`BPF_LINK_CREATE`), so a
//! link can be handed to a new halb process (`halb run --upgrade`) and
//! switched to that process's program in one step (`BPF_LINK_UPDATE`):
//! the interface is never without a program, and the old process closing
//! its descriptor does not detach what the new one now holds. A link is
//! detached when the last descriptor of it is closed.
//!
//! aya attaches with the same system call, but keeps the link descriptor
//! to itself; these two calls are all that is needed here.

// The `bpf(2)` system call with an attribute block: the only unsafe code.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::plan::AttachMode;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
/// `enum bpf_attach_type`: `BPF_XDP`.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` / `XDP_FLAGS_DRV_MODE`.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The attribute block: the first words of `union bpf_attr`; the kernel
/// treats the rest of the union as zero.
#[repr(C, align(8))]
#[derive(Default)]
struct Attr {
    words: [u32; 8],
}

fn bpf(cmd: libc::c_long, attr: &Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised block of `size_of::<Attr>()`
    // bytes that lives across the call; the kernel only reads it for these
    // commands. The return value is checked before it is used.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Attach `prog` to interface `ifindex` in `mode`; the link's descriptor.
pub(crate) fn create(prog: BorrowedFd<'_>, ifindex: u32, mode: AttachMode) -> io::Result<OwnedFd> {
    let flags = match mode {
        AttachMode::Native => XDP_FLAGS_DRV_MODE,
        AttachMode::Generic => XDP_FLAGS_SKB_MODE,
    };
    let mut attr = Attr::default();
    // link_create: prog_fd, target_ifindex, attach_type, flags.
    attr.words[0] = fd_u32(prog)?;
    attr.words[1] = ifindex;
    attr.words[2] = BPF_XDP;
    attr.words[3] = flags;
    let fd = bpf(BPF_LINK_CREATE, &attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf returned no descriptor"))?;
    // SAFETY: BPF_LINK_CREATE returned a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Switch the program of XDP link `link` to `prog`, atomically.
pub(crate) fn update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::default();
    // link_update: link_fd, new_prog_fd, flags, old_prog_fd.
    attr.words[0] = fd_u32(link)?;
    attr.words[1] = fd_u32(prog)?;
    bpf(BPF_LINK_UPDATE, &attr).map(|_| ())
}

fn fd_u32(fd: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::other("negative descriptor"))
}

/// The index of interface `name`.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}
