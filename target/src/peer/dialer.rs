//! This gateway's connection to one peer: connects (and reconnects with a
//! bounded backoff), authenticates, then carries requests — many in
//! flight, matched to their answers by tag — until the link breaks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zctarget_protocol::peer::{Frame, Status};

use super::frame_io::{dial_handshake, write_frame, FrameReader, HANDSHAKE_TIMEOUT};
use super::{Link, MAX_IN_FLIGHT_BYTES};

/// First and longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A Ping is sent when nothing came from the peer for this long ...
const PING_AFTER: Duration = Duration::from_secs(1);
/// ... and the link is dropped when nothing came for this long (a peer
/// frozen or cut off: its requests fail now rather than at their
/// deadline, and no new ones are sent to it until it answers again).
const SILENT_AFTER: Duration = Duration::from_secs(5);

struct Request {
    frame: Frame,
    bytes: usize,
    deadline: Instant,
    reply: oneshot::Sender<Status>,
}

/// One peer gateway, as this gateway dials it.
pub struct Peer {
    /// The peer's gateway id.
    pub id: String,
    addr: SocketAddr,
    connected: AtomicBool,
    /// When the link last went down after having been up (`None` while
    /// it is up, and before it ever was).
    down_since: Mutex<Option<std::time::Instant>>,
    tx: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    in_flight_bytes: AtomicUsize,
}

impl Peer {
    pub fn new(id: String, addr: SocketAddr) -> Self {
        Peer {
            id,
            addr,
            connected: AtomicBool::new(false),
            down_since: Mutex::new(None),
            tx: Mutex::new(None),
            in_flight_bytes: AtomicUsize::new(0),
        }
    }

    /// Whether the link to this peer is up (authenticated).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// How long this peer has been unreachable: since its link, once up,
    /// went down (it also goes down when the peer stays silent for
    /// [`SILENT_AFTER`]). `None` while the link is up, and for a peer
    /// never reached since this gateway started (a peer not yet started
    /// is not a peer that died).
    pub fn unreachable_for(&self) -> Option<Duration> {
        if self.connected() {
            return None;
        }
        let since = *self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|t| t.elapsed())
    }

    /// Marks the link up, or down — recording when, if it was up.
    fn set_up(&self, up: bool) {
        let mut since = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if up {
            *since = None;
            self.connected.store(true, Ordering::Release);
        } else if self.connected.swap(false, Ordering::AcqRel) {
            *since = Some(std::time::Instant::now());
        }
    }

    /// Sends `frame` (`bytes` of payload); the answer comes on the
    /// receiver, [`Status::Busy`] if none came within `timeout`, the link
    /// broke, or too many bytes are in flight. `None`: the link is down.
    pub fn send(
        &self,
        frame: Frame,
        bytes: usize,
        timeout: Duration,
    ) -> Option<oneshot::Receiver<Status>> {
        if !self.connected() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        let before = self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        if bytes > 0 && before + bytes > MAX_IN_FLIGHT_BYTES {
            self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            let _ = reply.send(Status::Busy);
            return Some(rx);
        }
        let req = Request {
            frame,
            bytes,
            deadline: Instant::now() + timeout,
            reply,
        };
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            self.done(bytes);
            return None;
        };
        if tx.send(req).is_err() {
            self.done(bytes);
            return None;
        }
        Some(rx)
    }

    fn done(&self, bytes: usize) {
        self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn fail(&self, req: Request) {
        self.done(req.bytes);
        let _ = req.reply.send(Status::Busy);
    }
}

/// Keeps the link to `peer` up until the link stops.
pub async fn run(link: Arc<Link>, peer: Arc<Peer>) {
    let mut backoff = BACKOFF.0;
    let mut last_error = String::new();
    while !link.stop.load(Ordering::Acquire) {
        match connect(&link, &peer).await {
            Ok(conn) => {
                tracing::info!(peer = %peer.id, addr = %peer.addr, "peer link up");
                backoff = BACKOFF.0;
                last_error.clear();
                let why = conn.await;
                tracing::warn!(peer = %peer.id, reason = %why, "peer link down");
            }
            Err(e) => {
                // Logged once per distinct error, not at every retry.
                let msg = e.to_string();
                if msg != last_error {
                    tracing::warn!(peer = %peer.id, addr = %peer.addr, error = %msg,
                        "peer link: cannot connect");
                    last_error = msg;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Connects and authenticates; the returned future carries requests until
/// the connection ends (its reason).
async fn connect(
    link: &Arc<Link>,
    peer: &Arc<Peer>,
) -> std::io::Result<impl std::future::Future<Output = String>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(peer.addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        dial_handshake(&mut reader, &mut w, &link.gateway, &peer.id, &link.secret),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (tx, rx) = mpsc::unbounded_channel();
    *peer.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    peer.set_up(true);
    let (link, peer) = (Arc::clone(link), Arc::clone(peer));
    Ok(async move {
        let why = carry(&link, &peer, reader, w, rx).await;
        peer.set_up(false);
        let tx = peer.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        why
    })
}

/// Sends requests and matches answers until the connection fails; then
/// every request pending or queued is answered Busy.
async fn carry(
    link: &Link,
    peer: &Peer,
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Request>,
) -> String {
    let mut pending: HashMap<u32, (oneshot::Sender<Status>, usize)> = HashMap::new();
    // Answer deadlines, earliest first (the one place they are kept); an
    // entry whose tag was answered meanwhile is dropped when it comes up.
    let mut deadlines: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut next_tag: u32 = 1;
    let mut heard = Instant::now();
    let mut pinged = false;
    let why = loop {
        // The next thing due: the Ping, dropping a silent link, an answer's
        // deadline. An idle link wakes only for those (no sweep timer).
        let mut due = heard + SILENT_AFTER;
        if !pinged {
            due = due.min(heard + PING_AFTER);
        }
        while let Some(Reverse((_, tag))) = deadlines.peek() {
            if pending.contains_key(tag) {
                break;
            }
            deadlines.pop();
        }
        if let Some(Reverse((d, _))) = deadlines.peek() {
            due = due.min(*d);
        }
        tokio::select! {
            frame = reader.next() => match frame.inspect(|_| {
                heard = Instant::now();
                pinged = false;
            }) {
                Ok(Some((tag, Frame::Reply(st)))) => {
                    if let Some((reply, bytes)) = pending.remove(&tag) {
                        peer.done(bytes);
                        let _ = reply.send(st);
                    }
                }
                Ok(Some((_, Frame::Pong))) => {}
                Ok(Some((_, f))) => break format!("unexpected frame {f:?}"),
                Ok(None) => break "closed by the peer".to_owned(),
                Err(e) => break e.to_string(),
            },
            req = rx.recv() => {
                let Some(req) = req else { break "link stopped".to_owned() };
                if req.reply.is_closed() {
                    peer.fail(req);
                    continue;
                }
                let tag = next_tag;
                next_tag = next_tag.wrapping_add(1).max(1);
                if let Err(e) = write_frame(&mut w, tag, &req.frame).await {
                    peer.fail(req);
                    break e.to_string();
                }
                deadlines.push(Reverse((req.deadline, tag)));
                pending.insert(tag, (req.reply, req.bytes));
            }
            _ = link.stopped() => break "stopping".to_owned(),
            _ = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                if now.duration_since(heard) >= SILENT_AFTER {
                    break format!("nothing heard for {} s", SILENT_AFTER.as_secs());
                }
                if !pinged && now.duration_since(heard) >= PING_AFTER {
                    pinged = true;
                    if let Err(e) = write_frame(&mut w, 0, &Frame::Ping).await {
                        break e.to_string();
                    }
                }
                while let Some(&Reverse((d, tag))) = deadlines.peek() {
                    if d > now {
                        break;
                    }
                    deadlines.pop();
                    if let Some((reply, bytes)) = pending.remove(&tag) {
                        tracing::warn!(peer = %peer.id, tag, "peer link: no answer in time");
                        peer.done(bytes);
                        let _ = reply.send(Status::Busy);
                    }
                }
            }
        }
    };
    peer.set_up(false);
    for (_, (reply, bytes)) in pending.drain() {
        peer.done(bytes);
        let _ = reply.send(Status::Busy);
    }
    rx.close();
    while let Ok(req) = rx.try_recv() {
        peer.fail(req);
    }
    why
}
