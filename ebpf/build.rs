//! Builds the C XDP programs under `bpf/` with clang (`-target bpf`).
//!
//! A machine without clang or without the BPF headers (Debian packages
//! `clang` and `libbpf-dev`) still builds the crate: a `cargo:warning`
//! says why, the `halb_xdp_built` cfg stays unset, and at run time the
//! loader returns `Error::ProgramNotBuilt` so halb uses the user-space L4
//! path. When clang and the headers are there, a compile error of the
//! programs is a build error. `HALB_XDP_REQUIRED=1` turns the missing
//! toolchain into a build error too (for CI); `HALB_CLANG` names the
//! compiler.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 3] = ["halb_xdp", "halb_decap", "halb_bench"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(halb_xdp_built)");
    println!("cargo:rerun-if-env-changed=HALB_CLANG");
    println!("cargo:rerun-if-env-changed=HALB_XDP_REQUIRED");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=build.rs");
    let src = Path::new("bpf");
    if let Ok(entries) = std::fs::read_dir(src) {
        for entry in entries.flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
    let out = match env::var_os("OUT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            println!("cargo:warning=OUT_DIR is not set; not building the XDP programs");
            return;
        }
    };
    let required = env::var("HALB_XDP_REQUIRED").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        if required {
            panic!("HALB_XDP_REQUIRED=1 but the XDP programs cannot be built: {why}");
        }
        println!(
            "cargo:warning=halb is built without its XDP program ({why}); XDP frontends will \
             fall back to the user-space L4 path. Install Debian's clang and libbpf-dev to build it."
        );
    };

    let Some(clang) = find_clang() else {
        skip("clang not found".to_string());
        return;
    };
    let mut flags: Vec<String> = vec![
        "-O2".into(),
        "-g".into(),
        "-Wall".into(),
        "-target".into(),
        "bpf".into(),
    ];
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    if Path::new(&multiarch).is_dir() {
        flags.push(format!("-I{multiarch}"));
    }

    // Probe the environment (headers) apart from our own code, so a missing
    // package is a warning and a bug in the programs is an error.
    let probe = out.join("halb_probe.c");
    if let Err(e) = std::fs::write(
        &probe,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_endian.h>\n",
    ) {
        skip(format!("cannot write {}: {e}", probe.display()));
        return;
    }
    match Command::new(&clang)
        .args(&flags)
        .arg("-E")
        .arg(&probe)
        .arg("-o")
        .arg(out.join("halb_probe.i"))
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().next().unwrap_or("").to_string();
            skip(format!("BPF headers missing: {first}"));
            return;
        }
        Err(e) => {
            skip(format!("cannot run {}: {e}", clang.display()));
            return;
        }
    }

    for name in PROGRAMS {
        let input = src.join(format!("{name}.c"));
        let output = out.join(format!("{name}.o"));
        let result = Command::new(&clang)
            .args(&flags)
            .arg("-c")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output();
        match result {
            Ok(o) if o.status.success() => {
                let warnings = String::from_utf8_lossy(&o.stderr);
                for line in warnings.lines().filter(|l| !l.trim().is_empty()) {
                    println!("cargo:warning={line}");
                }
            }
            Ok(o) => panic!(
                "clang failed on {}:\n{}",
                input.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run {}: {e}", clang.display()),
        }
    }
    println!("cargo:rustc-cfg=halb_xdp_built");
}

fn find_clang() -> Option<PathBuf> {
    if let Some(c) = env::var_os("HALB_CLANG").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(c));
    }
    let path = env::var_os("PATH")?;
    for name in [
        "clang", "clang-14", "clang-15", "clang-16", "clang-17", "clang-18", "clang-19",
    ] {
        for dir in env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}
