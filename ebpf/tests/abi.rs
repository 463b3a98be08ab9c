//! The map layouts are defined once, in `bpf/halb_structs.h`: this test
//! reads the BTF of the compiled objects (with `bpftool btf dump`) and
//! checks that every `#[repr(C)]` mirror in `ebpf::abi` has the same size
//! and the same field offsets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use ebpf::abi::*;

/// struct name -> (size, [(field, byte offset)])
type Layouts = BTreeMap<String, (usize, Vec<(String, usize)>)>;

fn btf_structs(object: &[u8], tag: &str) -> Layouts {
    let path = std::env::temp_dir().join(format!("halb-abi-{}-{tag}.o", std::process::id()));
    std::fs::write(&path, object).unwrap();
    let out = Command::new(testsupport::gate::find_program("bpftool").expect("bpftool"))
        .args(["btf", "dump", "file"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut layouts = Layouts::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        // [12] STRUCT 'halb_vip_key' size=20 vlen=4
        let Some(rest) = line.split("] STRUCT '").nth(1) else {
            continue;
        };
        let name = rest.split('\'').next().unwrap().to_string();
        let field = |key: &str| -> usize {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (size, vlen) = (field("size="), field("vlen="));
        let mut members = Vec::new();
        for _ in 0..vlen {
            // 'addr' type_id=13 bits_offset=0
            let m = lines.next().unwrap().trim();
            let mname = m.split('\'').nth(1).unwrap().to_string();
            let bits: usize = m
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bits_offset="))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(bits % 8, 0, "{name}.{mname} is a bit field");
            members.push((mname, bits / 8));
        }
        layouts.insert(name, (size, members));
    }
    layouts
}

macro_rules! rust_layout {
    ($t:ty { $($f:ident),* $(,)? }) => {
        (size_of::<$t>(), vec![$((stringify!($f).to_string(), offset_of!($t, $f))),*])
    };
}

fn check(layouts: &Layouts, c_name: &str, rust: (usize, Vec<(String, usize)>)) {
    let c = layouts
        .get(c_name)
        .unwrap_or_else(|| panic!("struct {c_name} not in the object's BTF"));
    assert_eq!(c.0, rust.0, "size of {c_name}");
    assert_eq!(c.1, rust.1, "fields of {c_name} (name, offset)");
}

#[test]
fn abi_layout_matches_object_btf() {
    testsupport::require_tool!("bpftool");
    testsupport::require_tool!("clang");
    let xdp = btf_structs(ebpf::object::balancer().expect("built with clang"), "xdp");
    check(
        &xdp,
        "halb_vip_key",
        rust_layout!(VipKey {
            addr,
            port,
            proto,
            family
        }),
    );
    check(
        &xdp,
        "halb_vip_meta",
        rust_layout!(VipMeta { index, flags }),
    );
    check(
        &xdp,
        "halb_backend",
        rust_layout!(Backend {
            addr,
            dmac,
            smac,
            ifindex,
            mtu,
            generation,
            family,
            flags,
            reserved
        }),
    );
    check(
        &xdp,
        "halb_flow_key",
        rust_layout!(FlowKey {
            dst,
            dport,
            proto,
            family,
            src,
            sport,
            reserved
        }),
    );
    check(
        &xdp,
        "halb_flow",
        rust_layout!(Flow {
            backend,
            generation,
            hash,
            hash_flags,
            reserved
        }),
    );
    check(
        &xdp,
        "halb_config",
        rust_layout!(ProgramConfig {
            encap_src_v6,
            encap_src_v4,
            reserved
        }),
    );
    check(
        &xdp,
        "halb_vip_stats",
        rust_layout!(VipStats {
            packets,
            bytes,
            new_flows,
            lru_misses,
            icmp_too_big,
            dropped
        }),
    );
    check(
        &xdp,
        "halb_backend_stats",
        rust_layout!(BackendStats {
            packets,
            bytes,
            new_flows,
            lru_misses
        }),
    );
    check(
        &xdp,
        "halb_global_stats",
        rust_layout!(GlobalStats {
            pass_not_ip,
            pass_not_vip,
            pass_fragment,
            pass_ip_options,
            pass_malformed,
            drop_no_backend,
            drop_no_route,
            drop_not_onlink,
            drop_error,
            tx,
            redirect,
            icmp_too_big
        }),
    );
    let decap = btf_structs(ebpf::object::decap().expect("built"), "decap");
    check(
        &decap,
        "halb_decap_key",
        rust_layout!(DecapKey {
            addr,
            family,
            reserved
        }),
    );
    check(
        &decap,
        "halb_decap_stats",
        rust_layout!(DecapStats {
            decapsulated,
            passed
        }),
    );
    let bench = btf_structs(ebpf::object::bench().expect("built"), "bench");
    check(
        &bench,
        "halb_bench_stats",
        rust_layout!(BenchStats { packets, bytes }),
    );
}
