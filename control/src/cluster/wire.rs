//! Heartbeat messages on the wire: codec, authentication, optional
//! encryption, the key file and replay protection.
//!
//! One UDP datagram carries one message:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    magic 'H' (0x48)  'B' (0x42)   |  version = 1  |     flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   cluster id (64 bits, big endian)            |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         sender node id        |     link      |     kind      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     incarnation (64 bits)                     |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   sequence number (64 bits)                   |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          body length          |  body (plain, or ciphertext   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  and 16-byte Poly1305 tag) ...|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        HMAC-SHA256 over every byte above (32 bytes)           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `flags` bit 0: the body is encrypted with XChaCha20-Poly1305; the
//! 24-byte nonce is `sender(2) link(1) kind(1) 0(4) incarnation(8) seq(8)`,
//! unique per message because `seq` never repeats within an incarnation and
//! incarnations are random 64-bit values; the AAD is the 34 header bytes.
//! The MAC is computed over the ciphertext (encrypt-then-MAC). The MAC key
//! and the encryption key are derived from the key file with
//! HMAC-SHA256(file, "halb cluster mac v1" / "halb cluster enc v1").
//!
//! `kind` 1 (heartbeat, node to node and node to witness) body:
//!
//! ```text
//! flags u8 (quorate, standby, maintenance, leaving, failback_request)
//! members: count u8, node id u16 each       (the nodes the sender sees up)
//! echoes:  count u8, (node u16, incarnation u64, seq u64)
//!          (per peer: its incarnation and the last seq received from it)
//! fenced:  count u8, (node u16, incarnation u64)
//! left:    count u8, (node u16, incarnation u64)
//! instances: count u16, each: name_len u8, name (UTF-8), priority u8,
//!            flags u8 (eligible, holds, has_owner), owner u16
//! ```
//!
//! `kind` 2 (witness vote, witness to node) body:
//!
//! ```text
//! echo incarnation u64, echo seq u64 (the node's message it answers),
//! vote u8 (0 or 1),
//! partition: count u8, node id u16 each (the member set the vote is for)
//! ```
//!
//! Receive order: length and magic/version (`malformed`), MAC (`bad_mac`),
//! cluster id (`wrong_cluster`), sender (`unknown_node`), incarnation and
//! sequence against the [`ReplayGuard`] (`stale_incarnation`, `replay`),
//! decryption (`decrypt`), body (`malformed`). Nothing here panics on any
//! input.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{Incarnation, LinkId, NodeId, Seq};

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes a key file may hold.
pub const MIN_KEY_LEN: usize = 32;
/// Most bytes a key file may hold.
pub const MAX_KEY_LEN: usize = 4096;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 34;
/// Bytes of the HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Bytes the AEAD adds to an encrypted body.
pub const AEAD_TAG_LEN: usize = 16;
/// Largest datagram this codec writes or reads.
pub const MAX_DATAGRAM: usize = 65_000;

const MAGIC: [u8; 2] = *b"HB";
const VERSION: u8 = 1;
const FLAG_ENCRYPTED: u8 = 0x01;
const KIND_HEARTBEAT: u8 = 1;
const KIND_WITNESS_VOTE: u8 = 2;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const FLAGS: usize = 3;
    pub const CLUSTER: Range<usize> = 4..12;
    pub const SENDER: Range<usize> = 12..14;
    pub const LINK: usize = 14;
    pub const KIND: usize = 15;
    pub const INCARNATION: Range<usize> = 16..24;
    pub const SEQ: Range<usize> = 24..32;
    pub const BODY_LEN: Range<usize> = 32..34;
}

/// Problems with the key file (`cluster.auth_key_file`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file does not exist.
    #[error("cluster key file {path}: does not exist (create it with e.g. `head -c 64 /dev/urandom > {path}; chmod 600 {path}`)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cluster key file {path}: cannot read: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The path is not a regular file.
    #[error("cluster key file {path}: not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may access the file.
    #[error("cluster key file {path}: mode {mode:04o} lets group or others access it; run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Fewer than [`MIN_KEY_LEN`] bytes.
    #[error("cluster key file {path}: {len} bytes, at least {MIN_KEY_LEN} are needed")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// More than [`MAX_KEY_LEN`] bytes.
    #[error("cluster key file {path}: {len} bytes, at most {MAX_KEY_LEN} are allowed")]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// The shared secret of the cluster: the whole content of the key file, as
/// raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({} bytes)", self.bytes.len())
    }
}

impl ClusterKey {
    /// A key from bytes; `None` when shorter than [`MIN_KEY_LEN`] or longer
    /// than [`MAX_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterKey> {
        (MIN_KEY_LEN..=MAX_KEY_LEN)
            .contains(&bytes.len())
            .then(|| ClusterKey {
                bytes: bytes.to_vec(),
            })
    }

    /// Reads and checks a key file: it must exist, be a regular file, be
    /// accessible by its owner only (`mode & 0o077 == 0`) and hold
    /// [`MIN_KEY_LEN`]..=[`MAX_KEY_LEN`] bytes.
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let owned = || path.to_path_buf();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeyError::Missing { path: owned() })
            }
            Err(source) => {
                return Err(KeyError::Unreadable {
                    path: owned(),
                    source,
                })
            }
        };
        if !meta.is_file() {
            return Err(KeyError::NotAFile { path: owned() });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: owned(),
                mode,
            });
        }
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if len > MAX_KEY_LEN {
            return Err(KeyError::TooLong { path: owned(), len });
        }
        let bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable {
            path: owned(),
            source,
        })?;
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                path: owned(),
                len: bytes.len(),
            });
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                path: owned(),
                len: bytes.len(),
            });
        }
        Ok(ClusterKey { bytes })
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <HmacSha256 as Mac>::new_from_slice(&self.bytes) {
            Ok(m) => m,
            Err(_) => return Sha256::digest([&self.bytes[..], label].concat()).into(),
        };
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

/// Identifies a cluster: a hash of its node names in order. Messages of
/// another cluster (or of a node with a different node list) are rejected
/// as `wrong_cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterId(pub u64);

impl ClusterId {
    /// SHA-256 over `"halb-cluster-v1"` and each name followed by a zero
    /// byte; the first 8 bytes, big endian.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ClusterId {
        let mut h = Sha256::new();
        h.update(b"halb-cluster-v1\0");
        for n in names {
            h.update(n.as_bytes());
            h.update([0u8]);
        }
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        ClusterId(u64::from_be_bytes(b))
    }
}

/// Why a received datagram was dropped; the `reason` label of
/// `halb_cluster_rx_rejected_total`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    thiserror::Error,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// The HMAC does not match (wrong key or altered bytes).
    #[error("bad_mac")]
    BadMac,
    /// Sequence number not above the last one seen from this sender on this
    /// link in the same incarnation (or our own message reflected back).
    #[error("replay")]
    Replay,
    /// Incarnation lower than the one already known for this sender.
    #[error("stale_incarnation")]
    StaleIncarnation,
    /// The sender id is not a node of this cluster (or not the witness).
    #[error("unknown_node")]
    UnknownNode,
    /// Truncated, wrong magic, version, length or body.
    #[error("malformed")]
    Malformed,
    /// The encrypted body does not decrypt, or it is plain while
    /// `encrypt = true`.
    #[error("decrypt")]
    Decrypt,
    /// Authenticated, but the cluster id differs (different node list).
    #[error("wrong_cluster")]
    WrongCluster,
    /// Authenticated, but received on another link than the one it names.
    #[error("wrong_link")]
    WrongLink,
}

impl RejectReason {
    /// Every reason, for zero-initialised counters.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::BadMac,
        RejectReason::Replay,
        RejectReason::StaleIncarnation,
        RejectReason::UnknownNode,
        RejectReason::Malformed,
        RejectReason::Decrypt,
        RejectReason::WrongCluster,
        RejectReason::WrongLink,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadMac => "bad_mac",
            RejectReason::Replay => "replay",
            RejectReason::StaleIncarnation => "stale_incarnation",
            RejectReason::UnknownNode => "unknown_node",
            RejectReason::Malformed => "malformed",
            RejectReason::Decrypt => "decrypt",
            RejectReason::WrongCluster => "wrong_cluster",
            RejectReason::WrongLink => "wrong_link",
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A list has more entries than its count field holds.
    #[error("{what}: {count} entries, at most {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Entries given.
        count: usize,
        /// Most allowed.
        max: usize,
    },
    /// An instance name longer than 255 bytes.
    #[error("instance name of {0} bytes, at most 255")]
    NameTooLong(usize),
    /// The datagram would exceed [`MAX_DATAGRAM`].
    #[error("message of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// The AEAD refused to encrypt (never expected).
    #[error("encryption failed")]
    Encrypt,
}

/// The fixed header of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's cluster.
    pub cluster: ClusterId,
    /// The sender ([`NodeId::WITNESS`] for the witness).
    pub sender: NodeId,
    /// The link the message was sent on.
    pub link: LinkId,
    /// The sender's incarnation.
    pub incarnation: Incarnation,
    /// The sender's sequence number.
    pub seq: Seq,
}

/// Node flags carried in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeFlags {
    /// The sender considers itself quorate.
    pub quorate: bool,
    /// The sender is in standby.
    pub standby: bool,
    /// The sender is in maintenance mode.
    pub maintenance: bool,
    /// The sender is shutting down gracefully and holds nothing.
    pub leaving: bool,
    /// An operator ran `halb node failback` on the sender.
    pub failback_request: bool,
}

impl NodeFlags {
    fn to_byte(self) -> u8 {
        u8::from(self.quorate)
            | u8::from(self.standby) << 1
            | u8::from(self.maintenance) << 2
            | u8::from(self.leaving) << 3
            | u8::from(self.failback_request) << 4
    }

    fn from_byte(b: u8) -> Option<NodeFlags> {
        if b & !0x1f != 0 {
            return None;
        }
        Some(NodeFlags {
            quorate: b & 1 != 0,
            standby: b & 2 != 0,
            maintenance: b & 4 != 0,
            leaving: b & 8 != 0,
            failback_request: b & 16 != 0,
        })
    }
}

/// One VRRP instance as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// The instance name (`[[vrrp]] name`).
    pub name: String,
    /// The sender's effective priority for it.
    pub priority: u8,
    /// The sender could be master of it (modes and quorum allow it).
    pub eligible: bool,
    /// The sender holds it (is master) or has been allowed to.
    pub holds: bool,
    /// The node the sender thinks should hold it.
    pub owner: Option<NodeId>,
}

/// The last message received from a peer, echoed back so the peer can
/// tell how fresh the sender's information about it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// The peer.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// The sequence number of the last message received from it.
    pub seq: Seq,
}

/// Body of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatBody {
    /// The sender's flags.
    pub flags: NodeFlags,
    /// Nodes the sender sees up, itself included.
    pub members: Vec<NodeId>,
    /// Per peer, the last message the sender received from it.
    pub echoes: Vec<Echo>,
    /// Nodes the sender knows to be fenced, with the incarnation that was fenced.
    pub fenced: Vec<(NodeId, Incarnation)>,
    /// Nodes the sender knows to have left gracefully, with that incarnation.
    pub left: Vec<(NodeId, Incarnation)>,
    /// The sender's VRRP instances.
    pub instances: Vec<InstanceState>,
}

/// Body of a witness reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WitnessVoteBody {
    /// The incarnation of the node whose heartbeat this answers.
    pub echo_incarnation: Incarnation,
    /// The sequence number of the node's heartbeat this answers.
    pub echo: Seq,
    /// Whether the witness gives its vote to the node's partition.
    pub vote: bool,
    /// The member set the witness currently votes for.
    pub partition: Vec<NodeId>,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `kind` 1.
    Heartbeat(HeartbeatBody),
    /// `kind` 2.
    WitnessVote(WitnessVoteBody),
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Body,
}

/// Encodes, authenticates and (optionally) encrypts messages, and checks
/// received ones.
#[derive(Clone)]
pub struct Codec {
    cluster: ClusterId,
    mac: HmacSha256,
    aead: XChaCha20Poly1305,
    encrypt: bool,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("cluster", &self.cluster)
            .field("encrypt", &self.encrypt)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for `cluster` with keys derived from `key`. With `encrypt`
    /// bodies are encrypted on send and plain bodies are refused on receive.
    pub fn new(key: &ClusterKey, cluster: ClusterId, encrypt: bool) -> Codec {
        let mac_key = key.derive(b"halb cluster mac v1");
        let enc_key = key.derive(b"halb cluster enc v1");
        let mac = match <HmacSha256 as Mac>::new_from_slice(&mac_key) {
            Ok(m) => m,
            // HMAC takes keys of any length; 32 bytes always work.
            Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
        };
        Codec {
            cluster,
            mac,
            aead: XChaCha20Poly1305::new(&enc_key.into()),
            encrypt,
        }
    }

    /// The cluster id messages are stamped with.
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// Whether bodies are encrypted.
    pub fn encrypts(&self) -> bool {
        self.encrypt
    }

    /// Writes a message: header, (encrypted) body, HMAC.
    pub fn encode(&self, msg: &Message) -> Result<Vec<u8>, EncodeError> {
        let (kind, plain) = match &msg.body {
            Body::Heartbeat(b) => (KIND_HEARTBEAT, encode_heartbeat(b)?),
            Body::WitnessVote(b) => (KIND_WITNESS_VOTE, encode_witness(b)?),
        };
        let body_len = plain.len() + if self.encrypt { AEAD_TAG_LEN } else { 0 };
        let total = HEADER_LEN + body_len + MAC_LEN;
        if total > MAX_DATAGRAM {
            return Err(EncodeError::TooLarge(total));
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if self.encrypt { FLAG_ENCRYPTED } else { 0 });
        out.extend_from_slice(&msg.header.cluster.0.to_be_bytes());
        out.extend_from_slice(&msg.header.sender.0.to_be_bytes());
        out.push(msg.header.link.0);
        out.push(kind);
        out.extend_from_slice(&msg.header.incarnation.0.to_be_bytes());
        out.extend_from_slice(&msg.header.seq.0.to_be_bytes());
        // body_len <= MAX_DATAGRAM < u16::MAX, checked above.
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        if self.encrypt {
            let nonce = nonce(&msg.header, kind);
            let ct = self
                .aead
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plain,
                        aad: &out[..HEADER_LEN],
                    },
                )
                .map_err(|_| EncodeError::Encrypt)?;
            if ct.len() != body_len {
                return Err(EncodeError::Encrypt);
            }
            out.extend_from_slice(&ct);
        } else {
            out.extend_from_slice(&plain);
        }
        let mut mac = self.mac.clone();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Ok(out)
    }

    /// Authenticates and decodes a datagram without replay checks (those
    /// need state: see [`Codec::open`]).
    pub fn decode(&self, datagram: &[u8]) -> Result<Message, RejectReason> {
        let header = self.authenticate(datagram)?;
        self.body(datagram, &header)
    }

    /// The full receive path: [`Codec::decode`] plus the sender check and the
    /// replay guard, which is updated only for a message that passed every
    /// check. `link` is the link the datagram arrived on (`None` = do not
    /// check, e.g. at the witness which has one socket).
    pub fn open(
        &self,
        datagram: &[u8],
        link: Option<LinkId>,
        guard: &mut ReplayGuard,
    ) -> Result<Message, RejectReason> {
        let header = self.authenticate(datagram)?;
        if let Some(l) = link {
            if header.link != l {
                return Err(RejectReason::WrongLink);
            }
        }
        guard.check(&header)?;
        let msg = self.body(datagram, &header)?;
        guard.commit(&header);
        Ok(msg)
    }

    /// Length, magic, version, MAC and cluster id.
    fn authenticate(&self, d: &[u8]) -> Result<Header, RejectReason> {
        if d.len() < HEADER_LEN + MAC_LEN || d.len() > MAX_DATAGRAM {
            return Err(RejectReason::Malformed);
        }
        if d[field::MAGIC] != MAGIC || d[field::VERSION] != VERSION {
            return Err(RejectReason::Malformed);
        }
        let body_len = usize::from(u16::from_be_bytes([
            d[field::BODY_LEN.start],
            d[field::BODY_LEN.start + 1],
        ]));
        if HEADER_LEN + body_len + MAC_LEN != d.len() {
            return Err(RejectReason::Malformed);
        }
        let (signed, tag) = d.split_at(d.len() - MAC_LEN);
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| RejectReason::BadMac)?;
        let header = Header {
            cluster: ClusterId(be_u64(&d[field::CLUSTER])),
            sender: NodeId(u16::from_be_bytes([
                d[field::SENDER.start],
                d[field::SENDER.start + 1],
            ])),
            link: LinkId(d[field::LINK]),
            incarnation: Incarnation(be_u64(&d[field::INCARNATION])),
            seq: Seq(be_u64(&d[field::SEQ])),
        };
        if header.cluster != self.cluster {
            return Err(RejectReason::WrongCluster);
        }
        Ok(header)
    }

    /// Decrypts (if flagged) and parses the body of an authenticated datagram.
    fn body(&self, d: &[u8], header: &Header) -> Result<Message, RejectReason> {
        let flags = d[field::FLAGS];
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(RejectReason::Malformed);
        }
        let kind = d[field::KIND];
        if kind != KIND_HEARTBEAT && kind != KIND_WITNESS_VOTE {
            return Err(RejectReason::Malformed);
        }
        let raw = &d[HEADER_LEN..d.len() - MAC_LEN];
        let plain;
        let body_bytes: &[u8] = if flags & FLAG_ENCRYPTED != 0 {
            plain = self
                .aead
                .decrypt(
                    &nonce(header, kind),
                    Payload {
                        msg: raw,
                        aad: &d[..HEADER_LEN],
                    },
                )
                .map_err(|_| RejectReason::Decrypt)?;
            &plain
        } else if self.encrypt {
            return Err(RejectReason::Decrypt);
        } else {
            raw
        };
        let body = if kind == KIND_HEARTBEAT {
            Body::Heartbeat(decode_heartbeat(body_bytes).ok_or(RejectReason::Malformed)?)
        } else {
            Body::WitnessVote(decode_witness(body_bytes).ok_or(RejectReason::Malformed)?)
        };
        Ok(Message {
            header: *header,
            body,
        })
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if b.len() == 8 {
        a.copy_from_slice(b);
    }
    u64::from_be_bytes(a)
}

fn nonce(h: &Header, kind: u8) -> XNonce {
    let mut n = [0u8; 24];
    n[0..2].copy_from_slice(&h.sender.0.to_be_bytes());
    n[2] = h.link.0;
    n[3] = kind;
    n[8..16].copy_from_slice(&h.incarnation.0.to_be_bytes());
    n[16..24].copy_from_slice(&h.seq.0.to_be_bytes());
    n.into()
}

fn count_u8(what: &'static str, n: usize) -> Result<u8, EncodeError> {
    u8::try_from(n).map_err(|_| EncodeError::TooMany {
        what,
        count: n,
        max: 255,
    })
}

fn encode_heartbeat(b: &HeartbeatBody) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(
        8 + b.members.len() * 2
            + b.echoes.len() * 18
            + (b.fenced.len() + b.left.len()) * 10
            + b.instances.len() * 24,
    );
    out.push(b.flags.to_byte());
    out.push(count_u8("members", b.members.len())?);
    for m in &b.members {
        out.extend_from_slice(&m.0.to_be_bytes());
    }
    out.push(count_u8("echoes", b.echoes.len())?);
    for e in &b.echoes {
        out.extend_from_slice(&e.node.0.to_be_bytes());
        out.extend_from_slice(&e.incarnation.0.to_be_bytes());
        out.extend_from_slice(&e.seq.0.to_be_bytes());
    }
    for (what, list) in [("fenced", &b.fenced), ("left", &b.left)] {
        out.push(count_u8(what, list.len())?);
        for (n, i) in list {
            out.extend_from_slice(&n.0.to_be_bytes());
            out.extend_from_slice(&i.0.to_be_bytes());
        }
    }
    let count = u16::try_from(b.instances.len()).map_err(|_| EncodeError::TooMany {
        what: "instances",
        count: b.instances.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    for i in &b.instances {
        let name = i.name.as_bytes();
        let len = u8::try_from(name.len()).map_err(|_| EncodeError::NameTooLong(name.len()))?;
        out.push(len);
        out.extend_from_slice(name);
        out.push(i.priority);
        out.push(u8::from(i.eligible) | u8::from(i.holds) << 1 | u8::from(i.owner.is_some()) << 2);
        out.extend_from_slice(&i.owner.map_or(0, |o| o.0).to_be_bytes());
    }
    Ok(out)
}

fn encode_witness(b: &WitnessVoteBody) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(18 + b.partition.len() * 2);
    out.extend_from_slice(&b.echo_incarnation.0.to_be_bytes());
    out.extend_from_slice(&b.echo.0.to_be_bytes());
    out.push(u8::from(b.vote));
    out.push(count_u8("partition", b.partition.len())?);
    for m in &b.partition {
        out.extend_from_slice(&m.0.to_be_bytes());
    }
    Ok(out)
}

/// A bounds-checked reader: every accessor returns `None` past the end.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(be_u64)
    }
    fn end(&self) -> bool {
        self.b.is_empty()
    }
}

fn decode_heartbeat(b: &[u8]) -> Option<HeartbeatBody> {
    let mut r = Reader { b };
    let flags = NodeFlags::from_byte(r.u8()?)?;
    let n = r.u8()?;
    let mut members = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        members.push(NodeId(r.u16()?));
    }
    let n = r.u8()?;
    let mut echoes = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        echoes.push(Echo {
            node: NodeId(r.u16()?),
            incarnation: Incarnation(r.u64()?),
            seq: Seq(r.u64()?),
        });
    }
    let mut lists: [Vec<(NodeId, Incarnation)>; 2] = [Vec::new(), Vec::new()];
    for list in lists.iter_mut() {
        let n = r.u8()?;
        list.reserve(usize::from(n));
        for _ in 0..n {
            list.push((NodeId(r.u16()?), Incarnation(r.u64()?)));
        }
    }
    let [fenced, left] = lists;
    let n = r.u16()?;
    // Each instance needs at least 5 bytes: bound the allocation by the input.
    let mut instances = Vec::with_capacity(usize::from(n).min(r.b.len() / 5));
    for _ in 0..n {
        let len = r.u8()?;
        let name = std::str::from_utf8(r.take(usize::from(len))?)
            .ok()?
            .to_owned();
        let priority = r.u8()?;
        let f = r.u8()?;
        if f & !0x07 != 0 {
            return None;
        }
        let owner = r.u16()?;
        instances.push(InstanceState {
            name,
            priority,
            eligible: f & 1 != 0,
            holds: f & 2 != 0,
            owner: (f & 4 != 0).then_some(NodeId(owner)),
        });
    }
    r.end().then_some(HeartbeatBody {
        flags,
        members,
        echoes,
        fenced,
        left,
        instances,
    })
}

fn decode_witness(b: &[u8]) -> Option<WitnessVoteBody> {
    let mut r = Reader { b };
    let echo_incarnation = Incarnation(r.u64()?);
    let echo = Seq(r.u64()?);
    let vote = match r.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let n = r.u8()?;
    let mut partition = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        partition.push(NodeId(r.u16()?));
    }
    r.end().then_some(WitnessVoteBody {
        echo_incarnation,
        echo,
        vote,
        partition,
    })
}

/// Replay protection: per (sender, link) the newest incarnation and the
/// last sequence number accepted. A message is accepted when its
/// incarnation is newer, or equal with a higher sequence number.
///
/// Keeping the state per link (the link is authenticated) lets the
/// redundant links deliver one sender's messages in any relative order
/// while a message replayed on its own link, or moved to another link's
/// socket (`wrong_link`), is still refused.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    nodes: usize,
    me: Option<NodeId>,
    accept_witness: bool,
    last: HashMap<(NodeId, LinkId), (Incarnation, Seq)>,
}

impl ReplayGuard {
    /// A guard accepting senders `0..nodes` except `me`, and the witness id
    /// when `accept_witness`.
    pub fn new(nodes: usize, me: Option<NodeId>, accept_witness: bool) -> ReplayGuard {
        ReplayGuard {
            nodes,
            me,
            accept_witness,
            last: HashMap::new(),
        }
    }

    /// Checks a header without recording it.
    pub fn check(&self, h: &Header) -> Result<(), RejectReason> {
        let known = if h.sender == NodeId::WITNESS {
            self.accept_witness
        } else {
            h.sender.index() < self.nodes
        };
        if !known {
            return Err(RejectReason::UnknownNode);
        }
        if Some(h.sender) == self.me {
            return Err(RejectReason::Replay);
        }
        match self.last.get(&(h.sender, h.link)) {
            Some((inc, _)) if h.incarnation < *inc => Err(RejectReason::StaleIncarnation),
            Some((inc, seq)) if h.incarnation == *inc && h.seq <= *seq => Err(RejectReason::Replay),
            _ => Ok(()),
        }
    }

    /// Records an accepted header.
    pub fn commit(&mut self, h: &Header) {
        self.last.insert((h.sender, h.link), (h.incarnation, h.seq));
    }

    /// The newest incarnation accepted from a sender on any link.
    pub fn incarnation(&self, sender: NodeId) -> Option<Incarnation> {
        self.last
            .iter()
            .filter(|((s, _), _)| *s == sender)
            .map(|(_, (i, _))| *i)
            .max()
    }
}

/// Counts a dropped datagram in `halb_cluster_rx_rejected_total{reason}`.
pub fn count_rejected(reason: RejectReason) {
    metrics::counter!("halb_cluster_rx_rejected_total", "reason" => reason.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::from_bytes(&[7u8; 40]).expect("valid test key")
    }

    fn header(seq: u64) -> Header {
        Header {
            cluster: ClusterId(0x0102_0304_0506_0708),
            sender: NodeId(1),
            link: LinkId(0),
            incarnation: Incarnation(9),
            seq: Seq(seq),
        }
    }

    fn hb(seq: u64) -> Message {
        Message {
            header: header(seq),
            body: Body::Heartbeat(HeartbeatBody {
                flags: NodeFlags {
                    quorate: true,
                    standby: false,
                    maintenance: true,
                    leaving: false,
                    failback_request: true,
                },
                members: vec![NodeId(0), NodeId(1)],
                echoes: vec![Echo {
                    node: NodeId(0),
                    incarnation: Incarnation(4),
                    seq: Seq(77),
                }],
                fenced: vec![(NodeId(2), Incarnation(5))],
                left: vec![],
                instances: vec![InstanceState {
                    name: "web".into(),
                    priority: 150,
                    eligible: true,
                    holds: false,
                    owner: Some(NodeId(0)),
                }],
            }),
        }
    }

    /// The exact bytes of a small plain heartbeat, written out by hand from
    /// the layout above.
    #[test]
    fn plain_heartbeat_bytes() {
        let codec = Codec::new(&key(), ClusterId(0x0102_0304_0506_0708), false);
        let bytes = codec.encode(&hb(3)).expect("encodes");
        let body: Vec<u8> = vec![
            0b1_0101, // quorate | maintenance | failback_request
            2, 0, 0, 0, 1, // members 0, 1
            1, 0, 0, // one echo: node 0
            0, 0, 0, 0, 0, 0, 0, 4, // incarnation 4
            0, 0, 0, 0, 0, 0, 0, 77, // seq 77
            1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, // fenced node 2 incarnation 5
            0, // nobody left
            0, 1, // one instance
            3, b'w', b'e', b'b', 150, 0b101, 0, 0, // eligible, has owner 0
        ];
        let mut expect: Vec<u8> = vec![
            b'H', b'B', 1, 0, // magic, version, flags
            1, 2, 3, 4, 5, 6, 7, 8, // cluster
            0, 1, 0, 1, // sender 1, link 0, kind heartbeat
            0, 0, 0, 0, 0, 0, 0, 9, // incarnation
            0, 0, 0, 0, 0, 0, 0, 3, // seq
        ];
        expect.extend_from_slice(&(body.len() as u16).to_be_bytes());
        expect.extend_from_slice(&body);
        assert_eq!(&bytes[..bytes.len() - MAC_LEN], &expect[..]);
        assert_eq!(bytes.len(), expect.len() + MAC_LEN);
        assert_eq!(codec.decode(&bytes), Ok(hb(3)));
    }

    #[test]
    fn encrypted_round_trip_hides_the_body() {
        let codec = Codec::new(&key(), ClusterId(0x0102_0304_0506_0708), true);
        let bytes = codec.encode(&hb(3)).expect("encodes");
        assert_eq!(bytes[3], FLAG_ENCRYPTED);
        assert!(
            !bytes.windows(3).any(|w| w == b"web"),
            "name must not appear in clear"
        );
        assert_eq!(codec.decode(&bytes), Ok(hb(3)));
        // A plain codec with the same key reads encrypted messages too.
        let plain = Codec::new(&key(), ClusterId(0x0102_0304_0506_0708), false);
        assert_eq!(plain.decode(&bytes), Ok(hb(3)));
        // But an encrypting codec refuses plain ones.
        let pbytes = plain.encode(&hb(4)).expect("encodes");
        assert_eq!(codec.decode(&pbytes), Err(RejectReason::Decrypt));
    }

    #[test]
    fn bad_mac_wrong_cluster_and_malformed() {
        let codec = Codec::new(&key(), ClusterId(0x0102_0304_0506_0708), false);
        let mut bytes = codec.encode(&hb(3)).expect("encodes");
        let other = Codec::new(
            &ClusterKey::from_bytes(&[8u8; 32]).expect("key"),
            ClusterId(0x0102_0304_0506_0708),
            false,
        );
        assert_eq!(other.decode(&bytes), Err(RejectReason::BadMac));
        let other_cluster = Codec::new(&key(), ClusterId(1), false);
        assert_eq!(
            other_cluster.decode(&bytes),
            Err(RejectReason::WrongCluster)
        );
        assert_eq!(codec.decode(&bytes[..10]), Err(RejectReason::Malformed));
        bytes[40] ^= 1;
        assert_eq!(codec.decode(&bytes), Err(RejectReason::BadMac));
        bytes[40] ^= 1;
        bytes[2] = 2; // version
        assert_eq!(codec.decode(&bytes), Err(RejectReason::Malformed));
    }

    #[test]
    fn replay_guard_rules() {
        let codec = Codec::new(&key(), ClusterId(0x0102_0304_0506_0708), false);
        let mut g = ReplayGuard::new(3, Some(NodeId(0)), false);
        let m5 = codec.encode(&hb(5)).expect("encodes");
        let m4 = codec.encode(&hb(4)).expect("encodes");
        assert!(codec.open(&m5, Some(LinkId(0)), &mut g).is_ok());
        assert_eq!(
            codec.open(&m5, Some(LinkId(0)), &mut g),
            Err(RejectReason::Replay)
        );
        assert_eq!(
            codec.open(&m4, Some(LinkId(0)), &mut g),
            Err(RejectReason::Replay)
        );
        assert_eq!(
            codec.open(&m5, Some(LinkId(1)), &mut g),
            Err(RejectReason::WrongLink)
        );
        // A new incarnation resets the sequence.
        let mut newer = hb(1);
        newer.header.incarnation = Incarnation(10);
        let n1 = codec.encode(&newer).expect("encodes");
        assert!(codec.open(&n1, Some(LinkId(0)), &mut g).is_ok());
        let old = codec.encode(&hb(100)).expect("encodes");
        assert_eq!(
            codec.open(&old, Some(LinkId(0)), &mut g),
            Err(RejectReason::StaleIncarnation)
        );
        assert_eq!(g.incarnation(NodeId(1)), Some(Incarnation(10)));
        // Unknown sender, and our own id.
        let mut stranger = hb(1);
        stranger.header.sender = NodeId(3);
        let s = codec.encode(&stranger).expect("encodes");
        assert_eq!(codec.open(&s, None, &mut g), Err(RejectReason::UnknownNode));
        let mut own = hb(1);
        own.header.sender = NodeId(0);
        let s = codec.encode(&own).expect("encodes");
        assert_eq!(codec.open(&s, None, &mut g), Err(RejectReason::Replay));
        let mut wit = hb(1);
        wit.header.sender = NodeId::WITNESS;
        let s = codec.encode(&wit).expect("encodes");
        assert_eq!(codec.open(&s, None, &mut g), Err(RejectReason::UnknownNode));
    }

    #[test]
    fn witness_vote_round_trip() {
        let codec = Codec::new(&key(), ClusterId(5), false);
        let msg = Message {
            header: Header {
                cluster: ClusterId(5),
                sender: NodeId::WITNESS,
                link: LinkId(1),
                incarnation: Incarnation(1),
                seq: Seq(2),
            },
            body: Body::WitnessVote(WitnessVoteBody {
                echo_incarnation: Incarnation(3),
                echo: Seq(44),
                vote: true,
                partition: vec![NodeId(0), NodeId(2)],
            }),
        };
        let bytes = codec.encode(&msg).expect("encodes");
        assert_eq!(codec.decode(&bytes), Ok(msg));
    }

    #[test]
    fn encode_limits() {
        let codec = Codec::new(&key(), ClusterId(5), false);
        let mut m = hb(1);
        if let Body::Heartbeat(b) = &mut m.body {
            b.members = vec![NodeId(0); 256];
        }
        assert!(matches!(codec.encode(&m), Err(EncodeError::TooMany { .. })));
        let mut m = hb(1);
        if let Body::Heartbeat(b) = &mut m.body {
            b.instances[0].name = "x".repeat(256);
        }
        assert_eq!(codec.encode(&m), Err(EncodeError::NameTooLong(256)));
    }

    #[test]
    fn cluster_id_depends_on_names_and_order() {
        let a = ClusterId::from_names(["a", "b"]);
        assert_eq!(a, ClusterId::from_names(["a", "b"]));
        assert_ne!(a, ClusterId::from_names(["b", "a"]));
        assert_ne!(a, ClusterId::from_names(["ab"]));
    }

    /// Signs arbitrary body bytes with a valid header and MAC, so the body
    /// parsers and the decryption path see attacker-shaped input.
    fn signed(codec: &Codec, kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&codec.cluster.0.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, kind]);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        let mut mac = codec.mac.clone();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    proptest::proptest! {
        #[test]
        fn authentic_random_bodies_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            kind in 0u8..4,
            flags in 0u8..3,
            encrypt in proptest::prelude::any::<bool>(),
        ) {
            let codec = Codec::new(&key(), ClusterId(5), encrypt);
            let d = signed(&codec, kind, flags, &body);
            let mut g = ReplayGuard::new(4, None, true);
            match codec.open(&d, Some(LinkId(0)), &mut g) {
                Ok(m) => {
                    // Whatever parsed must encode back to a message that
                    // decodes to the same value.
                    let again = codec.encode(&m).expect("re-encodes");
                    proptest::prop_assert_eq!(codec.decode(&again), Ok(m));
                }
                Err(r) => proptest::prop_assert!(matches!(
                    r,
                    RejectReason::Malformed | RejectReason::Decrypt
                )),
            }
        }
    }

    #[test]
    fn authentic_bodies_parse_or_reject_precisely() {
        let codec = Codec::new(&key(), ClusterId(5), false);
        // Empty heartbeat body: flags 0, four zero counts, zero instances.
        let d = signed(&codec, KIND_HEARTBEAT, 0, &[0, 0, 0, 0, 0, 0, 0]);
        assert!(codec.decode(&d).is_ok());
        // Trailing byte.
        let d = signed(&codec, KIND_HEARTBEAT, 0, &[0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(codec.decode(&d), Err(RejectReason::Malformed));
        // Unknown flag bit.
        let d = signed(&codec, KIND_HEARTBEAT, 0, &[0x80, 0, 0, 0, 0, 0, 0]);
        assert_eq!(codec.decode(&d), Err(RejectReason::Malformed));
        // Huge instance count with no data does not allocate or panic.
        let d = signed(&codec, KIND_HEARTBEAT, 0, &[0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(codec.decode(&d), Err(RejectReason::Malformed));
        // Invalid UTF-8 name.
        let d = signed(
            &codec,
            KIND_HEARTBEAT,
            0,
            &[0, 0, 0, 0, 0, 0, 1, 1, 0xff, 1, 0, 0, 0],
        );
        assert_eq!(codec.decode(&d), Err(RejectReason::Malformed));
        // Witness vote byte other than 0/1.
        let d = signed(
            &codec,
            KIND_WITNESS_VOTE,
            0,
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0],
        );
        assert_eq!(codec.decode(&d), Err(RejectReason::Malformed));
        // Unknown kind, unknown flag.
        assert_eq!(
            codec.decode(&signed(&codec, 9, 0, &[])),
            Err(RejectReason::Malformed)
        );
        assert_eq!(
            codec.decode(&signed(&codec, KIND_HEARTBEAT, 4, &[0, 0, 0, 0, 0, 0])),
            Err(RejectReason::Malformed)
        );
        // Flagged encrypted but garbage ciphertext.
        assert_eq!(
            codec.decode(&signed(&codec, KIND_HEARTBEAT, 1, &[0u8; 40])),
            Err(RejectReason::Decrypt)
        );
    }

    #[test]
    fn key_debug_hides_bytes() {
        assert_eq!(format!("{:?}", key()), "ClusterKey(40 bytes)");
        assert!(ClusterKey::from_bytes(&[1u8; 31]).is_none());
    }
}
