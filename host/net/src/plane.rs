//! A worker's data plane: one TCP connection per peer worker, every channel between
//! their subtasks multiplexed on it. A receiver grants each channel credit in bytes it
//! has reserved; a sender sends a batch only with credit for it, so the connection's
//! reader never waits on a full channel and one backpressured channel never stalls the
//! others. Control messages (watermarks, idleness, barriers, end of input) take the
//! same way in band, costing no credit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eddy_core::exec::channel::{Channel, Closed, Message};
use eddy_core::exec::exchange::Outlet;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::NetError;
use crate::credit::Credit;
use crate::frame::Frame;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Something the data plane noticed about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// The connection to `peer` ended: the worker died, restarted or was cut off.
    Lost {
        /// The peer's identity (its address when it never said).
        peer: String,
        /// Why the connection ended.
        reason: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are updated in single statements; a panic elsewhere leaves them whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection to a peer worker, shared by every channel on it.
struct Connection {
    /// The peer's identity, once its hello arrived.
    peer: Mutex<String>,
    /// The peer's incarnation, once its hello arrived.
    incarnation: AtomicU64,
    /// Encoded frames for the writer task.
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// The credit of each channel this side sends on.
    outlets: Mutex<HashMap<u64, Arc<Credit>>>,
    closed: AtomicBool,
}

impl Connection {
    fn send(&self, frame: &Frame) -> Result<(), Closed> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        self.out.send(frame.encode()).map_err(|_| Closed)
    }

    fn peer(&self) -> String {
        lock(&self.peer).clone()
    }
}

/// The receiving end of one channel: the subtask's inbound channel it feeds, the
/// sender index the subtask knows the remote sender by, and the credit accounts.
struct Inlet {
    target: Arc<Channel>,
    from: u32,
    window: usize,
    /// The connection the sender opened the channel on, once it did.
    conn: Option<Arc<Connection>>,
    /// Credit granted and not yet used by data: a sender sending more breaks the
    /// protocol.
    outstanding: usize,
    /// The sender's last announced backlog.
    backlog: Arc<AtomicU64>,
}

/// The channel ids of an inbound channel's remote senders, by sender index.
type Senders = Arc<Mutex<HashMap<u32, u64>>>;

/// What the connections and the handle share.
struct Shared {
    me: String,
    incarnation: u64,
    inlets: Mutex<HashMap<u64, Inlet>>,
    /// Channels a sender opened before their inlet was registered.
    pending: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Per inbound channel (by address): its remote senders' channel ids by index.
    routes: Mutex<HashMap<usize, Senders>>,
    peers: Mutex<HashMap<String, Arc<Connection>>>,
    events: Mutex<std_mpsc::Sender<PeerEvent>>,
    /// Where control messages go, by attempt; those of an attempt not registered
    /// yet wait for it.
    control: Mutex<HashMap<u64, ControlRoute>>,
}

/// The control messages of one attempt: delivered, or kept until it registers.
enum ControlRoute {
    Waiting(Vec<Vec<u8>>),
    Registered(std_mpsc::Sender<Vec<u8>>),
}

/// A worker's network data plane; dropping it closes every connection.
pub struct DataPlane {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    events: Mutex<Option<std_mpsc::Receiver<PeerEvent>>>,
}

impl DataPlane {
    /// Listens on `addr` (port 0 picks one) as worker `me`, incarnation `incarnation`.
    pub fn bind(me: &str, incarnation: u64, addr: SocketAddr) -> Result<DataPlane, NetError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eddy-net")
            .enable_all()
            .build()
            .map_err(NetError::Runtime)?;
        let listener = runtime
            .block_on(TcpListener::bind(addr))
            .map_err(|e| NetError::Bind(addr, e))?;
        let addr = listener.local_addr().map_err(|e| NetError::Bind(addr, e))?;
        let (tx, rx) = std_mpsc::channel();
        let shared = Arc::new(Shared {
            me: me.to_owned(),
            incarnation,
            inlets: Mutex::default(),
            pending: Mutex::default(),
            routes: Mutex::default(),
            peers: Mutex::default(),
            events: Mutex::new(tx),
            control: Mutex::default(),
        });
        let accepting = Arc::downgrade(&shared);
        runtime.spawn(async move {
            loop {
                let Ok((stream, from)) = listener.accept().await else {
                    break;
                };
                let Some(shared) = accepting.upgrade() else {
                    break;
                };
                connect(&shared, stream, from.to_string());
            }
        });
        Ok(DataPlane {
            runtime: Some(runtime),
            shared,
            addr,
            events: Mutex::new(Some(rx)),
        })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What happens to peers from now on; only the first caller gets them.
    pub fn take_events(&self) -> Option<std_mpsc::Receiver<PeerEvent>> {
        lock(&self.events).take()
    }

    /// Feeds what remote sender `from` sends on `channel` into `target`, granting it
    /// `window` bytes of credit: at most that much of its data is ever queued here.
    pub fn register_inlet(&self, channel: u64, target: Arc<Channel>, from: u32, window: usize) {
        let route = {
            let mut routes = lock(&self.shared.routes);
            let key = Arc::as_ptr(&target) as usize;
            match routes.get(&key) {
                Some(route) => route.clone(),
                None => {
                    let route: Senders = Arc::default();
                    let shared = Arc::downgrade(&self.shared);
                    let senders = route.clone();
                    target.on_credit_return(Arc::new(move |from, bytes| {
                        let channel = lock(&senders).get(&from).copied();
                        if let (Some(shared), Some(channel)) = (shared.upgrade(), channel) {
                            give_back(&shared, channel, bytes);
                        }
                    }));
                    routes.insert(key, route.clone());
                    route
                }
            }
        };
        lock(&route).insert(from, channel);
        let inlet = Inlet {
            target,
            from,
            window,
            conn: None,
            outstanding: 0,
            backlog: Arc::default(),
        };
        let opened = {
            let mut pending = lock(&self.shared.pending);
            lock(&self.shared.inlets).insert(channel, inlet);
            pending.remove(&channel)
        };
        if let Some(conn) = opened {
            open_inlet(&self.shared, channel, &conn);
        }
    }

    /// The control messages of `attempt` (those that came before included).
    pub fn register_control(&self, attempt: u64) -> std_mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = std_mpsc::channel();
        let mut control = lock(&self.shared.control);
        if let Some(ControlRoute::Waiting(early)) = control.remove(&attempt) {
            for body in early {
                let _ = tx.send(body);
            }
        }
        control.insert(attempt, ControlRoute::Registered(tx));
        rx
    }

    /// Forgets `attempt`'s control messages.
    pub fn unregister_control(&self, attempt: u64) {
        lock(&self.shared.control).remove(&attempt);
    }

    /// Sends a control message of `attempt` to worker `peer` at `addr`.
    pub fn send_control(
        &self,
        peer: &str,
        addr: SocketAddr,
        attempt: u64,
        body: Vec<u8>,
    ) -> Result<(), NetError> {
        let conn = self.connection(peer, addr)?;
        conn.send(&Frame::Control { attempt, body })
            .map_err(|_| NetError::Lost(peer.to_owned()))
    }

    /// The last backlog the sender on `channel` announced, in bytes.
    pub fn backlog(&self, channel: u64) -> u64 {
        lock(&self.shared.inlets)
            .get(&channel)
            .map_or(0, |i| i.backlog.load(Ordering::Relaxed))
    }

    /// An outlet sending on `channel` to worker `peer` at `addr`, whose inlet grants
    /// `window` bytes: the connection to the peer is made on first use and shared.
    /// Call it from outside the data plane's own threads.
    pub fn outlet(
        &self,
        peer: &str,
        addr: SocketAddr,
        channel: u64,
        window: usize,
    ) -> Result<Arc<RemoteOutlet>, NetError> {
        let conn = self.connection(peer, addr)?;
        let credit = Arc::new(Credit::default());
        lock(&conn.outlets).insert(channel, credit.clone());
        conn.send(&Frame::Open { channel })
            .map_err(|_| NetError::Lost(peer.to_owned()))?;
        Ok(Arc::new(RemoteOutlet {
            channel,
            window,
            conn,
            credit,
        }))
    }

    /// The live connection to `peer`, made if there is none.
    fn connection(&self, peer: &str, addr: SocketAddr) -> Result<Arc<Connection>, NetError> {
        if let Some(conn) = lock(&self.shared.peers).get(peer)
            && !conn.closed.load(Ordering::Acquire)
        {
            return Ok(conn.clone());
        }
        let runtime = self.runtime.as_ref().ok_or(NetError::Stopped)?;
        let stream = runtime
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
            })
            .map_err(|_| NetError::Connect(addr, std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| NetError::Connect(addr, e))?;
        let _guard = runtime.enter();
        let conn = connect(&self.shared, stream, peer.to_owned());
        lock(&self.shared.peers).insert(peer.to_owned(), conn.clone());
        Ok(conn)
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        for conn in lock(&self.shared.peers).values() {
            close_outlets(conn);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sending on one channel to a subtask on another worker.
pub struct RemoteOutlet {
    channel: u64,
    window: usize,
    conn: Arc<Connection>,
    credit: Arc<Credit>,
}

impl Outlet for RemoteOutlet {
    fn capacity(&self) -> usize {
        self.window
    }

    fn send(&self, _from: u32, message: Message) -> Result<Duration, Closed> {
        let bytes = message.byte_size();
        let channel = self.channel;
        let waited = self.credit.take(bytes, || {
            let backlog = Frame::Backlog {
                channel,
                bytes: bytes as u64,
            };
            let _ = self.conn.send(&backlog);
        })?;
        self.conn.send(&Frame::Data { channel, message })?;
        Ok(waited)
    }

    fn overtake(&self, _from: u32, id: u64) -> Result<Vec<Message>, Closed> {
        let channel = self.channel;
        // Only on an open channel, like everything sent.
        self.credit.take(0, || {})?;
        self.conn.send(&Frame::Overtake { channel, id })?;
        self.credit.wait_overtaken()
    }

    fn close(&self) {
        self.credit.close();
    }
}

/// Starts the reader and writer of a new connection and says hello on it.
fn connect(shared: &Arc<Shared>, stream: TcpStream, peer: String) -> Arc<Connection> {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let conn = Arc::new(Connection {
        peer: Mutex::new(peer),
        incarnation: AtomicU64::new(0),
        out: tx,
        outlets: Mutex::default(),
        closed: AtomicBool::new(false),
    });
    let hello = Frame::Hello {
        peer: shared.me.clone(),
        incarnation: shared.incarnation,
    };
    let _ = conn.send(&hello);
    tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(1 << 16, write);
        while let Some(frame) = rx.recv().await {
            if out.write_all(&frame).await.is_err() {
                return;
            }
            // Batch what is already queued into one write.
            while let Ok(frame) = rx.try_recv() {
                if out.write_all(&frame).await.is_err() {
                    return;
                }
            }
            if out.flush().await.is_err() {
                return;
            }
        }
    });
    let reading = conn.clone();
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut read = tokio::io::BufReader::with_capacity(1 << 16, read);
        let reason = loop {
            let frame = match Frame::read(&mut read).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break "the peer closed the connection".to_owned(),
                Err(e) => break e.to_string(),
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Err(violation) = receive(&shared, &reading, frame) {
                break violation;
            }
        };
        if let Some(shared) = shared.upgrade() {
            lost(&shared, &reading, reason);
        }
    });
    conn
}

/// Acts on one frame from `conn`; an error is a protocol violation that ends it.
fn receive(shared: &Arc<Shared>, conn: &Arc<Connection>, frame: Frame) -> Result<(), String> {
    match frame {
        Frame::Hello { peer, incarnation } => {
            tracing::debug!(%peer, incarnation, "data-plane peer connected");
            *lock(&conn.peer) = peer.clone();
            conn.incarnation.store(incarnation, Ordering::Release);
            let mut peers = lock(&shared.peers);
            match peers.get(&peer) {
                // Both sides connected at once: either connection serves.
                Some(old) if old.incarnation.load(Ordering::Acquire) == incarnation => {}
                Some(old) if old.incarnation.load(Ordering::Acquire) == 0 => {
                    // Our own connection to it, not yet greeted back: keep it.
                }
                old => {
                    // A new incarnation of the peer: its old connection is dead.
                    if let Some(old) = old.filter(|old| !Arc::ptr_eq(old, conn)) {
                        close_outlets(old);
                    }
                    peers.insert(peer, conn.clone());
                }
            }
        }
        Frame::Open { channel } => {
            // Checked and parked under the pending lock, which a registration holds too,
            // so an open never slips between the two.
            let mut pending = lock(&shared.pending);
            if lock(&shared.inlets).contains_key(&channel) {
                drop(pending);
                open_inlet(shared, channel, conn);
            } else {
                pending.insert(channel, conn.clone());
            }
        }
        Frame::Credit { channel, bytes } => {
            if let Some(credit) = lock(&conn.outlets).get(&channel) {
                credit.grant(bytes as usize);
            }
        }
        Frame::Backlog { channel, bytes } => {
            if let Some(inlet) = lock(&shared.inlets).get(&channel) {
                inlet.backlog.store(bytes, Ordering::Relaxed);
            }
        }
        Frame::Data { channel, message } => {
            let (target, from) = {
                let mut inlets = lock(&shared.inlets);
                let Some(inlet) = inlets.get_mut(&channel) else {
                    return Err(format!("data on channel {channel}, which is not open"));
                };
                let bytes = message.byte_size();
                if bytes > inlet.outstanding {
                    return Err(format!(
                        "{bytes} bytes on channel {channel} with credit for {}",
                        inlet.outstanding
                    ));
                }
                inlet.outstanding -= bytes;
                (inlet.target.clone(), inlet.from)
            };
            // A closed channel means the job is being torn down: drop it.
            let _ = target.admit(from, message);
        }
        Frame::Overtake { channel, id } => {
            let found = lock(&shared.inlets)
                .get(&channel)
                .map(|i| (i.target.clone(), i.from));
            let Some((target, from)) = found else {
                return Err(format!("overtake on channel {channel}, which is not open"));
            };
            let messages = target.overtake(from, id).unwrap_or_default();
            let _ = conn.send(&Frame::Overtaken { channel, messages });
        }
        Frame::Overtaken { channel, messages } => {
            if let Some(credit) = lock(&conn.outlets).get(&channel) {
                credit.overtaken(messages);
            }
        }
        Frame::Control { attempt, body } => {
            let mut control = lock(&shared.control);
            match control
                .entry(attempt)
                .or_insert_with(|| ControlRoute::Waiting(Vec::new()))
            {
                ControlRoute::Waiting(early) => early.push(body),
                ControlRoute::Registered(tx) => {
                    let _ = tx.send(body);
                }
            }
        }
    }
    Ok(())
}

/// Binds inlet `channel` to the connection its sender opened it on and grants the
/// whole window.
fn open_inlet(shared: &Shared, channel: u64, conn: &Arc<Connection>) {
    let window = {
        let mut inlets = lock(&shared.inlets);
        let Some(inlet) = inlets.get_mut(&channel) else {
            return;
        };
        inlet.conn = Some(conn.clone());
        // A reopened channel starts afresh: what the old sender held is gone with it.
        inlet.outstanding = inlet.window;
        inlet.window
    };
    let _ = conn.send(&Frame::Credit {
        channel,
        bytes: window as u64,
    });
}

/// A message admitted on `channel` was taken out: its sender may send as much again.
fn give_back(shared: &Shared, channel: u64, bytes: usize) {
    let conn = {
        let mut inlets = lock(&shared.inlets);
        let Some(inlet) = inlets.get_mut(&channel) else {
            return;
        };
        inlet.outstanding += bytes;
        inlet.conn.clone()
    };
    if let Some(conn) = conn {
        let _ = conn.send(&Frame::Credit {
            channel,
            bytes: bytes as u64,
        });
    }
}

/// Every sender waiting on `conn` fails with [`Closed`].
fn close_outlets(conn: &Connection) {
    conn.closed.store(true, Ordering::Release);
    for credit in lock(&conn.outlets).values() {
        credit.close();
    }
}

/// The connection ended: its senders fail, its inlets wait for a new sender, and the
/// loss is reported.
fn lost(shared: &Shared, conn: &Arc<Connection>, reason: String) {
    close_outlets(conn);
    let peer = conn.peer();
    {
        let mut peers = lock(&shared.peers);
        if peers.get(&peer).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            peers.remove(&peer);
        }
    }
    for inlet in lock(&shared.inlets).values_mut() {
        if inlet.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            inlet.conn = None;
        }
    }
    tracing::warn!(%peer, "data-plane connection lost: {reason}");
    let _ = lock(&shared.events).send(PeerEvent::Lost { peer, reason });
}
