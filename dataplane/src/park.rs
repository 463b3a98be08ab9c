//! Idle client connections of `http` frontends, parked outside tokio.
//!
//! A connection that waits for its next request (or its first one) longer
//! than [`PARK_AFTER`] leaves its task: the socket is taken out of tokio's
//! reactor and put in this frontend's own epoll set (one-shot, readable or
//! hung up), and what the connection needs to go on is kept in a slab slot
//! of about a hundred bytes. No task, timer, buffer or reactor entry is
//! held for it while it sits idle. When bytes arrive the parker gives the
//! socket back to tokio and spawns the connection again
//! ([`crate::h1::resume`]); when its idle (or first-request header)
//! deadline passes first, the parker closes it.
//!
//! Busy keep-alive connections never park: the next request of a client
//! that keeps a connection busy arrives well within [`PARK_AFTER`].

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::runtime::{lock, FrontendHandle};
use crate::shutdown::Shutdown;
use crate::tcp::ConnGuard;

/// How long a connection waits for bytes in its task before it parks.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(20);

/// Events taken from the epoll set per `epoll_wait`.
const EVENT_BATCH: usize = 64;

/// What a parked connection keeps.
pub(crate) struct ParkedConn {
    pub(crate) stream: std::net::TcpStream,
    /// The client as a PROXY header named it; `None`: the socket's peer
    /// (asked again on resume rather than kept).
    pub(crate) proxied: Option<Box<SocketAddr>>,
    /// When it was last active (its accept, before the first request).
    pub(crate) last_active: Instant,
    /// Still waiting for its first request (the header deadline counts
    /// from the accept).
    pub(crate) first: bool,
    pub(crate) open: (ConnGuard, Option<OwnedSemaphorePermit>),
}

/// Slots are allocated in chunks that never move or grow.
const CHUNK: usize = 256;
/// No slot (end of a list).
const NIL: u32 = u32::MAX;

/// A slab slot: free (on the free list through `next`) or holding a parked
/// connection, linked into the deadline list of its timeout.
struct Slot {
    generation: u32,
    prev: u32,
    next: u32,
    list: u16,
    conn: Option<ParkedConn>,
}

/// Parked connections with one timeout, in deadline order (parks come in
/// nearly in order, so an insert walks back a step or two from the tail).
struct List {
    timeout: Duration,
    head: u32,
    tail: u32,
}

struct Slots {
    chunks: Vec<Box<[Slot]>>,
    free: u32,
    live: usize,
    /// One per timeout in use (in practice `client_header` and
    /// `client_idle`); an empty one is reused for a new timeout.
    lists: Vec<List>,
    closed: bool,
}

impl Slots {
    fn new() -> Self {
        Slots {
            chunks: Vec::new(),
            free: NIL,
            live: 0,
            lists: Vec::new(),
            closed: false,
        }
    }

    fn slot(&self, i: u32) -> &Slot {
        &self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// A free slot, or `None` when the index space is used up.
    fn alloc(&mut self) -> Option<u32> {
        if self.free == NIL {
            let base = u32::try_from(self.chunks.len() * CHUNK).ok()?;
            let top = base.checked_add(CHUNK as u32)?;
            if top == NIL {
                return None;
            }
            let chunk: Box<[Slot]> = (base..top)
                .map(|i| Slot {
                    generation: 0,
                    prev: NIL,
                    next: if i + 1 < top { i + 1 } else { NIL },
                    list: 0,
                    conn: None,
                })
                .collect();
            self.chunks.push(chunk);
            self.free = base;
        }
        let i = self.free;
        self.free = self.slot(i).next;
        Some(i)
    }

    fn release(&mut self, i: u32) {
        let free = self.free;
        let s = self.slot_mut(i);
        s.generation = s.generation.wrapping_add(1);
        s.prev = NIL;
        s.next = free;
        self.free = i;
    }

    /// The list for `timeout` (an empty one is reused).
    fn list_for(&mut self, timeout: Duration) -> Option<u16> {
        if let Some(i) = self.lists.iter().position(|l| l.timeout == timeout) {
            return u16::try_from(i).ok();
        }
        if let Some(i) = self.lists.iter().position(|l| l.head == NIL) {
            self.lists[i].timeout = timeout;
            return u16::try_from(i).ok();
        }
        let i = u16::try_from(self.lists.len()).ok()?;
        self.lists.push(List {
            timeout,
            head: NIL,
            tail: NIL,
        });
        Some(i)
    }

    fn deadline(&self, i: u32) -> Option<Instant> {
        let s = self.slot(i);
        let timeout = self.lists[s.list as usize].timeout;
        s.conn.as_ref().map(|c| c.last_active + timeout)
    }

    /// Link slot `i` (holding its connection) into list `l` by deadline.
    fn link(&mut self, i: u32, l: u16) {
        let d = self.deadline(i);
        let mut after = self.lists[l as usize].tail;
        while after != NIL && self.deadline(after) > d {
            after = self.slot(after).prev;
        }
        let next = if after == NIL {
            self.lists[l as usize].head
        } else {
            self.slot(after).next
        };
        {
            let s = self.slot_mut(i);
            s.prev = after;
            s.next = next;
        }
        if after == NIL {
            self.lists[l as usize].head = i;
        } else {
            self.slot_mut(after).next = i;
        }
        if next == NIL {
            self.lists[l as usize].tail = i;
        } else {
            self.slot_mut(next).prev = i;
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, l) = {
            let s = self.slot(i);
            (s.prev, s.next, s.list as usize)
        };
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.slot_mut(next).prev = prev;
        }
    }

    /// Take the connection of slot `i` if it is still of `generation`.
    fn take(&mut self, i: u32, generation: u32) -> Option<ParkedConn> {
        if i as usize >= self.chunks.len() * CHUNK {
            return None;
        }
        let s = self.slot(i);
        if s.generation != generation || s.conn.is_none() {
            return None;
        }
        self.unlink(i);
        let conn = self.slot_mut(i).conn.take();
        self.release(i);
        self.live -= 1;
        conn
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.lists
            .iter()
            .filter(|l| l.head != NIL)
            .filter_map(|l| self.deadline(l.head))
            .min()
    }
}

/// The epoll set as a file tokio can watch.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The only `unsafe` of the parker: registering its epoll set, and the
/// listener it accepts from, with tokio.
#[allow(unsafe_code)]
mod register {
    use super::EpollFd;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    pub(super) fn epoll(epoll: EpollFd) -> std::io::Result<AsyncFd<EpollFd>> {
        // SAFETY: `EpollFd` owns the epoll descriptor (an `OwnedFd` inside
        // nix's `Epoll`): it stays open and refers to the same epoll set until
        // the `AsyncFd` that owns it is dropped, and nothing replaces or
        // closes the inner value while it is registered.
        unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }

    pub(crate) fn listener(
        l: std::net::TcpListener,
    ) -> std::io::Result<AsyncFd<std::net::TcpListener>> {
        // SAFETY: a `std::net::TcpListener` owns its descriptor until it is
        // dropped, and the `AsyncFd` owns the listener for its whole life;
        // callers only accept through `get_ref`.
        unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }
}

pub(crate) use register::listener as register_listener;

/// Parked connections of one frontend's listener.
pub(crate) struct Parker {
    epoll: AsyncFd<EpollFd>,
    slots: Mutex<Slots>,
    /// An earlier deadline than the parker waits for was added.
    deadline_added: Notify,
    /// `halb_frontend_parked_connections`.
    gauge: metrics::Gauge,
}

fn key(slot: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(slot)
}

impl Parker {
    /// A parker with an empty epoll set. Must be called inside a tokio
    /// runtime.
    pub(crate) fn new(frontend: &str) -> std::io::Result<Arc<Parker>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        let epoll = register::epoll(EpollFd(epoll))?;
        Ok(Arc::new(Parker {
            epoll,
            slots: Mutex::new(Slots::new()),
            deadline_added: Notify::new(),
            gauge: metrics::gauge!("halb_frontend_parked_connections", "frontend" => frontend.to_string()),
        }))
    }

    /// Park `conn` until it is readable (or hung up), or until `timeout`
    /// after its last activity, when it is closed. A connection that cannot
    /// be parked (the parker has stopped, or the socket could not be added)
    /// is handed back.
    pub(crate) fn park(&self, conn: ParkedConn, timeout: Duration) -> Result<(), ParkedConn> {
        let mut s = lock(&self.slots);
        if s.closed {
            return Err(conn);
        }
        let (Some(list), Some(slot)) = (s.list_for(timeout), s.alloc()) else {
            return Err(conn);
        };
        let generation = s.slot(slot).generation;
        let ev = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT,
            key(slot, generation),
        );
        // The socket may still be in the set, disabled, from an earlier
        // park (one-shot): then it is re-armed.
        let added = match self.epoll.get_ref().0.add(&conn.stream, ev) {
            Err(Errno::EEXIST) => {
                let mut ev = ev;
                self.epoll.get_ref().0.modify(&conn.stream, &mut ev)
            }
            r => r,
        };
        if let Err(e) = added {
            tracing::debug!(error = %e, "cannot park an idle connection");
            s.release(slot);
            return Err(conn);
        }
        let deadline = conn.last_active + timeout;
        let earliest = s.next_deadline().is_none_or(|d| deadline < d);
        {
            let sl = s.slot_mut(slot);
            sl.list = list;
            sl.conn = Some(conn);
        }
        s.link(slot, list);
        s.live += 1;
        self.gauge.set(s.live as f64);
        drop(s);
        if earliest {
            self.deadline_added.notify_one();
        }
        Ok(())
    }

    /// Number of parked connections.
    #[cfg(test)]
    fn parked(&self) -> usize {
        lock(&self.slots).live
    }

    /// Connections whose socket became readable or hung up.
    fn take_ready(&self, events: &mut [EpollEvent]) -> std::io::Result<(Vec<ParkedConn>, bool)> {
        let n = loop {
            match self.epoll.get_ref().0.wait(events, EpollTimeout::ZERO) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let mut s = lock(&self.slots);
        let mut out = Vec::with_capacity(n);
        for ev in &events[..n] {
            let data = ev.data();
            // The low and high halves of the key (truncation intended).
            if let Some(c) = s.take(data as u32, (data >> 32) as u32) {
                out.push(c);
            }
        }
        self.gauge.set(s.live as f64);
        Ok((out, n == events.len()))
    }

    /// Close the connections whose deadline has passed; the next deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut closed = Vec::new();
        let mut s = lock(&self.slots);
        for l in 0..s.lists.len() {
            loop {
                let head = s.lists[l].head;
                if head == NIL || s.deadline(head).is_none_or(|d| d > now) {
                    break;
                }
                let generation = s.slot(head).generation;
                match s.take(head, generation) {
                    Some(c) => closed.push(c),
                    None => break,
                }
            }
        }
        let next = s.next_deadline();
        self.gauge.set(s.live as f64);
        drop(s);
        if !closed.is_empty() {
            tracing::debug!(
                count = closed.len(),
                "idle connections timed out while parked"
            );
        }
        next
    }

    /// Stop: later parks are refused, and every parked connection is
    /// handed out (for the caller to close, or to serve).
    fn drain(&self) -> Vec<ParkedConn> {
        let mut s = lock(&self.slots);
        s.closed = true;
        let chunks = std::mem::take(&mut s.chunks);
        s.free = NIL;
        s.lists.clear();
        s.live = 0;
        self.gauge.set(0.0);
        drop(s);
        chunks
            .into_iter()
            .flat_map(|c| c.into_vec().into_iter().filter_map(|slot| slot.conn))
            .collect()
    }

    /// Serve the parked connections of `handle`'s listener until the
    /// frontend stops (`shutdown`) or its listener ends (`done`): resume
    /// the ones that get bytes, close the ones that time out. Parked
    /// connections are closed when it returns.
    pub(crate) async fn run(
        self: Arc<Self>,
        handle: FrontendHandle,
        shutdown: Shutdown,
        done: tokio_util::sync::CancellationToken,
    ) {
        let mut events = vec![EpollEvent::empty(); EVENT_BATCH];
        let mut next = None;
        loop {
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.stopping() => break,
                _ = done.cancelled() => break,
                r = self.epoll.readable() => {
                    let mut guard = match r {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::warn!(frontend = %handle.name(), error = %e, "parked connections: epoll failed; closing them");
                            break;
                        }
                    };
                    loop {
                        match self.take_ready(&mut events) {
                            Ok((conns, more)) => {
                                for c in conns {
                                    crate::h1::resume(c, &handle, &shutdown, &self);
                                }
                                if !more {
                                    guard.clear_ready();
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(frontend = %handle.name(), error = %e, "parked connections: epoll_wait failed");
                                guard.clear_ready();
                                break;
                            }
                        }
                    }
                }
                _ = sleep => next = self.expire(Instant::now()),
                _ = self.deadline_added.notified() => next = self.expire(Instant::now()),
            }
        }
        // Idle keep-alive connections close (their clients retry, as after
        // any server's graceful stop). One accepted but still without its
        // first request goes back to a task: the request may be on its way,
        // and it is served if it arrives within the stop's grace
        // (`crate::h1::FIRST_REQUEST_GRACE`).
        let mut closed = 0;
        for c in self.drain() {
            if c.first {
                crate::h1::resume(c, &handle, &shutdown, &self);
            } else {
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::debug!(frontend = %handle.name(), count = closed, "closed parked idle connections");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (c, s)
    }

    fn guard() -> (ConnGuard, Option<OwnedSemaphorePermit>) {
        (
            ConnGuard::new(Arc::new(crate::runtime::FrontendShared::new("park-test"))),
            None,
        )
    }

    fn parked(stream: std::net::TcpStream) -> ParkedConn {
        parked_at(stream, Instant::now())
    }

    fn parked_at(stream: std::net::TcpStream, last_active: Instant) -> ParkedConn {
        ParkedConn {
            proxied: None,
            stream,
            last_active,
            first: true,
            open: guard(),
        }
    }

    async fn ready(p: &Parker) -> Vec<ParkedConn> {
        let mut events = vec![EpollEvent::empty(); 4];
        let mut g = tokio::time::timeout(Duration::from_secs(5), p.epoll.readable())
            .await
            .expect("readable within 5 s")
            .unwrap();
        let mut all = Vec::new();
        loop {
            let (v, more) = p.take_ready(&mut events).unwrap();
            all.extend(v);
            if !more {
                break;
            }
        }
        g.clear_ready();
        all
    }

    fn sees_close(c: &mut std::net::TcpStream) -> bool {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        // Closed with unread bytes: a reset instead of an end of stream.
        match c.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_parked_connection_comes_back_when_bytes_arrive_and_can_park_again() {
        let p = Parker::new("park-test").unwrap();
        let (mut client, server) = pair();
        assert!(p.park(parked(server), LONG).is_ok());
        assert_eq!(p.parked(), 1);
        // Nothing to read yet: nothing comes back.
        let mut events = vec![EpollEvent::empty(); 4];
        assert!(p.take_ready(&mut events).unwrap().0.is_empty());
        client.write_all(b"GET").unwrap();
        let mut back = ready(&p).await;
        assert_eq!(back.len(), 1);
        assert_eq!(p.parked(), 0);
        let mut c = back.pop().unwrap();
        let mut buf = [0u8; 8];
        let n = loop {
            match c.stream.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"GET");
        // Parked again (the socket is still in the set, disabled): re-armed.
        assert!(p.park(c, LONG).is_ok());
        client.write_all(b"x").unwrap();
        assert_eq!(ready(&p).await.len(), 1);
    }

    #[tokio::test]
    async fn a_hang_up_wakes_a_parked_connection() {
        let p = Parker::new("park-test").unwrap();
        let (client, server) = pair();
        assert!(p.park(parked(server), LONG).is_ok());
        drop(client);
        assert_eq!(ready(&p).await.len(), 1);
    }

    #[tokio::test]
    async fn deadlines_close_in_order_and_skip_resumed_connections() {
        let p = Parker::new("park-test").unwrap();
        let t0 = Instant::now();
        let (mut c1, s1) = pair();
        let (mut c2, s2) = pair();
        let (mut c3, s3) = pair();
        let (mut c4, s4) = pair();
        // Two timeouts (two lists); within one list, parks out of order.
        assert!(p
            .park(
                parked_at(s3, t0 + Duration::from_secs(1)),
                Duration::from_secs(2)
            )
            .is_ok());
        assert!(p.park(parked_at(s1, t0), Duration::from_secs(1)).is_ok());
        assert!(p
            .park(parked_at(s4, t0), Duration::from_millis(3500))
            .is_ok());
        assert!(p.park(parked_at(s2, t0), Duration::from_secs(2)).is_ok());
        assert_eq!(p.parked(), 4);
        assert_eq!(p.expire(t0), Some(t0 + Duration::from_secs(1)));
        // s1 (1 s) then s2 (2 s, parked after s3 but due before it).
        assert_eq!(
            p.expire(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert!(sees_close(&mut c1));
        assert_eq!(
            p.expire(t0 + Duration::from_secs(2)),
            Some(t0 + Duration::from_secs(3))
        );
        assert!(sees_close(&mut c2));
        // s3 resumes before its deadline: it is no longer due.
        c3.write_all(b"a").unwrap();
        assert_eq!(ready(&p).await.len(), 1);
        assert_eq!(
            p.expire(t0 + Duration::from_secs(3)),
            Some(t0 + Duration::from_millis(3500))
        );
        assert_eq!(p.parked(), 1);
        assert_eq!(p.expire(t0 + Duration::from_secs(4)), None);
        assert!(sees_close(&mut c4));
        assert_eq!(p.parked(), 0);
    }

    #[tokio::test]
    async fn a_closed_parker_refuses_and_closes() {
        let p = Parker::new("park-test").unwrap();
        let (mut c1, s1) = pair();
        let (_c2, s2) = pair();
        assert!(p.park(parked(s1), LONG).is_ok());
        assert_eq!(p.drain().len(), 1);
        assert!(sees_close(&mut c1));
        assert!(p.park(parked(s2), LONG).is_err());
    }

    #[tokio::test]
    async fn slots_are_reused_and_events_of_old_generations_ignored() {
        let p = Parker::new("park-test").unwrap();
        let mut clients = Vec::new();
        // More than one chunk.
        for _ in 0..(CHUNK + 10) {
            let (c, s) = pair();
            assert!(p.park(parked(s), LONG).is_ok());
            clients.push(c);
        }
        assert_eq!(p.parked(), CHUNK + 10);
        assert_eq!(lock(&p.slots).chunks.len(), 2);
        // Wake them all and park them again: the same slots come back.
        for c in &mut clients {
            c.write_all(b"a").unwrap();
        }
        let mut back = Vec::new();
        while back.len() < CHUNK + 10 {
            back.extend(ready(&p).await);
        }
        // An event of the slot's former generation takes nothing.
        assert!(lock(&p.slots).take(0, 0).is_none());
        for c in back {
            assert!(p.park(c, LONG).is_ok());
        }
        assert_eq!(p.parked(), CHUNK + 10);
        assert_eq!(lock(&p.slots).chunks.len(), 2);
        assert_eq!(
            p.expire(Instant::now() + LONG + Duration::from_secs(1)),
            None
        );
        assert_eq!(p.parked(), 0);
        for c in &mut clients {
            assert!(sees_close(c));
        }
    }
}
