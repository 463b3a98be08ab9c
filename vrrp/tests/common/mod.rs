//! A tiny test-only pcap reader (classic libpcap format: 24-byte global
//! header, 16-byte record headers), enough for the keepalived captures.

#![allow(dead_code)]

use std::path::PathBuf;

/// One captured frame.
pub struct Record {
    pub data: Vec<u8>,
}

/// The shared VRRP testdata directory; panics (fails the test) if missing.
pub fn testdata_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/vrrp");
    assert!(
        dir.is_dir(),
        "VRRP testdata directory missing: {} (expected shared/ beside the repository)",
        dir.display()
    );
    dir
}

/// Reads every record of an Ethernet (linktype 1) pcap file.
pub fn read_pcap(name: &str) -> Vec<Record> {
    let path = testdata_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_pcap(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let header = bytes.get(..24).ok_or("short global header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        other => return Err(format!("not a pcap file: magic {other:02x?}")),
    };
    let u32_at = |b: &[u8], off: usize| -> Result<u32, String> {
        let s = b.get(off..off + 4).ok_or("short field")?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let linktype = u32_at(header, 20)?;
    if linktype != 1 {
        return Err(format!("linktype {linktype}, expected 1 (Ethernet)"));
    }
    let mut records = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        let rec = bytes.get(off..off + 16).ok_or("short record header")?;
        let caplen = u32_at(rec, 8)? as usize;
        let origlen = u32_at(rec, 12)? as usize;
        if caplen != origlen {
            return Err(format!("truncated capture record at {off}"));
        }
        let data = bytes
            .get(off + 16..off + 16 + caplen)
            .ok_or("short record data")?
            .to_vec();
        records.push(Record { data });
        off += 16 + caplen;
    }
    Ok(records)
}
