//! A minimal RESP2 client: one request, one reply, nothing hidden. The
//! `redis` crate reconnects and may resend on its own, which would put ops
//! in the history that the harness never recorded; here an op is exactly
//! one request on one connection, and after any error or timeout the
//! connection is dropped (a late reply can never be taken for the next op).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk reply accepted, bytes: append values stay far below it
/// (keys rotate, see `workload`), so more is a broken reply.
const BULK_BYTES_MAX: usize = 16 << 20;
/// Longest status, error or integer line, bytes.
const LINE_BYTES_MAX: usize = 64 << 10;

/// A reply the harness understands (it sends no command answering arrays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply, within `timeout`.
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Reply, String> {
        tokio::time::timeout(timeout, self.call_inner(args))
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    async fn call_inner(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let io = |e: std::io::Error| e.to_string();
        self.stream.get_mut().write_all(&out).await.map_err(io)?;
        let line = self.line().await?;
        let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => rest
                .parse()
                .map(Reply::Int)
                .map_err(|_| format!("bad integer reply {rest:?}")),
            "$" => self.bulk(rest).await,
            _ => Err(format!("unexpected reply {line:?}")),
        }
    }

    async fn bulk(&mut self, len: &str) -> Result<Reply, String> {
        let len: i64 = len
            .parse()
            .map_err(|_| format!("bad bulk length {len:?}"))?;
        if len == -1 {
            return Ok(Reply::Bulk(None));
        }
        let len = usize::try_from(len).map_err(|_| format!("bad bulk length {len}"))?;
        if len > BULK_BYTES_MAX {
            return Err(format!("bulk of {len} bytes is over {BULK_BYTES_MAX}"));
        }
        let mut body = vec![0; len + 2];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        if body.split_off(len) != b"\r\n" {
            return Err("bulk reply without CRLF".to_owned());
        }
        Ok(Reply::Bulk(Some(body)))
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".to_owned());
        }
        if !line.ends_with(b"\r\n") {
            return Err("reply line without CRLF".to_owned());
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| "reply line is not UTF-8".to_owned())
    }
}
