//! Client connections: read requests, answer them in order, pipelining
//! allowed.
//!
//! Each connection is one task with a read buffer and a write buffer. It
//! decodes as many requests as the buffer holds, answers each in turn
//! (connection commands here, data commands through the router), and
//! writes the replies when the buffer is drained or the write buffer is
//! large. Bounds: `max_clients` connections (more are told so and closed),
//! a query buffer of at most one maximal bulk plus slack, and a request
//! started but not finished within `request_read_timeout_s` closes the
//! connection (slow-loris). Malformed input gets one error reply and the
//! connection is closed, as Redis does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BufMut;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::command::{Command, execute};
use crate::config::Redirect;
use crate::entry::{self, Args, DataEntry, Watch};
use crate::resp::{CommandDecoder, Frame, Limits, RespVersion};
use crate::route::{Caller, Consistency, Op};
use crate::server::Shared;
use crate::slot::key_slot;
use crate::tls::FlushBeforeRead;

/// Write buffer size that triggers a write before the read buffer is
/// drained, so a long pipeline does not pile up replies.
const FLUSH_AT_BYTES: usize = 64 << 10;

/// The room a connection's read buffer offers a read: it starts at the
/// minimum and doubles up to the maximum while reads fill it.
const READ_MIN_BYTES: usize = 1 << 10;
const READ_MAX_BYTES: usize = 64 << 10;

/// At most this much is read without waiting after a read that filled its
/// room, before the buffer is decoded.
const READ_DRAIN_BYTES: usize = 1 << 20;

/// Commands one MULTI may queue.
const MAX_QUEUED: usize = 10_000;

/// Largest encoded log entry a request may become: under the Raft log's and
/// the transport's 64 MiB bounds, so every entry can be stored and sent.
pub const MAX_ENTRY_BYTES: usize = 48 << 20;

/// Encodes a data entry for proposal, or the error reply for one too large
/// to replicate.
fn encode_entry(entry: &DataEntry) -> Result<Vec<u8>, Frame> {
    let bytes = entry::encode(entry);
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(error(format!(
            "ERR request of {} bytes is too large to replicate (limit {MAX_ENTRY_BYTES})",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Accepts connections until the task is aborted. With `tls`, every
/// connection must complete a TLS handshake first (`crate::tls`).
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connection_slots).try_acquire_owned() else {
            shared.metrics.connections_rejected.inc();
            if tls.is_none() {
                // Over TLS the client could not read this plain line.
                tokio::spawn(async move {
                    let _ = stream
                        .write_all(b"-ERR max number of clients reached\r\n")
                        .await;
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        // The permit is held from here, handshake included: a client that
        // never finishes one still counts against max_clients.
        tokio::spawn(async move {
            shared.metrics.connections.inc();
            shared.metrics.connections_total.inc();
            let result = match tls {
                None => {
                    Conn::new(Arc::clone(&shared), peer.to_string())
                        .run(stream)
                        .await
                }
                // Boxed: a TLS session's state would size every plain task.
                Some(tls) => Box::pin(serve_tls(&shared, &tls, stream, peer)).await,
            };
            if let Err(e) = result {
                debug!(peer = %peer, error = %e, "connection closed");
            }
            shared.metrics.connections.dec();
            drop(permit);
        });
    }
}

/// One read of what `stream` already holds, without waiting: `None` when
/// it holds nothing yet. (`read_buf` is cancel-safe: a poll that returns
/// pending has read nothing.)
async fn read_ready<S: AsyncRead + Unpin, B: BufMut>(
    stream: &mut S,
    buf: &mut B,
) -> std::io::Result<Option<usize>> {
    let mut read = std::pin::pin!(stream.read_buf(buf));
    std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        std::task::Poll::Ready(result) => std::task::Poll::Ready(result.map(Some)),
        std::task::Poll::Pending => std::task::Poll::Ready(Ok(None)),
    })
    .await
}

/// Completes the TLS handshake within `request_read_timeout_s` (or until
/// the node stops), then serves the connection and closes the session.
async fn serve_tls(
    shared: &Arc<Shared>,
    tls: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> std::io::Result<()> {
    let limit = Duration::from_secs(shared.config.request_read_timeout_s.max(1));
    let mut stop = shared.stop.subscribe();
    let handshake = tokio::select! {
        done = tokio::time::timeout(limit, tls.accept(stream)) => done,
        _ = stop.wait_for(|stopping| *stopping) => return Ok(()),
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            shared.metrics.tls_handshake_failures.inc();
            debug!(peer = %peer, error = %e, "TLS handshake failed");
            return Ok(());
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            debug!(peer = %peer, timeout_s = limit.as_secs(), "TLS handshake timed out");
            return Ok(());
        }
    };
    let mut stream = FlushBeforeRead(stream);
    let served = Conn::new(Arc::clone(shared), peer.to_string())
        .run(&mut stream)
        .await;
    // Sends what is still buffered and close_notify; bounded, as the
    // client may have stopped reading.
    let _ = tokio::time::timeout(limit, stream.shutdown()).await;
    served
}

/// Requests decoded from the buffer before any is answered.
const MAX_PIPELINE_REQUESTS: usize = 1024;

/// Request bytes decoded from the buffer before any is answered.
const MAX_PIPELINE_BYTES: usize = 4 << 20;

/// A request held back to go with the requests of the same kind after it.
struct Pending {
    name: String,
    write: bool,
    /// Its arguments' size, roughly as encoded.
    bytes: usize,
    group: u64,
    slot: u16,
    args: Args,
}

/// Consecutive pipelined requests of one kind (writes, or reads):
/// at most `MAX_PIPELINE_REQUESTS` and `MAX_PIPELINE_BYTES`, so every
/// group's entry stays far below `MAX_ENTRY_BYTES`, except a single large
/// write, which goes alone.
#[derive(Default)]
struct Run {
    requests: Vec<Pending>,
    bytes: usize,
}

impl Run {
    fn fits(&self, request: &Pending) -> bool {
        match self.requests.first() {
            None => true,
            Some(first) => {
                first.write == request.write
                    && self.requests.len() < MAX_PIPELINE_REQUESTS
                    && self.bytes + request.bytes <= MAX_PIPELINE_BYTES
            }
        }
    }

    fn push(&mut self, request: Pending) {
        self.bytes += request.bytes;
        self.requests.push(request);
    }
}

/// Sends a run's requests of one group as one op and returns one reply
/// per command: writes as one entry (a lone write as an ordinary `Exec`),
/// reads as one `Reads` (one barrier, one snapshot; a lone read as a
/// `Read`). An error for the whole op (no leader in time, a redirect)
/// answers every command, a `-MOVED` naming each command's own slot.
async fn send_group(
    shared: &Shared,
    group: u64,
    write: bool,
    mut commands: Vec<(u16, Args)>,
    caller: Caller,
) -> Vec<Frame> {
    let count = commands.len();
    let slots: Vec<u16> = commands.iter().map(|(slot, _)| *slot).collect();
    let first_slot = slots.first().copied().unwrap_or(0);
    let op = if write {
        let now_ms = crate::clock::wall_clock_ms();
        let entry = match commands.pop() {
            Some((slot, args)) if commands.is_empty() => DataEntry::Exec {
                now_ms,
                slot,
                commands: vec![args],
                watches: Vec::new(),
                transaction: false,
            },
            last => DataEntry::Batch {
                now_ms,
                commands: commands.into_iter().chain(last).collect(),
            },
        };
        match encode_entry(&entry) {
            Ok(entry) => Ok(Op::Propose { entry }),
            Err(reply) => Err(reply),
        }
    } else {
        Ok(match commands.pop() {
            Some((slot, args)) if commands.is_empty() => Op::Read {
                slot,
                commands: vec![args],
            },
            last => Op::Reads {
                commands: commands.into_iter().chain(last).collect(),
            },
        })
    };
    let reply = match op {
        Ok(op) => shared.route(group, Some(first_slot), op, caller).await,
        Err(reply) => reply,
    };
    match reply {
        Frame::Array(replies) if count > 1 && replies.len() == count => replies,
        reply if count == 1 => vec![reply],
        Frame::Error(e) if e.starts_with(b"MOVED ") => {
            let addr = e.rsplit(|&b| b == b' ').next().unwrap_or_default().to_vec();
            slots
                .iter()
                .map(|slot| {
                    let mut text = format!("MOVED {slot} ").into_bytes();
                    text.extend_from_slice(&addr);
                    Frame::Error(text)
                })
                .collect()
        }
        Frame::Error(e) => vec![Frame::Error(e); count],
        other => vec![error(format!("ERR internal: unexpected batch reply {other:?}")); count],
    }
}

/// A transaction being queued (MULTI ... EXEC).
#[derive(Default)]
struct Multi {
    commands: Vec<Args>,
    slot: Option<u16>,
    /// A queued command was refused: EXEC fails with EXECABORT.
    failed: bool,
    crossslot: bool,
}

/// One client connection's state.
pub struct Conn {
    shared: Arc<Shared>,
    peer: String,
    id: u64,
    client_id: u64,
    serial: u64,
    version: RespVersion,
    name: Option<Vec<u8>>,
    authenticated: bool,
    readonly: bool,
    /// Asked for the topology, so it follows `-MOVED`.
    cluster_aware: bool,
    multi: Option<Multi>,
    watches: Vec<Watch>,
    watch_slot: Option<u16>,
    watch_crossslot: bool,
    quit: bool,
    created: Instant,
    last_command: String,
}

fn error(text: impl Into<String>) -> Frame {
    Frame::Error(text.into().into_bytes())
}

fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

fn wrong_arity(name: &str) -> Frame {
    error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

impl Conn {
    pub fn new(shared: Arc<Shared>, peer: String) -> Conn {
        let (id, client_id) = shared.new_client_id();
        let authenticated = shared.config.requirepass.is_none();
        Conn {
            shared,
            peer,
            id,
            client_id,
            serial: 0,
            version: RespVersion::Resp2,
            name: None,
            authenticated,
            readonly: false,
            cluster_aware: false,
            multi: None,
            watches: Vec::new(),
            watch_slot: None,
            watch_crossslot: false,
            quit: false,
            created: Instant::now(),
            last_command: String::new(),
        }
    }

    /// Serves the connection until the client leaves, sends garbage, or
    /// stalls mid-request.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut stream: S,
    ) -> std::io::Result<()> {
        let config = &self.shared.config;
        let limits = Limits {
            max_bulk_bytes: config.max_bulk_bytes,
            ..Limits::default()
        };
        let max_buffer = config.max_bulk_bytes.saturating_add(1 << 20);
        let partial_timeout = Duration::from_secs(config.request_read_timeout_s.max(1));
        let mut decoder = CommandDecoder::new(limits);
        // Reads go straight into `buf`'s spare capacity. The room offered
        // starts at 1 KiB and doubles (to 64 KiB) while reads fill it, so a
        // connection that only ever sends small requests holds about 1 KiB,
        // and a pipelining one reads in large pieces.
        let mut buf: Vec<u8> = Vec::with_capacity(READ_MIN_BYTES);
        let mut read_size = READ_MIN_BYTES;
        let mut start = 0usize;
        let mut out: Vec<u8> = Vec::new();
        let mut stop = self.shared.stop.subscribe();
        let mut partial_since: Option<Instant> = None;
        loop {
            // Decode what the buffer holds (bounded), then answer it: the
            // pipelined writes among it go to their groups in batches.
            let mut requests: Vec<Args> = Vec::new();
            let mut request_bytes = 0usize;
            let mut malformed = None;
            while requests.len() < MAX_PIPELINE_REQUESTS && request_bytes < MAX_PIPELINE_BYTES {
                match decoder.decode(&buf[start..]) {
                    Ok(Some((args, used))) => {
                        start += used;
                        request_bytes += used;
                        partial_since = None;
                        if !args.is_empty() {
                            requests.push(args);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        malformed = Some(e);
                        break;
                    }
                }
            }
            let more =
                requests.len() >= MAX_PIPELINE_REQUESTS || request_bytes >= MAX_PIPELINE_BYTES;
            // Boxed: answering nests the router's futures, several KiB of
            // state that would otherwise sit in every idle connection's task.
            Box::pin(self.answer(requests, &mut stream, &mut out)).await?;
            if self.quit {
                stream.write_all(&out).await?;
                return Ok(());
            }
            if let Some(e) = malformed {
                self.shared.metrics.protocol_errors.inc();
                out.extend_from_slice(b"-");
                out.extend_from_slice(e.to_redis_error().as_bytes());
                out.extend_from_slice(b"\r\n");
                stream.write_all(&out).await?;
                return Ok(());
            }
            if more {
                continue;
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if start > 0 {
                buf.drain(..start);
                start = 0;
            }
            if buf.len() >= max_buffer {
                self.shared.metrics.protocol_errors.inc();
                stream
                    .write_all(b"-ERR Protocol error: query buffer limit reached\r\n")
                    .await?;
                return Ok(());
            }
            let want = max_buffer - buf.len();
            // Room for a read of `read_size`, or as large as what is
            // buffered (a large request grows the buffer geometrically).
            buf.reserve(buf.len().max(read_size).min(want));
            let room_before = buf.capacity() - buf.len();
            // A request started must be finished within the timeout, from
            // its first byte: trickling bytes does not extend it.
            let limit = if buf.is_empty() {
                partial_since = None;
                Duration::MAX
            } else {
                let since = *partial_since.get_or_insert_with(Instant::now);
                partial_timeout.saturating_sub(since.elapsed())
            };
            let mut room = (&mut buf).limit(want);
            let read = tokio::select! {
                read = tokio::time::timeout(limit, stream.read_buf(&mut room)) => read,
                _ = stop.wait_for(|stopping| *stopping) => return Ok(()),
            };
            let read = match read {
                Ok(read) => read?,
                Err(_) => {
                    // A request started and not finished in time.
                    self.shared.metrics.protocol_errors.inc();
                    return Ok(());
                }
            };
            if read == 0 {
                return Ok(());
            }
            // The room was filled: more may be waiting. Take what the socket
            // already holds, without waiting (up to READ_DRAIN_BYTES), so a
            // pipeline sent at once is decoded at once, in big runs, however
            // small the room this connection started with.
            let mut filled = read >= room_before.min(want);
            let mut drained = read;
            while filled {
                read_size = (read_size * 2).min(READ_MAX_BYTES);
                if drained >= READ_DRAIN_BYTES || buf.len() >= max_buffer {
                    break;
                }
                let want = max_buffer - buf.len();
                buf.reserve(buf.len().max(read_size).min(want));
                let room_before = buf.capacity() - buf.len();
                let mut room = (&mut buf).limit(want);
                match read_ready(&mut stream, &mut room).await? {
                    // Nothing more yet, or the end (the next read sees it).
                    None | Some(0) => break,
                    Some(n) => {
                        drained += n;
                        filled = n >= room_before.min(want);
                    }
                }
            }
            if buf.capacity() > 4 * buf.len().max(1 << 16) {
                buf.shrink_to(buf.len().max(1024));
            }
        }
    }

    /// Answers a pipeline's requests in order, encoding the replies into
    /// `out` (written out whenever it grows large). A run of consecutive
    /// plain writes, or of consecutive plain reads, is held back and sent
    /// as one op per group, the groups at once. A request of another kind
    /// first completes the run, so a read always sees the writes sent
    /// before it, and a write comes after the reads sent before it.
    async fn answer<S: AsyncWrite + Unpin>(
        &mut self,
        requests: Vec<Args>,
        stream: &mut S,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let mut run = Run::default();
        for args in requests {
            if self.quit {
                break;
            }
            let args = match self.batchable(args) {
                Ok(request) => {
                    if !run.fits(&request) {
                        self.complete(&mut run, out).await;
                    }
                    run.push(request);
                    continue;
                }
                Err(args) => args,
            };
            self.complete(&mut run, out).await;
            if let Some(reply) = self.handle(args).await {
                reply.encode(out, self.version);
            }
            if out.len() >= FLUSH_AT_BYTES {
                stream.write_all(out).await?;
                out.clear();
            }
        }
        self.complete(&mut run, out).await;
        Ok(())
    }

    /// A request that may join a run: a data command with keys in one slot
    /// of a served group, on an authenticated connection outside MULTI.
    /// Anything else comes back to be handled on its own.
    fn batchable(&self, args: Args) -> Result<Pending, Args> {
        if !self.authenticated || self.multi.is_some() {
            return Err(args);
        }
        let Ok(command) = Command::parse(args.clone()) else {
            return Err(args);
        };
        let keys = command.keys();
        let Some(&first) = keys.first() else {
            return Err(args);
        };
        let slot = key_slot(first);
        if keys.iter().any(|k| key_slot(k) != slot) {
            return Err(args);
        }
        let Some((group, _)) = self.shared.map().group_of_slot(slot) else {
            return Err(args);
        };
        let write = command.is_write();
        drop(command);
        Ok(Pending {
            name: lower(&args[0]),
            write,
            bytes: args.iter().map(|a| a.len() + 16).sum(),
            group,
            slot,
            args,
        })
    }

    /// Sends a run, one op per group, every group at once, and encodes the
    /// replies in request order.
    async fn complete(&mut self, run: &mut Run, out: &mut Vec<u8>) {
        let Some(write) = run.requests.first().map(|r| r.write) else {
            return;
        };
        let requests = std::mem::take(&mut run.requests);
        run.bytes = 0;
        let started = Instant::now();
        let mut by_group: Vec<(u64, Vec<usize>)> = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            match by_group.iter_mut().find(|(g, _)| *g == request.group) {
                Some((_, members)) => members.push(i),
                None => by_group.push((request.group, vec![i])),
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (group, members) in by_group {
            let caller = if write {
                self.write_caller()
            } else {
                self.caller()
            };
            let shared = Arc::clone(&self.shared);
            let commands: Vec<(u16, Args)> = members
                .iter()
                .map(|&i| (requests[i].slot, requests[i].args.clone()))
                .collect();
            tasks.spawn(async move {
                let replies = send_group(&shared, group, write, commands, caller).await;
                (members, replies)
            });
        }
        let mut replies: Vec<Option<Frame>> = vec![None; requests.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((members, frames)) => {
                    for (i, frame) in members.into_iter().zip(frames) {
                        replies[i] = Some(frame);
                    }
                }
                Err(e) => warn!(error = %e, "a pipelined batch task failed"),
            }
        }
        let elapsed = started.elapsed();
        for (request, reply) in requests.iter().zip(replies) {
            let reply = reply.unwrap_or_else(|| error("ERR internal: the request was lost"));
            self.record(&request.name, elapsed, &reply);
            reply.encode(out, self.version);
        }
        if let Some(last) = requests.last() {
            self.last_command.clone_from(&last.name);
        }
    }

    /// Answers one request; `None` sends nothing.
    async fn handle(&mut self, args: Args) -> Option<Frame> {
        let name = lower(&args[0]);
        let started = Instant::now();
        let reply = self.dispatch(&name, args).await;
        match &reply {
            Some(frame) => self.record(&name, started.elapsed(), frame),
            None => self.record(&name, started.elapsed(), &Frame::Null),
        }
        self.last_command = name;
        reply
    }

    /// Counts one answered command in the metrics.
    fn record(&self, name: &str, latency: Duration, reply: &Frame) {
        let stats = self.shared.metrics.command(metric_name(name));
        stats.calls.inc();
        stats.latency.observe(latency);
        if let Frame::Error(e) = reply {
            stats.errors.inc();
            if e.starts_with(b"MOVED") {
                self.shared.metrics.moved.inc();
            } else if e.starts_with(b"TRYAGAIN") {
                self.shared.metrics.tryagain.inc();
            }
        }
    }

    async fn dispatch(&mut self, name: &str, args: Args) -> Option<Frame> {
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit") {
            return Some(error("NOAUTH Authentication required."));
        }
        if let Some(multi) = &mut self.multi
            && !matches!(
                name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            return Some(queue(multi, args));
        }
        Some(match name {
            "auth" => self.auth(&args),
            "hello" => self.hello(&args),
            "quit" => {
                self.quit = true;
                ok()
            }
            "reset" => {
                self.reset();
                Frame::Simple(b"RESET".to_vec())
            }
            "select" => match args.get(1).map(Vec::as_slice) {
                _ if args.len() != 2 => wrong_arity("select"),
                Some(b"0") => ok(),
                _ => error("ERR DB index is out of range"),
            },
            "asking" => ok(),
            "readonly" => {
                self.readonly = true;
                self.cluster_aware = true;
                ok()
            }
            "readwrite" => {
                self.readonly = false;
                ok()
            }
            "multi" => {
                if self.multi.is_some() {
                    error("ERR MULTI calls can not be nested")
                } else {
                    self.multi = Some(Multi::default());
                    ok()
                }
            }
            "discard" => match self.multi.take() {
                Some(_) => {
                    self.unwatch();
                    ok()
                }
                None => error("ERR DISCARD without MULTI"),
            },
            "exec" => self.exec().await,
            "watch" => self.watch(&args).await,
            "unwatch" => {
                self.unwatch();
                ok()
            }
            "client" => self.client(&args),
            "command" => crate::info::command(&args),
            "config" => crate::info::config(&self.shared, &args),
            "info" => crate::info::info(&self.shared, &args).await,
            "cluster" => {
                let sub = args.get(1).map(|s| lower(s)).unwrap_or_default();
                if matches!(sub.as_str(), "slots" | "shards" | "nodes")
                    && self.shared.config.redirect == Redirect::Auto
                {
                    self.cluster_aware = true;
                }
                crate::cluster::commands::cluster(&self.shared, &args).await
            }
            "dbsize" => self.dbsize(&args).await,
            "keys" => self.keys(&args).await,
            "scan" => self.scan(&args).await,
            "flushdb" | "flushall" => self.flush(&args).await,
            "time" => {
                let now = crate::clock::wall_clock_ms();
                Frame::Array(vec![
                    Frame::Bulk((now / 1000).to_string().into_bytes()),
                    Frame::Bulk(((now % 1000) * 1000).to_string().into_bytes()),
                ])
            }
            "wait" => Frame::Integer(0),
            _ => self.data(args).await,
        })
    }

    fn caller(&mut self) -> Caller {
        self.serial += 1;
        Caller {
            client_id: self.client_id,
            serial: self.serial,
            consistency: if self.readonly {
                Consistency::Local
            } else {
                Consistency::Linearizable
            },
            follows_moved: match self.shared.config.redirect {
                Redirect::Always => true,
                Redirect::Never => false,
                Redirect::Auto => self.cluster_aware,
            },
        }
    }

    fn write_caller(&mut self) -> Caller {
        let mut caller = self.caller();
        caller.consistency = Consistency::Linearizable;
        caller
    }

    /// A Redis data command: parsed here (errors answered at once), then
    /// routed to its slot's group.
    async fn data(&mut self, args: Args) -> Frame {
        let command = match Command::parse(args.clone()) {
            Ok(c) => c,
            Err(e) => return Frame::Error(e.to_redis_error()),
        };
        let keys = command.keys();
        let Some(&first) = keys.first() else {
            // PING, ECHO: no state.
            return match execute(&command, &NoState, 0) {
                Ok(outcome) => outcome.reply,
                Err(e) => Frame::Error(e.to_redis_error()),
            };
        };
        let slot = key_slot(first);
        if keys.iter().any(|k| key_slot(k) != slot) {
            return error("CROSSSLOT Keys in request don't hash to the same slot");
        }
        let map = self.shared.map();
        let Some((group, _)) = map.group_of_slot(slot) else {
            return error("CLUSTERDOWN Hash slot not served");
        };
        if command.is_write() {
            let entry = DataEntry::Exec {
                now_ms: crate::clock::wall_clock_ms(),
                slot,
                commands: vec![args],
                watches: Vec::new(),
                transaction: false,
            };
            let entry = match encode_entry(&entry) {
                Ok(bytes) => bytes,
                Err(reply) => return reply,
            };
            let caller = self.write_caller();
            self.shared
                .route(group, Some(slot), Op::Propose { entry }, caller)
                .await
        } else {
            let caller = self.caller();
            self.shared
                .route(
                    group,
                    Some(slot),
                    Op::Read {
                        slot,
                        commands: vec![args],
                    },
                    caller,
                )
                .await
        }
    }

    fn auth(&mut self, args: &Args) -> Frame {
        let password = match args.len() {
            2 => &args[1],
            3 => {
                if args[1] != b"default" {
                    return error("WRONGPASS invalid username-password pair or user is disabled.");
                }
                &args[2]
            }
            _ => return wrong_arity("auth"),
        };
        match &self.shared.config.requirepass {
            None => error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            Some(expected) if constant_time_eq(expected.as_bytes(), password) => {
                self.authenticated = true;
                ok()
            }
            Some(_) => error("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }

    fn hello(&mut self, args: &Args) -> Frame {
        let mut version = self.version;
        let mut i = 1;
        if let Some(v) = args.get(1) {
            match std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => version = RespVersion::Resp2,
                Some(3) => version = RespVersion::Resp3,
                Some(_) => return error("NOPROTO unsupported protocol version"),
                None => return error("ERR Protocol version is not an integer or out of range"),
            }
            i = 2;
        }
        while i < args.len() {
            match lower(&args[i]).as_str() {
                "auth" if i + 2 < args.len() => {
                    let reply = self.auth(&vec![
                        b"AUTH".to_vec(),
                        args[i + 1].clone(),
                        args[i + 2].clone(),
                    ]);
                    if matches!(reply, Frame::Error(_)) {
                        return reply;
                    }
                    i += 3;
                }
                "setname" if i + 1 < args.len() => {
                    self.name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => {
                    return error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&args[i])
                    ));
                }
            }
        }
        if !self.authenticated {
            return error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        self.version = version;
        let proto = match version {
            RespVersion::Resp2 => 2,
            RespVersion::Resp3 => 3,
        };
        let pair = |k: &str, v: Frame| (Frame::Bulk(k.as_bytes().to_vec()), v);
        Frame::Map(vec![
            pair("server", Frame::Bulk(b"redis".to_vec())),
            pair(
                "version",
                Frame::Bulk(crate::info::REDIS_VERSION.as_bytes().to_vec()),
            ),
            pair("proto", Frame::Integer(proto)),
            pair(
                "id",
                Frame::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            ),
            pair("mode", Frame::Bulk(b"cluster".to_vec())),
            pair("role", Frame::Bulk(b"master".to_vec())),
            pair("modules", Frame::Array(Vec::new())),
        ])
    }

    fn reset(&mut self) {
        self.multi = None;
        self.unwatch();
        self.readonly = false;
        self.version = RespVersion::Resp2;
        self.name = None;
        self.authenticated = self.shared.config.requirepass.is_none();
    }

    fn client(&mut self, args: &Args) -> Frame {
        let sub = args.get(1).map(|s| lower(s)).unwrap_or_default();
        match sub.as_str() {
            "setname" if args.len() == 3 => {
                if args[2].iter().any(|&b| b <= b' ' || b > b'~') {
                    return error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!args[2].is_empty()).then(|| args[2].clone());
                ok()
            }
            "getname" if args.len() == 2 => match &self.name {
                Some(name) => Frame::Bulk(name.clone()),
                None => Frame::NullBulk,
            },
            "id" if args.len() == 2 => Frame::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            "info" if args.len() == 2 => Frame::Bulk(self.client_info().into_bytes()),
            "setinfo" if args.len() == 4 => ok(),
            "no-evict" | "no-touch" if args.len() == 3 => ok(),
            "setname" | "getname" | "id" | "info" | "setinfo" => error(format!(
                "ERR wrong number of arguments for 'client|{sub}' command"
            )),
            _ => error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(args.get(1).map(Vec::as_slice).unwrap_or_default())
            )),
        }
    }

    fn client_info(&self) -> String {
        let flags = match (self.readonly, self.multi.is_some()) {
            (true, true) => "rx",
            (true, false) => "r",
            (false, true) => "x",
            (false, false) => "N",
        };
        format!(
            "id={} addr={} laddr={} name={} age={} db=0 flags={} resp={} cmd={}\n",
            self.id,
            self.peer,
            self.shared.client_addr,
            String::from_utf8_lossy(self.name.as_deref().unwrap_or_default()),
            self.created.elapsed().as_secs(),
            flags,
            match self.version {
                RespVersion::Resp2 => 2,
                RespVersion::Resp3 => 3,
            },
            if self.last_command.is_empty() {
                "NULL"
            } else {
                &self.last_command
            },
        )
    }

    fn unwatch(&mut self) {
        self.watches.clear();
        self.watch_slot = None;
        self.watch_crossslot = false;
    }

    /// WATCH: remembers each key's current stored bytes (read
    /// linearizably from its group); EXEC applies only if they still hold.
    async fn watch(&mut self, args: &Args) -> Frame {
        if self.multi.is_some() {
            return error("ERR WATCH inside MULTI is not allowed");
        }
        if args.len() < 2 {
            return wrong_arity("watch");
        }
        let keys: Vec<Vec<u8>> = args[1..].to_vec();
        let slot = key_slot(&keys[0]);
        if keys.iter().any(|k| key_slot(k) != slot) || self.watch_slot.is_some_and(|s| s != slot) {
            return error("CROSSSLOT Keys in request don't hash to the same slot");
        }
        let map = self.shared.map();
        let Some((group, _)) = map.group_of_slot(slot) else {
            return error("CLUSTERDOWN Hash slot not served");
        };
        let mut caller = self.caller();
        caller.consistency = Consistency::Linearizable;
        let reply = self
            .shared
            .route(
                group,
                Some(slot),
                Op::Peek {
                    slot,
                    keys: keys.clone(),
                },
                caller,
            )
            .await;
        let Frame::Array(values) = reply else {
            return reply;
        };
        for (key, value) in keys.into_iter().zip(values) {
            let value = match value {
                Frame::Bulk(v) => Some(v),
                _ => None,
            };
            self.watches.push(Watch { key, value });
        }
        self.watch_slot = Some(slot);
        ok()
    }

    async fn exec(&mut self) -> Frame {
        let Some(multi) = self.multi.take() else {
            return error("ERR EXEC without MULTI");
        };
        let watches = std::mem::take(&mut self.watches);
        let watch_slot = self.watch_slot.take();
        self.watch_crossslot = false;
        if multi.failed {
            return error("EXECABORT Transaction discarded because of previous errors.");
        }
        if multi.crossslot {
            return error("CROSSSLOT Keys in request don't hash to the same slot");
        }
        let slot = match (multi.slot, watch_slot) {
            (Some(a), Some(b)) if a != b => {
                return error("CROSSSLOT Keys in request don't hash to the same slot");
            }
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) => {
                // No keys at all: PINGs and ECHOs, answered here.
                let replies = multi
                    .commands
                    .into_iter()
                    .map(|args| match Command::parse(args) {
                        Ok(c) => execute(&c, &NoState, 0)
                            .map_or_else(|e| Frame::Error(e.to_redis_error()), |o| o.reply),
                        Err(e) => Frame::Error(e.to_redis_error()),
                    })
                    .collect();
                return Frame::Array(replies);
            }
        };
        let map = self.shared.map();
        let Some((group, _)) = map.group_of_slot(slot) else {
            return error("CLUSTERDOWN Hash slot not served");
        };
        let entry = DataEntry::Exec {
            now_ms: crate::clock::wall_clock_ms(),
            slot,
            commands: multi.commands,
            watches,
            transaction: true,
        };
        let entry = match encode_entry(&entry) {
            Ok(bytes) => bytes,
            Err(reply) => return reply,
        };
        let caller = self.write_caller();
        self.shared
            .route(group, Some(slot), Op::Propose { entry }, caller)
            .await
    }

    async fn flush(&mut self, args: &Args) -> Frame {
        if args.len() > 2
            || args
                .get(1)
                .is_some_and(|a| !matches!(lower(a).as_str(), "sync" | "async"))
        {
            return error("ERR syntax error");
        }
        let map = self.shared.map();
        for &group in map.groups.keys() {
            let caller = self.write_caller();
            let entry = DataEntry::Flush {
                now_ms: crate::clock::wall_clock_ms(),
            };
            let reply = self
                .shared
                .route(
                    group,
                    None,
                    Op::Propose {
                        entry: entry::encode(&entry),
                    },
                    caller,
                )
                .await;
            if matches!(reply, Frame::Error(_)) {
                return reply;
            }
        }
        ok()
    }

    async fn dbsize(&mut self, args: &Args) -> Frame {
        if args.len() != 1 {
            return wrong_arity("dbsize");
        }
        let map = self.shared.map();
        let mut total = 0i64;
        for &group in map.groups.keys() {
            let caller = self.caller();
            match self
                .shared
                .route(group, None, Op::Count { slot: None }, caller)
                .await
            {
                Frame::Integer(n) => total += n,
                other => return other,
            }
        }
        Frame::Integer(total)
    }

    async fn keys(&mut self, args: &Args) -> Frame {
        if args.len() != 2 {
            return wrong_arity("keys");
        }
        let pattern = args[1].clone();
        let mut all = Vec::new();
        let mut cursor = ScanCursor::start();
        loop {
            let (next, keys) = match self.scan_step(&cursor, 1_000, Some(pattern.clone())).await {
                Ok(step) => step,
                Err(frame) => return frame,
            };
            all.extend(keys);
            match next {
                Some(next) => cursor = next,
                None => return Frame::Array(all),
            }
        }
    }

    async fn scan(&mut self, args: &Args) -> Frame {
        if args.len() < 2 {
            return wrong_arity("scan");
        }
        let Some(cursor) = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            return error("ERR invalid cursor");
        };
        let mut count = 10usize;
        let mut pattern = None;
        let mut i = 2;
        while i < args.len() {
            match (lower(&args[i]).as_str(), args.get(i + 1)) {
                ("count", Some(n)) => {
                    match std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| n.parse::<i64>().ok())
                    {
                        Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                        Some(_) => return error("ERR syntax error"),
                        None => return error("ERR value is not an integer or out of range"),
                    }
                }
                ("match", Some(p)) => pattern = Some(p.clone()),
                ("type", Some(t)) => {
                    if lower(t) != "string" {
                        // Every Cairn key is a string.
                        return Frame::Array(vec![
                            Frame::Bulk(b"0".to_vec()),
                            Frame::Array(Vec::new()),
                        ]);
                    }
                }
                _ => return error("ERR syntax error"),
            }
            i += 2;
        }
        let Some(cursor) = self.shared.scan_cursors.get(cursor) else {
            return error("ERR invalid cursor");
        };
        // A step ends at its group's last slot; while it found fewer keys
        // than COUNT and stopped at a group boundary, go on to the next
        // group (at most one pass over the groups).
        let mut keys = Vec::new();
        let mut cursor = cursor;
        let groups = self.shared.map().groups.len();
        for _ in 0..groups.max(1) {
            let (next, batch) = match self.scan_step(&cursor, count, pattern.clone()).await {
                Ok(step) => step,
                Err(frame) => return frame,
            };
            keys.extend(batch);
            match next {
                Some(next) if next.after.is_none() && keys.len() < count => cursor = next,
                next => {
                    let next = next.map_or(0, |c| self.shared.scan_cursors.put(c));
                    return Frame::Array(vec![
                        Frame::Bulk(next.to_string().into_bytes()),
                        Frame::Array(keys),
                    ]);
                }
            }
        }
        let next = self.shared.scan_cursors.put(cursor);
        Frame::Array(vec![
            Frame::Bulk(next.to_string().into_bytes()),
            Frame::Array(keys),
        ])
    }

    /// One step of a scan: the group owning the cursor's slot returns up to
    /// `count` examined keys from there.
    async fn scan_step(
        &mut self,
        cursor: &ScanCursor,
        count: usize,
        pattern: Option<Vec<u8>>,
    ) -> Result<(Option<ScanCursor>, Vec<Frame>), Frame> {
        let map = self.shared.map();
        let Some((group, _)) = map.group_of_slot(cursor.slot) else {
            return Err(error("CLUSTERDOWN Hash slot not served"));
        };
        let caller = self.caller();
        let reply = self
            .shared
            .route(
                group,
                None,
                Op::Scan {
                    slot: cursor.slot,
                    after: cursor.after.clone(),
                    count,
                    pattern,
                },
                caller,
            )
            .await;
        match reply {
            Frame::Array(mut parts) if parts.len() == 3 => {
                let keys = match parts.pop() {
                    Some(Frame::Array(keys)) => keys,
                    _ => Vec::new(),
                };
                let after = match parts.pop() {
                    Some(Frame::Bulk(key)) => Some(key),
                    _ => None,
                };
                let next = match parts.pop() {
                    Some(Frame::Integer(slot)) if slot >= 0 => Some(ScanCursor {
                        slot: u16::try_from(slot).unwrap_or(0),
                        after,
                    }),
                    _ => None,
                };
                Ok((next, keys))
            }
            other => Err(other),
        }
    }
}

/// Where a SCAN resumes: a slot, and the last key returned in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCursor {
    pub slot: u16,
    pub after: Option<Vec<u8>>,
}

impl ScanCursor {
    fn start() -> ScanCursor {
        ScanCursor {
            slot: 0,
            after: None,
        }
    }
}

/// SCAN cursors handed to clients. A cursor at a slot boundary encodes
/// itself (`slot << 32`); one inside a slot also names a resume key, kept
/// here in a bounded table under a fresh number (`slot << 32 | n`). A
/// cursor whose entry was evicted, or that another node issued, restarts
/// its slot: keys may repeat (SCAN allows that), none present throughout
/// is missed.
#[derive(Debug, Default)]
pub struct ScanCursors {
    inner: std::sync::Mutex<ScanTable>,
}

#[derive(Debug, Default)]
struct ScanTable {
    next: u32,
    keys: std::collections::HashMap<u64, Vec<u8>>,
    order: std::collections::VecDeque<u64>,
}

/// Resume keys kept for SCAN cursors.
const MAX_SCAN_CURSORS: usize = 65_536;

impl ScanCursors {
    pub fn put(&self, cursor: ScanCursor) -> u64 {
        let base = u64::from(cursor.slot) << 32;
        let Some(after) = cursor.after else {
            return base;
        };
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        table.next = table.next.wrapping_add(1).max(1);
        let id = base | u64::from(table.next);
        if table.keys.insert(id, after).is_none() {
            table.order.push_back(id);
        }
        while table.order.len() > MAX_SCAN_CURSORS {
            if let Some(old) = table.order.pop_front() {
                table.keys.remove(&old);
            }
        }
        id
    }

    /// The cursor a client sent back, or `None` if no SCAN can have
    /// returned it.
    pub fn get(&self, cursor: u64) -> Option<ScanCursor> {
        let slot = u16::try_from(cursor >> 32).ok()?;
        if slot > crate::slot::MAX_SLOT {
            return None;
        }
        let after = if cursor & 0xFFFF_FFFF == 0 {
            None
        } else {
            let table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            table.keys.get(&cursor).cloned()
        };
        Some(ScanCursor { slot, after })
    }
}

fn queue(multi: &mut Multi, args: Args) -> Frame {
    if multi.commands.len() >= MAX_QUEUED {
        multi.failed = true;
        return error("ERR too many commands queued in MULTI");
    }
    let command = match Command::parse(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            multi.failed = true;
            return Frame::Error(e.to_redis_error());
        }
    };
    for key in command.keys() {
        let slot = key_slot(key);
        match multi.slot {
            None => multi.slot = Some(slot),
            Some(s) if s != slot => multi.crossslot = true,
            Some(_) => {}
        }
    }
    multi.commands.push(args);
    Frame::Simple(b"QUEUED".to_vec())
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Commands without keys read no state.
struct NoState;

impl crate::command::ReadState for NoState {
    fn get(
        &self,
        _key: &[u8],
    ) -> Result<Option<crate::command::StoredValue>, crate::command::StateError> {
        Ok(None)
    }
}

/// Metric label for a command name: known names as they are, anything else
/// as "unknown", so clients cannot grow the label set.
fn metric_name(name: &str) -> &str {
    if crate::info::KNOWN_COMMANDS.contains(&name) {
        name
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursors_round_trip_and_unknown_ones_restart_the_slot() {
        let cursors = ScanCursors::default();
        assert_eq!(cursors.get(0), Some(ScanCursor::start()));
        let boundary = cursors.put(ScanCursor {
            slot: 77,
            after: None,
        });
        assert_eq!(boundary, 77 << 32);
        let inside = cursors.put(ScanCursor {
            slot: 77,
            after: Some(b"k".to_vec()),
        });
        assert_eq!(
            cursors.get(inside),
            Some(ScanCursor {
                slot: 77,
                after: Some(b"k".to_vec())
            })
        );
        assert_eq!(
            cursors.get((77 << 32) | 999),
            Some(ScanCursor {
                slot: 77,
                after: None
            })
        );
        assert_eq!(cursors.get(u64::MAX), None);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"pw", b"pw"));
        assert!(!constant_time_eq(b"pw", b"pX"));
        assert!(!constant_time_eq(b"pw", b"pw2"));
    }
}
