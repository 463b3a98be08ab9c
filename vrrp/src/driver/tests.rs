//! The driver against a scripted peer: one [`Driver`] in a namespace, and a
//! raw VRRP socket in another namespace on the same link that plays a
//! higher-priority master, sends malformed adverts and checks what the
//! driver sends. Needs root (skips otherwise).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use testsupport::{Lab, NsRuntime};
use tokio::sync::watch;

use super::spec::tests::spec;
use super::*;
use crate::io::{Inbound, TransportConfig, VrrpSocket};
use crate::wire::{
    receive_ipv4, Advert, AdvertInterval, ChecksumCtx, ChecksumKind, RxPolicy, V2Auth,
    V3Ipv4Checksum, Version, MULTICAST_V4,
};
use crate::{Centisecs, Priority, StateKind, VrId};

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

fn test_spec() -> InstanceSpec {
    let mut s = spec("t");
    s.advert_interval = Centisecs(5);
    s.vips = vec![crate::io::Vip::new("10.1.0.100".parse().expect("ip"), 24).expect("vip")];
    s.v3_checksum = V3Ipv4Checksum::MessageOnly;
    s
}

fn peer_advert(priority: u8) -> Advert {
    Advert {
        version: Version::V3,
        vrid: VrId(51),
        priority: Priority(priority),
        interval: AdvertInterval::V3(Centisecs(5)),
        addresses: vec!["10.1.0.100".parse().expect("ip")],
        auth: None,
    }
}

fn bytes(a: &Advert) -> Vec<u8> {
    a.to_bytes(&ChecksumCtx::Ipv4 {
        src: B,
        dst: MULTICAST_V4,
        v3: V3Ipv4Checksum::PseudoHeader,
    })
    .expect("emit")
}

async fn wait_for(
    rx: &mut watch::Receiver<InstanceStatus>,
    what: &str,
    pred: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}; status {:?}", *rx.borrow()),
    }
}

/// Runs `f(driver)` on the driver's runtime and gives the driver back.
async fn on<R: Send + 'static>(
    rt: &NsRuntime,
    mut d: Driver,
    f: impl for<'a> FnOnce(
            &'a mut Driver,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = R> + Send + 'a>>
        + Send
        + 'static,
) -> (Driver, R) {
    rt.spawn(async move {
        let r = f(&mut d).await;
        (d, r)
    })
    .await
    .expect("driver task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_takeover_reload_drops_and_checksum_mode() {
    testsupport::require_root!();
    let lab = Lab::new("drv").expect("lab");
    let a = lab.netns("a").expect("ns");
    let b = lab.netns("b").expect("ns");
    lab.link(&a, "eth0", &b, "eth0").expect("link");
    a.add_addr("eth0", "10.1.0.1/24").expect("addr");
    b.add_addr("eth0", "10.1.0.2/24").expect("addr");
    let rta = a.tokio_runtime().expect("runtime a");
    let rtb = b.tokio_runtime().expect("runtime b");

    let peer = rtb
        .spawn(async {
            VrrpSocket::open(TransportConfig {
                instance: "peer".into(),
                ifname: "eth0".into(),
                family: crate::io::Family::V4,
                source: Some(IpAddr::V4(B)),
                peers: vec![],
            })
            .map(Arc::new)
        })
        .await
        .expect("task")
        .expect("peer socket");

    let driver = rta
        .spawn(async { Driver::start(vec![test_spec()], false).await })
        .await
        .expect("task")
        .expect("driver");
    let mut st = driver.watch("t").expect("instance");
    let s = wait_for(&mut st, "master", |s| s.state == StateKind::Master).await;
    assert_eq!(s.primary_address, Some(IpAddr::V4(A)));
    assert!(s.vips_held);

    // What the driver sends: v3 with the checksum over the message only.
    let rx_sock = peer.clone();
    let seen = rtb
        .spawn(async move {
            let mut buf = vec![0u8; 2048];
            let policy = RxPolicy {
                version: Version::V3,
                vrid: VrId(51),
                family: crate::wire::Family::Ipv4,
                advert_interval: Centisecs(5),
                v2_auth: V2Auth::NONE,
                virtual_addresses: vec!["10.1.0.100".parse().expect("ip")],
                unicast_peers: vec![],
                local_addresses: vec![IpAddr::V4(B)],
                check_ttl: true,
                v3_ipv4_checksum: V3Ipv4Checksum::PseudoHeader,
            };
            loop {
                if let Ok(Inbound::Accepted(d)) = rx_sock.recv(&mut buf).await {
                    if let Ok(r) = receive_ipv4(&buf[..d.len], &policy) {
                        return r;
                    }
                }
            }
        })
        .await
        .expect("received an advert");
    assert_eq!(seen.checksum, ChecksumKind::Message);
    assert_eq!(seen.advert.priority, Priority(100));
    assert_eq!(seen.from, IpAddr::V4(A));

    // A malformed advert (bad checksum) is counted, not obeyed.
    let mut bad = bytes(&peer_advert(200));
    bad[6] ^= 0xff;
    let p = peer.clone();
    rtb.spawn(async move { p.send(&bad).await })
        .await
        .expect("task")
        .expect("send");
    let s = wait_for(&mut st, "a dropped packet", |s| s.counters.rx_dropped >= 1).await;
    assert_eq!(s.state, StateKind::Master);

    // The peer becomes a priority-200 master: the driver backs off.
    let p = peer.clone();
    let beacon = rtb.spawn(async move {
        let good = bytes(&peer_advert(200));
        loop {
            let _ = p.send(&good).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let s = wait_for(&mut st, "backup", |s| s.state == StateKind::Backup).await;
    assert_eq!(s.master, Some(IpAddr::V4(B)));
    assert_eq!(s.master_priority, Some(200));
    assert!(!s.vips_held);
    assert_eq!(
        s.last_transition.as_ref().map(|t| t.reason.as_str()),
        Some("higher_priority_advert")
    );

    // Cluster control forces a takeover; the peer's next advert wins back.
    let before = s.counters.transitions;
    driver.takeover("t").expect("takeover");
    assert!(matches!(
        driver.takeover("nope"),
        Err(DriverError::NoSuchInstance(_))
    ));
    let s = wait_for(&mut st, "takeover", |s| {
        s.counters.transitions >= before + 2 && s.state == StateKind::Backup
    })
    .await;
    assert_eq!(s.counters.router.became_master, 2, "{s:?}");

    // Reload: a new priority is applied without a transition.
    let before = s.counters.transitions;
    let mut next = test_spec();
    next.priority = Priority(120);
    let (driver, changes) = on(&rta, driver, move |d| Box::pin(d.reload(vec![next]))).await;
    let changes = changes.expect("reload");
    assert_eq!(changes, vec!["vrrp t: priority 100 -> 120".to_string()]);
    let s = wait_for(&mut st, "priority 120", |s| s.effective_priority == 120).await;
    assert_eq!(
        s.counters.transitions, before,
        "a reload caused a transition"
    );
    assert_eq!(s.state, StateKind::Backup);

    // An invalid set changes nothing; a new VRID restarts the instance.
    let mut broken = test_spec();
    broken.vips.clear();
    let (driver, r) = on(&rta, driver, move |d| Box::pin(d.reload(vec![broken]))).await;
    assert!(matches!(r, Err(DriverError::InvalidSpec { .. })));
    let mut other = test_spec();
    other.vrid = VrId(52);
    let (mut driver, changes) = on(&rta, driver, move |d| Box::pin(d.reload(vec![other]))).await;
    let changes = changes.expect("reload");
    assert!(
        changes.contains(&"vrrp t: restarted".to_string()),
        "{changes:?}"
    );
    let mut st = driver.watch("t").expect("instance");
    // VRID 52 has no competitor: master again.
    let s = wait_for(&mut st, "master on vrid 52", |s| {
        s.state == StateKind::Master
    })
    .await;
    assert_eq!(s.vrid, 52);

    // Standby: resign and stay backup.
    driver.set_standby(true);
    let s = wait_for(&mut st, "standby", |s| {
        s.standby && s.state == StateKind::Backup
    })
    .await;
    assert_eq!(
        s.last_transition.as_ref().map(|t| t.reason.as_str()),
        Some("standby")
    );
    beacon.abort();
    let (_driver, ()) = on(&rta, driver, |d| {
        Box::pin(d.shutdown(tokio::time::Instant::now() + Duration::from_secs(3)))
    })
    .await;
    let held = a.addrs("eth0").expect("addrs");
    assert!(
        !held.iter().any(|x| x.addr.to_string() == "10.1.0.100"),
        "VIP left after shutdown"
    );
}
