//! A two-node cluster with a witness on loopback addresses: the witness's
//! vote keeps the survivor quorate when the other node dies.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use control::cluster::coordinator::InstanceSpec;
use control::cluster::driver::{ClusterHandle, Decisions, Driver, DriverSettings};
use control::cluster::witness_server::{WitnessError, WitnessServer};
use control::config::ClusterConfig;

const KEY: [u8; 40] = [0x24; 40];

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn port() -> u16 {
    20_000 + (std::process::id() % 20_000) as u16
}

fn setup(witness: bool) -> (Scratch, ClusterConfig) {
    let dir = std::env::temp_dir().join(format!("halb-cl-wit-{witness}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("key");
    std::fs::write(&key, KEY).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let block = if witness { 8 } else { 9 };
    let w = if witness {
        format!("witness = \"127.77.{block}.9:{}\"\n", port())
    } else {
        String::new()
    };
    let text = format!(
        "[node]\nname = \"n0\"\n[cluster]\nnodes = [{{ name = \"n0\", addresses = [\"127.77.{block}.1\"] }}, {{ name = \"n1\", addresses = [\"127.77.{block}.2\"] }}]\nport = {}\nauth_key_file = \"{}\"\nheartbeat_interval = \"20ms\"\n{w}",
        port(),
        key.display()
    );
    let c = control::config::parse(&text, "witness.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .cluster
        .expect("cluster");
    (Scratch(dir), c)
}

fn start(c: &ClusterConfig, node: usize, prio: u8) -> (ClusterHandle, tokio::task::JoinHandle<()>) {
    let (d, h) = Driver::new(DriverSettings::new(
        c.clone(),
        &format!("n{node}"),
        vec![InstanceSpec {
            name: "web".into(),
            priority: prio,
        }],
    ))
    .expect("driver");
    (h, tokio::spawn(d.run()))
}

async fn wait(h: &ClusterHandle, what: &str, cond: impl Fn(&Decisions) -> bool) {
    let mut rx = h.decisions();
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        rx.wait_for(|d| cond(d)).await.is_ok()
    })
    .await;
    assert!(
        ok == Ok(true),
        "timed out waiting for {what}: {:?}",
        *h.decisions().borrow()
    );
}

fn master(d: &Decisions) -> bool {
    d.instances["web"].may_be_master
}

#[tokio::test]
async fn witness_keeps_the_survivor_of_a_pair_quorate() {
    let (_s, c) = setup(true);
    let server = WitnessServer::bind(&c, None, None).expect("witness binds");
    assert_eq!(server.local_addr(), c.witness);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let witness = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    let (h0, _j0) = start(&c, 0, 100);
    let (h1, j1) = start(&c, 1, 150);
    wait(&h1, "n1 master", master).await;
    let mut st = h0.status().await.expect("status");
    for _ in 0..100 {
        if st.core.witness_vote {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        st = h0.status().await.expect("status");
    }
    assert!(
        st.core.witness_vote,
        "the witness votes for the whole cluster"
    );
    assert_eq!((st.core.quorum.votes, st.core.quorum.expected), (3, 3));

    // n1 dies: n0 alone has 1 node vote + the witness = 2 of 3.
    h1.stop().expect("stop");
    j1.await.expect("joins");
    wait(&h0, "n0 takes over", master).await;
    let st = h0.status().await.expect("status");
    assert!(st.core.quorum.quorate, "{:?}", st.core.quorum);
    assert_eq!(st.core.quorum.votes, 2);
    assert!(st.core.witness_vote);

    // A forged datagram to the witness is rejected.
    let sock = tokio::net::UdpSocket::bind("127.77.8.3:0")
        .await
        .expect("bind");
    sock.send_to(b"not a heartbeat", c.witness.expect("witness"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop_tx.send(());
    let stats = witness.await.expect("witness ends");
    assert!(stats.answered > 10 && stats.votes_given > 10, "{stats:?}");
    assert_eq!(stats.rejected, 1, "{stats:?}");
}

#[tokio::test]
async fn without_witness_the_survivor_of_a_pair_is_not_quorate() {
    let (_s, c) = setup(false);
    assert!(matches!(
        WitnessServer::bind(&c, None, None),
        Err(WitnessError::NoAddress)
    ));
    let (h0, _j0) = start(&c, 0, 100);
    let (h1, j1) = start(&c, 1, 150);
    wait(&h1, "n1 master", master).await;
    h1.stop().expect("stop");
    j1.await.expect("joins");
    wait(&h0, "n0 loses quorum", |d| !d.quorate).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = h0.decisions().borrow().clone();
    assert!(!master(&d) && d.must_release_all);
}
