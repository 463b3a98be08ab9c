//! Heartbeat codec: key files, property tests (round trip, arbitrary bytes,
//! single-bit corruption), replay protection through the public API.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use control::cluster::wire::{
    Body, ClusterId, ClusterKey, Codec, Echo, Header, HeartbeatBody, InstanceState, KeyError,
    Message, NodeFlags, RejectReason, ReplayGuard, WitnessVoteBody,
};
use control::cluster::{Incarnation, LinkId, NodeId, Seq};
use proptest::prelude::*;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("halb-cl-wire-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    fn file(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn key_file_checks() {
    let s = Scratch::new("keys");
    let good = s.file("good", &[3u8; 64], 0o600);
    assert!(ClusterKey::load(&good).is_ok());
    let ro = s.file("ro", &[3u8; 32], 0o400);
    assert!(
        ClusterKey::load(&ro).is_ok(),
        "exactly 32 bytes, owner read-only is fine"
    );

    let missing = s.0.join("nope");
    let e = ClusterKey::load(&missing).expect_err("missing");
    assert!(matches!(e, KeyError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    let short = s.file("short", &[3u8; 31], 0o600);
    let e = ClusterKey::load(&short).expect_err("short");
    assert!(matches!(e, KeyError::TooShort { len: 31, .. }), "{e}");
    assert!(e.to_string().contains("31 bytes, at least 32"), "{e}");

    for mode in [0o640, 0o604, 0o660, 0o644, 0o601] {
        let p = s.file(&format!("m{mode:o}"), &[3u8; 64], mode);
        let e = ClusterKey::load(&p).expect_err("group/other bits");
        assert!(
            matches!(e, KeyError::Permissions { mode: m, .. } if m == mode),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    let long = s.file("long", &vec![1u8; 5000], 0o600);
    assert!(matches!(
        ClusterKey::load(&long),
        Err(KeyError::TooLong { len: 5000, .. })
    ));
    let e = ClusterKey::load(&s.0).expect_err("a directory");
    assert!(
        matches!(e, KeyError::NotAFile { .. } | KeyError::Permissions { .. }),
        "{e}"
    );
}

#[test]
fn keys_from_different_files_do_not_interoperate() {
    let s = Scratch::new("two");
    let a = ClusterKey::load(&s.file("a", &[1u8; 32], 0o600)).expect("a");
    let b = ClusterKey::load(&s.file("b", &[2u8; 32], 0o600)).expect("b");
    let id = ClusterId::from_names(["n1", "n2"]);
    let msg = Message {
        header: Header {
            cluster: id,
            sender: NodeId(1),
            link: LinkId(0),
            incarnation: Incarnation(1),
            seq: Seq(1),
        },
        body: Body::Heartbeat(HeartbeatBody::default()),
    };
    for encrypt in [false, true] {
        let bytes = Codec::new(&a, id, encrypt).encode(&msg).expect("encode");
        assert_eq!(
            Codec::new(&b, id, encrypt).decode(&bytes),
            Err(RejectReason::BadMac)
        );
        assert_eq!(Codec::new(&a, id, encrypt).decode(&bytes), Ok(msg.clone()));
    }
}

fn arb_node() -> impl Strategy<Value = NodeId> {
    any::<u16>().prop_map(NodeId)
}

fn arb_instance() -> impl Strategy<Value = InstanceState> {
    (
        "[a-z0-9._-]{0,40}",
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(arb_node()),
    )
        .prop_map(|(name, priority, eligible, holds, owner)| InstanceState {
            name,
            priority,
            eligible,
            holds,
            owner,
        })
}

fn arb_body() -> impl Strategy<Value = Body> {
    let flags = (any::<[bool; 5]>()).prop_map(|f| NodeFlags {
        quorate: f[0],
        standby: f[1],
        maintenance: f[2],
        leaving: f[3],
        failback_request: f[4],
    });
    let hb = (
        flags,
        proptest::collection::vec(arb_node(), 0..70),
        proptest::collection::vec(
            (arb_node(), any::<u64>(), any::<u64>()).prop_map(|(node, i, s)| Echo {
                node,
                incarnation: Incarnation(i),
                seq: Seq(s),
            }),
            0..20,
        ),
        (
            proptest::collection::vec((arb_node(), any::<u64>().prop_map(Incarnation)), 0..20),
            proptest::collection::vec((arb_node(), any::<u64>().prop_map(Incarnation)), 0..5),
        ),
        proptest::collection::vec(arb_instance(), 0..12),
    )
        .prop_map(|(flags, members, echoes, (fenced, left), instances)| {
            Body::Heartbeat(HeartbeatBody {
                flags,
                members,
                echoes,
                fenced,
                left,
                instances,
            })
        });
    let wv = (
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(arb_node(), 0..70),
    )
        .prop_map(|(inc, echo, vote, partition)| {
            Body::WitnessVote(WitnessVoteBody {
                echo_incarnation: Incarnation(inc),
                echo: Seq(echo),
                vote,
                partition,
            })
        });
    prop_oneof![hb, wv]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        arb_node(),
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        arb_body(),
    )
        .prop_map(|(sender, link, inc, seq, body)| Message {
            header: Header {
                cluster: ClusterId(0xfeed),
                sender,
                link: LinkId(link),
                incarnation: Incarnation(inc),
                seq: Seq(seq),
            },
            body,
        })
}

fn codec(encrypt: bool) -> Codec {
    Codec::new(
        &ClusterKey::from_bytes(&[0x5a; 48]).expect("key"),
        ClusterId(0xfeed),
        encrypt,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(msg in arb_message(), encrypt in any::<bool>()) {
        let c = codec(encrypt);
        let bytes = c.encode(&msg).expect("encodes");
        prop_assert_eq!(c.decode(&bytes), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for encrypt in [false, true] {
            let c = codec(encrypt);
            let mut g = ReplayGuard::new(8, Some(NodeId(0)), true);
            let r = c.open(&bytes, None, &mut g);
            // Random bytes essentially never carry a valid MAC.
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn prefixed_garbage_with_valid_header_is_rejected(
        msg in arb_message(),
        cut in 0usize..200,
    ) {
        let c = codec(false);
        let bytes = c.encode(&msg).expect("encodes");
        let cut = cut.min(bytes.len().saturating_sub(1));
        let truncated = &bytes[..cut];
        prop_assert!(c.decode(truncated).is_err());
    }

    #[test]
    fn any_single_bit_flip_is_rejected(msg in arb_message(), bit in any::<usize>(), encrypt in any::<bool>()) {
        let c = codec(encrypt);
        let mut bytes = c.encode(&msg).expect("encodes");
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let r = c.decode(&bytes);
        prop_assert!(
            matches!(r, Err(RejectReason::BadMac) | Err(RejectReason::Malformed)),
            "flip of bit {} gave {:?}", bit, r
        );
    }

    #[test]
    fn replay_guard_accepts_strictly_increasing_only(seqs in proptest::collection::vec(0u64..50, 1..40)) {
        let c = codec(false);
        let mut g = ReplayGuard::new(4, Some(NodeId(0)), false);
        let mut best: Option<u64> = None;
        for s in seqs {
            let m = Message {
                header: Header {
                    cluster: ClusterId(0xfeed),
                    sender: NodeId(2),
                    link: LinkId(1),
                    incarnation: Incarnation(3),
                    seq: Seq(s),
                },
                body: Body::Heartbeat(HeartbeatBody::default()),
            };
            let bytes = c.encode(&m).expect("encodes");
            let r = c.open(&bytes, Some(LinkId(1)), &mut g);
            if best.is_none_or(|b| s > b) {
                prop_assert!(r.is_ok());
                best = Some(s);
            } else {
                prop_assert_eq!(r, Err(RejectReason::Replay));
            }
        }
    }
}
