//! `vrrp::io` against the real kernel, in network namespaces (root needed;
//! without root these tests print SKIP, or fail under CI=true).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use vrrp::io::frames::ETH_P_ALL;
use vrrp::io::{
    link_local_v6, watch_links, Burst, Family, FrameReceiver, GratuitousSender, Inbound, Netlink,
    Removed, TransportConfig, Vip, VipMover, VmacMode, VmacSpec, Vmacs, VrrpSocket,
};

use testsupport::{Lab, Netns};
use vrrp::wire::garp::{GratuitousArp, MacAddr, UnsolicitedNa};

/// `ip <args>` inside `ns`; its stdout. Panics on failure.
fn ip_out(ns: &Netns, args: &[&str]) -> String {
    let out = ns.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `make()`'s future on a current-thread tokio runtime, on a thread
/// inside `ns` (so every socket it opens lives in `ns`).
fn spawn_in<F, Fut, R>(ns: &Netns, make: F) -> std::thread::JoinHandle<testsupport::Result<R>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
    R: Send + 'static,
{
    ns.spawn_thread(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(make())
    })
    .expect("namespace thread")
}

/// [`spawn_in`] and wait for the result.
fn block_in<F, Fut, R>(ns: &Netns, make: F) -> R
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
    R: Send + 'static,
{
    join(spawn_in(ns, make))
}

fn new_lab(tag: &str) -> Lab {
    Lab::new(tag).expect("lab")
}

fn join<R>(h: std::thread::JoinHandle<testsupport::Result<R>>) -> R {
    match h.join() {
        Ok(r) => r.expect("entering the namespace"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn vip(s: &str, prefix: u8) -> Vip {
    Vip::new(ip(s), prefix).expect("test VIP")
}

/// The `ip -j addr show dev <dev>` objects with `"local":"<addr>"`: count and text.
fn addr_json(ns: &Netns, dev: &str, addr: &str) -> (usize, String) {
    let json = ip_out(ns, &["-j", "addr", "show", "dev", dev]);
    let needle = format!("\"local\":\"{addr}\"");
    (json.matches(&needle).count(), json)
}

/// The JSON object of one address inside `ip -j addr` output (text up to its closing brace).
fn addr_object<'a>(json: &'a str, addr: &str) -> &'a str {
    let needle = format!("\"local\":\"{addr}\"");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("{addr} not in {json}"));
    let rest = &json[start..];
    &rest[..rest.find('}').unwrap_or(rest.len())]
}

fn one_ns_with_link(lab: &Lab) -> Netns {
    let ns = lab.netns("n").expect("netns");
    // No dummy module on every kernel: a veth pair inside the namespace.
    ip_out(
        &ns,
        &["link", "add", "d0", "type", "veth", "peer", "name", "d0p"],
    );
    ip_out(&ns, &["link", "set", "d0", "up"]);
    ip_out(&ns, &["link", "set", "d0p", "up"]);
    ns
}

#[test]
fn io_vip_add_and_delete_are_idempotent() {
    testsupport::require_root!();
    let lab = new_lab("vip");
    let ns = one_ns_with_link(&lab);
    let results = block_in(&ns, || async {
        let mover = VipMover::new(Netlink::connect().expect("netlink"));
        let idx = mover.netlink().ifindex("d0").await.expect("ifindex");
        let v4 = vip("10.9.0.1", 24);
        let v6 = vip("2001:db8:9::1", 64);
        mover.add(idx, v4).await.expect("add v4");
        mover.add(idx, v4).await.expect("add v4 again");
        mover.add(idx, v6).await.expect("add v6");
        mover.add(idx, v6).await.expect("add v6 again");
        let listed = mover.list(idx).await.expect("list");
        (idx, listed)
    });
    let (idx, listed) = results;
    let (count, json) = addr_json(&ns, "d0", "10.9.0.1");
    assert_eq!(count, 1, "one copy of the IPv4 VIP: {json}");
    let obj = addr_object(&json, "10.9.0.1");
    assert!(
        obj.contains("\"prefixlen\":24,\"broadcast\":\"10.9.0.255\""),
        "broadcast set: {obj}"
    );
    let (count6, json6) = addr_json(&ns, "d0", "2001:db8:9::1");
    assert_eq!(count6, 1, "one copy of the IPv6 VIP: {json6}");
    let obj6 = addr_object(&json6, "2001:db8:9::1");
    assert!(
        obj6.contains("\"nodad\":true") && !obj6.contains("tentative"),
        "IPv6 VIP usable at once: {obj6}"
    );
    let v6 = listed
        .iter()
        .find(|a| a.addr == ip("2001:db8:9::1"))
        .expect("listed v6 VIP");
    assert!(v6.nodad && !v6.tentative, "{v6:?}");
    assert!(listed
        .iter()
        .any(|a| a.addr == ip("10.9.0.1") && a.prefix_len == 24 && a.ifindex == idx));

    let removed = block_in(&ns, move || async move {
        let mover = VipMover::new(Netlink::connect().expect("netlink"));
        let mut out = Vec::new();
        for v in [vip("10.9.0.1", 24), vip("2001:db8:9::1", 64)] {
            out.push(mover.del(idx, v).await.expect("del"));
            out.push(mover.del(idx, v).await.expect("del again"));
        }
        out
    });
    assert_eq!(
        removed,
        vec![
            Removed::Yes,
            Removed::WasAbsent,
            Removed::Yes,
            Removed::WasAbsent
        ]
    );
    assert_eq!(addr_json(&ns, "d0", "10.9.0.1").0, 0);
    assert_eq!(addr_json(&ns, "d0", "2001:db8:9::1").0, 0);
}

#[test]
fn io_vip_errors_are_named() {
    testsupport::require_root!();
    let lab = new_lab("viperr");
    let ns = one_ns_with_link(&lab);
    block_in(&ns, || async {
        let mover = VipMover::new(Netlink::connect().expect("netlink"));
        let err = mover
            .cleanup_stale("nosuchif0", &[vip("10.9.0.1", 32)])
            .await
            .expect_err("missing interface");
        assert!(
            matches!(err, vrrp::io::IoError::NoSuchInterface(ref n) if n == "nosuchif0"),
            "{err}"
        );
        let err = mover
            .add(9999, vip("10.9.0.1", 32))
            .await
            .expect_err("bad ifindex");
        assert_eq!(err.netlink_errno(), Some(libc::ENODEV), "{err}");
    });
}

#[test]
fn io_cleanup_stale_removes_only_leftover_vips() {
    testsupport::require_root!();
    let lab = new_lab("stale");
    let ns = one_ns_with_link(&lab);
    ip_out(&ns, &["addr", "add", "10.9.0.2/24", "dev", "d0"]);
    // Left behind by a crashed run, with another prefix than configured.
    ip_out(&ns, &["addr", "add", "10.9.0.7/24", "dev", "d0"]);
    ip_out(
        &ns,
        &["addr", "add", "2001:db8:9::7/64", "dev", "d0", "nodad"],
    );
    let removed = block_in(&ns, || async {
        let mover = VipMover::new(Netlink::connect().expect("netlink"));
        let configured = [
            vip("10.9.0.7", 32),
            vip("10.9.0.8", 32),
            vip("2001:db8:9::7", 128),
        ];
        let first = mover
            .cleanup_stale("d0", &configured)
            .await
            .expect("cleanup");
        let second = mover
            .cleanup_stale("d0", &configured)
            .await
            .expect("cleanup again");
        (first, second)
    });
    let mut first: Vec<IpAddr> = removed.0.iter().map(|a| a.addr).collect();
    first.sort();
    assert_eq!(first, vec![ip("10.9.0.7"), ip("2001:db8:9::7")]);
    assert!(
        removed.1.is_empty(),
        "nothing left the second time: {:?}",
        removed.1
    );
    assert_eq!(addr_json(&ns, "d0", "10.9.0.7").0, 0);
    assert_eq!(addr_json(&ns, "d0", "2001:db8:9::7").0, 0);
    assert_eq!(
        addr_json(&ns, "d0", "10.9.0.2").0,
        1,
        "a non-VIP address is kept"
    );
}

/// Two namespaces `a` and `b` joined by veth `veth-a` / `veth-b`, both up,
/// IPv6 DAD off, optional IPv4 addresses.
fn pair(lab: &Lab, v4: Option<(&str, &str)>) -> (Netns, Netns) {
    let a = lab.netns("a").expect("netns");
    let b = lab.netns("b").expect("netns");
    lab.link(&a, "veth-a", &b, "veth-b").expect("veth");
    for (ns, dev) in [(&a, "veth-a"), (&b, "veth-b")] {
        // DAD off, then down/up so the link-local address is regenerated
        // without it (usable as a VRRP source at once).
        ns.sysctl(&format!("net.ipv6.conf.{dev}.accept_dad"), "0")
            .expect("sysctl");
        ns.link_down(dev).expect("down");
    }
    if let Some((addr_a, addr_b)) = v4 {
        ip_out(&a, &["addr", "add", addr_a, "dev", "veth-a"]);
        ip_out(&b, &["addr", "add", addr_b, "dev", "veth-b"]);
    }
    a.link_up("veth-a").expect("up");
    b.link_up("veth-b").expect("up");
    (a, b)
}

fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    GratuitousArp::new(MacAddr(mac), addr).frame().to_vec()
}

#[test]
fn io_garp_burst_arrives_three_times_spaced() {
    testsupport::require_root!();
    let lab = new_lab("garp");
    let (a, b) = pair(&lab, None);
    let (mac, ifindex) = block_in(&a, || async {
        let nl = Netlink::connect().expect("netlink");
        let link = nl.link("veth-a").await.expect("link");
        (nl.mac("veth-a").await.expect("mac"), link.ifindex)
    });
    let shown = ip_out(&a, &["-j", "link", "show", "veth-a"]);
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        shown.contains(&format!("\"address\":\"{mac_text}\"")),
        "MAC {mac_text} in {shown}"
    );

    let garp = garp_frame(mac, Ipv4Addr::new(10, 9, 0, 100));
    let na = UnsolicitedNa::new(MacAddr(mac), "2001:db8:9::100".parse().expect("addr"))
        .frame()
        .to_vec();
    let (garp_want, na_want) = (garp.clone(), na.clone());
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let receiver = spawn_in(&b, move || async move {
        let nl = Netlink::connect().expect("netlink");
        let idx = nl.ifindex("veth-b").await.expect("ifindex");
        let rx = FrameReceiver::open(idx, ETH_P_ALL).expect("receiver");
        ready_tx.send(()).expect("ready");
        let mut seen = Vec::new();
        let mut seen_na = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        // Wait for three, then a while more to catch a fourth.
        let mut quiet_until = None;
        loop {
            let until = quiet_until.unwrap_or(deadline).min(deadline);
            match tokio::time::timeout_at(until, rx.recv(&mut buf)).await {
                Ok(Ok(n)) if buf[..n] == na_want[..] => seen_na += 1,
                Ok(Ok(n)) if buf[..n] == garp_want[..] => {
                    seen.push(Instant::now());
                    if seen.len() == 3 {
                        quiet_until =
                            Some(tokio::time::Instant::now() + Duration::from_millis(400));
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("receive: {e}"),
                Err(_) => break,
            }
        }
        (seen, seen_na)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    let interval = Duration::from_millis(150);
    let report = block_in(&a, move || async move {
        let sender = GratuitousSender::open(ifindex).expect("sender");
        sender
            .burst(
                &[garp, na],
                Burst {
                    repeat: 3,
                    interval,
                },
            )
            .await
    });
    assert_eq!(report.sent, 6);
    assert_eq!(report.failed, 0);
    let (seen, seen_na) = join(receiver);
    assert_eq!(seen.len(), 3, "exactly three GARPs seen");
    assert_eq!(seen_na, 3, "exactly three unsolicited NAs seen");
    for gap in seen.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= Duration::from_millis(120) && gap <= Duration::from_millis(300),
            "gap {gap:?} for interval {interval:?}"
        );
    }
}

#[test]
fn io_garp_burst_cancel_stops_it() {
    testsupport::require_root!();
    let lab = new_lab("garpcancel");
    let (a, b) = pair(&lab, None);
    let receiver = count_garps_for(
        &b,
        Ipv4Addr::new(10, 9, 0, 101),
        Duration::from_millis(1500),
    );
    block_in(&a, || async {
        let nl = Netlink::connect().expect("netlink");
        let link = nl.link("veth-a").await.expect("link");
        let sender = std::sync::Arc::new(GratuitousSender::open(link.ifindex).expect("sender"));
        let frame = garp_frame(link.mac.expect("mac"), Ipv4Addr::new(10, 9, 0, 101));
        let handle = sender.spawn_burst(
            vec![frame],
            Burst {
                repeat: 10,
                interval: Duration::from_millis(200),
            },
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.cancel();
        assert_eq!(handle.wait().await, None, "cancelled");
    });
    let n = join(receiver);
    assert_eq!(n, 2, "rounds at 0 and 200 ms only, then cancelled");
}

#[test]
fn io_garp_refresh_repeats_until_cancelled() {
    testsupport::require_root!();
    let lab = new_lab("garprefresh");
    let (a, b) = pair(&lab, None);
    let receiver = count_garps_for(
        &b,
        Ipv4Addr::new(10, 9, 0, 102),
        Duration::from_millis(1500),
    );
    block_in(&a, || async {
        let nl = Netlink::connect().expect("netlink");
        let link = nl.link("veth-a").await.expect("link");
        let sender = std::sync::Arc::new(GratuitousSender::open(link.ifindex).expect("sender"));
        let frame = garp_frame(link.mac.expect("mac"), Ipv4Addr::new(10, 9, 0, 102));
        let burst = Burst {
            repeat: 2,
            interval: Duration::from_millis(20),
        };
        let handle = sender.spawn_refresh(vec![frame], burst, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!handle.is_finished(), "refresh runs until cancelled");
        handle.cancel();
        assert_eq!(handle.wait().await, None, "cancelled");
    });
    let n = join(receiver);
    assert_eq!(
        n, 4,
        "bursts of 2 at 200 and 400 ms, none at start, none after cancel"
    );
}

/// Counts, on `veth-b` in `b`, the ARP frames whose target is `vip`, for `window`.
fn count_garps_for(
    b: &Netns,
    vip: Ipv4Addr,
    window: Duration,
) -> std::thread::JoinHandle<testsupport::Result<usize>> {
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let receiver = spawn_in(b, move || async move {
        let nl = Netlink::connect().expect("netlink");
        let idx = nl.ifindex("veth-b").await.expect("ifindex");
        let rx = FrameReceiver::open(idx, ETH_P_ALL).expect("receiver");
        ready_tx.send(()).expect("ready");
        let mut n_ours = 0;
        let mut buf = [0u8; 2048];
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, rx.recv(&mut buf)).await {
            if n >= 42 && buf[12..14] == [0x08, 0x06] && buf[38..42] == vip.octets() {
                n_ours += 1;
            }
        }
        n_ours
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    receiver
}

fn payload(tag: u8) -> Vec<u8> {
    // Shaped like a VRRPv3 advert for VRID 51 with one IPv4 address; the
    // transport does not look inside.
    vec![0x31, 51, 100, 1, 0x00, 0x64, 0x12, tag, 10, 9, 0, 100]
}

/// Per socket: what it received first and the accepted bytes (None: nothing in 3 s).
type Received = Vec<Option<(Inbound, Vec<u8>)>>;

/// Opens each of `cfgs` in `ns`, reports readiness, then reads one datagram per socket.
fn receive_in(
    ns: &Netns,
    cfgs: Vec<TransportConfig>,
    ready: std_mpsc::Sender<()>,
) -> std::thread::JoinHandle<testsupport::Result<Received>> {
    spawn_in(ns, move || async move {
        let socks: Vec<VrrpSocket> = cfgs
            .into_iter()
            .map(|c| VrrpSocket::open(c).expect("open VRRP socket"))
            .collect();
        ready.send(()).expect("ready");
        let mut out = Vec::new();
        for s in &socks {
            let mut buf = [0u8; 2048];
            let got = tokio::time::timeout(Duration::from_secs(3), s.recv(&mut buf)).await;
            out.push(match got {
                Ok(Ok(inbound)) => {
                    let len = match inbound {
                        Inbound::Accepted(d) => d.len,
                        _ => 0,
                    };
                    Some((inbound, buf[..len].to_vec()))
                }
                Ok(Err(e)) => panic!("recv: {e}"),
                Err(_) => None,
            });
        }
        out
    })
}

fn cfg(
    ifname: &str,
    family: Family,
    source: Option<IpAddr>,
    peers: Vec<IpAddr>,
) -> TransportConfig {
    TransportConfig {
        instance: "VI_test".to_owned(),
        ifname: ifname.to_owned(),
        family,
        source,
        peers,
    }
}

#[test]
fn io_transport_v4_multicast_and_unicast() {
    testsupport::require_root!();
    let lab = new_lab("tv4");
    let (a, b) = pair(&lab, Some(("10.0.0.1/24", "10.0.0.2/24")));
    let b_ifindex: u32 = block_in(&b, || async {
        Netlink::connect()
            .expect("nl")
            .ifindex("veth-b")
            .await
            .expect("ifindex")
    });

    // Multicast, kernel-chosen source.
    let (tx, rx) = std_mpsc::channel();
    let recv = receive_in(&b, vec![cfg("veth-b", Family::V4, None, vec![])], tx);
    rx.recv_timeout(Duration::from_secs(5)).expect("ready");
    let sent = block_in(&a, || async {
        let s = VrrpSocket::open(cfg("veth-a", Family::V4, None, vec![])).expect("open");
        s.send(&payload(1)).await.expect("send")
    });
    assert_eq!(sent, 1);
    let got = join(recv);
    let Some((Inbound::Accepted(d), bytes)) = &got[0] else {
        panic!("multicast datagram not received: {got:?}");
    };
    assert!(d.ip_header_included);
    assert_eq!(d.src, ip("10.0.0.1"));
    assert_eq!(d.dst, Some(ip("224.0.0.18")));
    assert_eq!(d.hop_limit, Some(255));
    assert_eq!(d.ifindex, Some(b_ifindex));
    assert_eq!(bytes[0] >> 4, 4, "IPv4 header first");
    assert_eq!(bytes[8], 255, "TTL in the header");
    assert_eq!(bytes[9], 112, "protocol VRRP");
    assert_eq!(&bytes[20..], &payload(1)[..]);

    // Unicast: b has one socket that lists a as a peer and one that does not.
    let (tx, rx) = std_mpsc::channel();
    let recv = receive_in(
        &b,
        vec![
            cfg("veth-b", Family::V4, None, vec![ip("10.0.0.1")]),
            cfg("veth-b", Family::V4, None, vec![ip("10.0.0.9")]),
        ],
        tx,
    );
    rx.recv_timeout(Duration::from_secs(5)).expect("ready");
    let sent = block_in(&a, || async {
        let s = VrrpSocket::open(cfg(
            "veth-a",
            Family::V4,
            Some(ip("10.0.0.1")),
            vec![ip("10.0.0.2")],
        ))
        .expect("open");
        assert!(!s.is_multicast());
        s.send(&payload(2)).await.expect("send")
    });
    assert_eq!(sent, 1);
    let got = join(recv);
    let Some((Inbound::Accepted(d), bytes)) = &got[0] else {
        panic!("unicast datagram not received: {got:?}");
    };
    assert_eq!(d.src, ip("10.0.0.1"));
    assert_eq!(d.dst, Some(ip("10.0.0.2")));
    assert_eq!(d.hop_limit, Some(255));
    assert_eq!(&bytes[20..], &payload(2)[..]);
    assert!(
        matches!(got[1], Some((Inbound::NotFromPeer { src }, _)) if src == ip("10.0.0.1")),
        "non-peer dropped: {:?}",
        got[1]
    );
}

#[test]
fn io_transport_v6_multicast_and_unicast_from_link_local() {
    testsupport::require_root!();
    let lab = new_lab("tv6");
    let (a, b) = pair(&lab, None);
    let find_ll = |ns: &Netns, dev: &'static str| {
        block_in(ns, move || async move {
            let nl = Netlink::connect().expect("nl");
            let idx = nl.ifindex(dev).await.expect("ifindex");
            for _ in 0..50 {
                if let Some(ll) = link_local_v6(&nl.addresses(idx).await.expect("addrs")) {
                    return (ll, idx);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no usable link-local address on {dev}");
        })
    };
    let (ll_a, _) = find_ll(&a, "veth-a");
    let (ll_b, idx_b) = find_ll(&b, "veth-b");

    let (tx, rx) = std_mpsc::channel();
    let recv = receive_in(
        &b,
        vec![
            cfg("veth-b", Family::V6, Some(IpAddr::V6(ll_b)), vec![]),
            cfg(
                "veth-b",
                Family::V6,
                Some(IpAddr::V6(ll_b)),
                vec![IpAddr::V6(ll_a)],
            ),
            cfg(
                "veth-b",
                Family::V6,
                Some(IpAddr::V6(ll_b)),
                vec![ip("fe80::99")],
            ),
        ],
        tx,
    );
    rx.recv_timeout(Duration::from_secs(5)).expect("ready");
    block_in(&a, move || async move {
        let m = VrrpSocket::open(cfg("veth-a", Family::V6, Some(IpAddr::V6(ll_a)), vec![]))
            .expect("open");
        assert_eq!(m.send(&payload(3)).await.expect("send multicast"), 1);
        let u = VrrpSocket::open(cfg(
            "veth-a",
            Family::V6,
            Some(IpAddr::V6(ll_a)),
            vec![IpAddr::V6(ll_b)],
        ))
        .expect("open");
        assert_eq!(u.send(&payload(4)).await.expect("send unicast"), 1);
    });
    let got = join(recv);
    // Socket 0 (multicast) reads the first datagram: the multicast one.
    let Some((Inbound::Accepted(d), bytes)) = &got[0] else {
        panic!("IPv6 multicast not received: {got:?}");
    };
    assert!(!d.ip_header_included);
    assert_eq!(d.src, IpAddr::V6(ll_a));
    assert_eq!(d.dst, Some(ip("ff02::12")));
    assert_eq!(d.hop_limit, Some(255));
    assert_eq!(d.ifindex, Some(idx_b));
    assert_eq!(bytes, &payload(3));
    // Socket 1 (unicast, a is a peer) also saw the multicast one first: raw
    // sockets get every VRRP packet that reaches the host.
    let Some((Inbound::Accepted(d1), bytes1)) = &got[1] else {
        panic!("IPv6 datagram not accepted from a peer: {got:?}");
    };
    assert_eq!(d1.src, IpAddr::V6(ll_a));
    assert_eq!(d1.hop_limit, Some(255));
    assert_eq!(bytes1, &payload(3));
    assert!(
        matches!(got[2], Some((Inbound::NotFromPeer { src }, _)) if src == IpAddr::V6(ll_a)),
        "non-peer dropped: {:?}",
        got[2]
    );
}

#[test]
fn io_transport_v6_unicast_reaches_link_local_peer() {
    testsupport::require_root!();
    let lab = new_lab("tv6u");
    let (a, b) = pair(&lab, None);
    let ll = |ns: &Netns, dev: &'static str| {
        block_in(ns, move || async move {
            let nl = Netlink::connect().expect("nl");
            let idx = nl.ifindex(dev).await.expect("ifindex");
            for _ in 0..50 {
                if let Some(ll) = link_local_v6(&nl.addresses(idx).await.expect("addrs")) {
                    return ll;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no usable link-local address on {dev}");
        })
    };
    let (ll_a, ll_b) = (ll(&a, "veth-a"), ll(&b, "veth-b"));
    let (tx, rx) = std_mpsc::channel();
    let recv = receive_in(
        &b,
        vec![cfg("veth-b", Family::V6, None, vec![IpAddr::V6(ll_a)])],
        tx,
    );
    rx.recv_timeout(Duration::from_secs(5)).expect("ready");
    block_in(&a, move || async move {
        let u = VrrpSocket::open(cfg(
            "veth-a",
            Family::V6,
            Some(IpAddr::V6(ll_a)),
            vec![IpAddr::V6(ll_b)],
        ))
        .expect("open");
        u.send(&payload(5)).await.expect("send unicast");
    });
    let got = join(recv);
    let Some((Inbound::Accepted(d), bytes)) = &got[0] else {
        panic!("IPv6 unicast not received: {got:?}");
    };
    assert_eq!(d.dst, Some(IpAddr::V6(ll_b)));
    assert_eq!(d.hop_limit, Some(255));
    assert_eq!(bytes, &payload(5));
}

#[test]
fn io_transport_rejects_mixed_families() {
    testsupport::require_root!();
    let lab = new_lab("tfam");
    let (a, _b) = pair(&lab, None);
    block_in(&a, || async {
        let err = VrrpSocket::open(cfg("veth-a", Family::V6, None, vec![ip("10.0.0.1")]))
            .expect_err("mixed");
        assert!(matches!(err, vrrp::io::IoError::FamilyMismatch(_)), "{err}");
        let err = VrrpSocket::open(cfg("nosuchif0", Family::V4, None, vec![])).expect_err("no if");
        assert!(
            matches!(err, vrrp::io::IoError::NoSuchInterface(_)),
            "{err}"
        );
    });
}

#[test]
fn io_vmac_macvlan_has_the_virtual_mac() {
    testsupport::require_root!();
    let lab = new_lab("vmac");
    let ns = one_ns_with_link(&lab);
    // A stale vmac with a wrong MAC, as a crashed run or an operator may leave.
    ip_out(
        &ns,
        &[
            "link",
            "add",
            "link",
            "d0",
            "name",
            "vrrp.52",
            "address",
            "02:00:00:00:00:52",
            "type",
            "macvlan",
            "mode",
            "private",
        ],
    );
    ip_out(
        &ns,
        &[
            "link", "add", "notmv0", "type", "veth", "peer", "name", "notmv1",
        ],
    );
    let (first, again, v6, fixed) = block_in(&ns, || async {
        let vm = Vmacs::new(Netlink::connect().expect("nl"));
        let spec = |vrid, family, name: Option<&str>| VmacSpec {
            parent: "d0".to_owned(),
            vrid,
            family,
            name: name.map(str::to_owned),
            mode: VmacMode::Private,
        };
        let first = vm
            .ensure(&spec(51, Family::V4, None))
            .await
            .expect("ensure");
        let again = vm
            .ensure(&spec(51, Family::V4, None))
            .await
            .expect("ensure again");
        let v6 = vm
            .ensure(&spec(51, Family::V6, Some("vrrp6.51")))
            .await
            .expect("ensure v6");
        let fixed = vm
            .ensure(&spec(52, Family::V4, None))
            .await
            .expect("fix stale");
        let err = vm
            .ensure(&spec(53, Family::V4, Some("notmv0")))
            .await
            .expect_err("not a macvlan");
        assert!(matches!(err, vrrp::io::IoError::NotMacvlan(_)), "{err}");
        (first, again, v6, fixed)
    });
    assert_eq!(first.name, "vrrp.51");
    assert_eq!(first.mac, [0, 0, 0x5e, 0, 1, 51]);
    assert_eq!(again.ifindex, first.ifindex, "ensure is idempotent");
    let shown = ip_out(&ns, &["-d", "-j", "link", "show", "vrrp.51"]);
    assert!(
        shown.contains("\"address\":\"00:00:5e:00:01:33\""),
        "{shown}"
    );
    assert!(shown.contains("\"info_kind\":\"macvlan\""), "{shown}");
    assert!(shown.contains("\"mode\":\"private\""), "{shown}");
    assert!(shown.contains("\"UP\""), "{shown}");
    assert_eq!(v6.mac, [0, 0, 0x5e, 0, 2, 51]);
    assert!(ip_out(&ns, &["-j", "link", "show", "vrrp6.51"])
        .contains("\"address\":\"00:00:5e:00:02:33\""));
    assert_eq!(fixed.mac, [0, 0, 0x5e, 0, 1, 52]);
    assert!(ip_out(&ns, &["-j", "link", "show", "vrrp.52"])
        .contains("\"address\":\"00:00:5e:00:01:34\""));

    let removed = block_in(&ns, || async {
        let vm = Vmacs::new(Netlink::connect().expect("nl"));
        let r1 = vm.remove("vrrp.51").await.expect("remove");
        let r2 = vm.remove("vrrp.51").await.expect("remove again");
        let r3 = vm.remove("notmv0").await;
        (r1, r2, r3.is_err())
    });
    assert_eq!(removed, (true, false, true));
    assert!(!ip_out(&ns, &["-j", "link", "show"]).contains("\"vrrp.51\""));
}

#[test]
fn io_link_watch_reports_down_and_up() {
    testsupport::require_root!();
    let lab = new_lab("lw");
    let (a, b) = pair(&lab, None);
    // Carrier comes up shortly after both ends are up.
    for _ in 0..50 {
        if ip_out(&a, &["-j", "link", "show", "veth-a"]).contains("LOWER_UP") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (cmd_tx, cmd_rx) = std_mpsc::channel::<(&'static str, bool)>();
    let (ev_tx, ev_rx) = std_mpsc::channel();
    let watcher = spawn_in(&a, move || async move {
        let mut watch = watch_links(
            vec!["veth-a".to_owned(), "nothere0".to_owned()],
            Some(Duration::from_secs(1)),
        )
        .await
        .expect("watch");
        ev_tx
            .send(format!("initial {:?}", watch.initial))
            .expect("send");
        assert!(watch.initial["veth-a"].is_up(), "{:?}", watch.initial);
        assert!(!watch.initial["nothere0"].present);
        // For each step: wait (bounded) until an event matches what the step expects.
        while let Ok((what, want_up)) = cmd_rx.recv() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut ok = false;
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, watch.events.recv()).await {
                assert_eq!(ev.name, "veth-a", "only watched names are reported");
                if ev.state.is_up() == want_up {
                    ok = true;
                    ev_tx.send(format!("{what} {:?}", ev.state)).expect("send");
                    break;
                }
            }
            assert!(ok, "no event for step {what}");
        }
    });
    let initial = ev_rx.recv_timeout(Duration::from_secs(5)).expect("initial");
    assert!(initial.starts_with("initial"), "{initial}");
    ip_out(&a, &["link", "set", "veth-a", "down"]);
    cmd_tx.send(("admin-down", false)).expect("cmd");
    let e = ev_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("down event");
    assert!(e.contains("admin_up: false"), "{e}");
    ip_out(&a, &["link", "set", "veth-a", "up"]);
    cmd_tx.send(("up", true)).expect("cmd");
    ev_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("up event");
    ip_out(&b, &["link", "set", "veth-b", "down"]);
    cmd_tx.send(("carrier-lost", false)).expect("cmd");
    let e = ev_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("carrier event");
    assert!(
        e.contains("admin_up: true") && e.contains("running: false"),
        "{e}"
    );
    drop(cmd_tx);
    join(watcher);
}

#[test]
fn io_vip_mover_works_on_a_vmac() {
    testsupport::require_root!();
    // The driver's use_vmac path: VIP on the macvlan, GARP from its MAC.
    let lab = new_lab("vmacvip");
    let ns = one_ns_with_link(&lab);
    let idx = block_in(&ns, || async {
        let nl = Netlink::connect().expect("nl");
        let link = Vmacs::new(nl.clone())
            .ensure(&VmacSpec {
                parent: "d0".to_owned(),
                vrid: 9,
                family: Family::V4,
                name: None,
                mode: VmacMode::Bridge,
            })
            .await
            .expect("vmac");
        let mover = VipMover::new(nl);
        mover
            .add(link.ifindex, vip("10.9.9.9", 24))
            .await
            .expect("add");
        let sender = GratuitousSender::open(link.ifindex).expect("sender");
        let report = sender
            .burst(
                &[garp_frame(link.mac, Ipv4Addr::new(10, 9, 9, 9))],
                Burst {
                    repeat: 1,
                    interval: Duration::ZERO,
                },
            )
            .await;
        assert_eq!(report.sent, 1);
        link.ifindex
    });
    assert!(idx > 0);
    assert_eq!(addr_json(&ns, "vrrp.9", "10.9.9.9").0, 1);
}
