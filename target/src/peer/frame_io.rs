//! Frames over a socket, and the handshake both sides run.
//!
//! Writes are plain copying `write_all`s (no `MSG_ZEROCOPY`): every
//! payload is the link's own copy, so nothing is borrowed from the buffer
//! pool across a send.

use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zctarget_protocol::peer::auth::{self, Side};
use zctarget_protocol::peer::{Decoder, Frame, NONCE_LEN};

/// How long the whole handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads frames off a socket.
pub struct FrameReader<R> {
    io: R,
    decoder: Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames from `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            decoder: Decoder::new(),
            buf: vec![0; 64 << 10],
            start: 0,
            end: 0,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<(u32, Frame)>> {
        loop {
            while self.start < self.end {
                let input = self.buf.get(self.start..self.end).unwrap_or(&[]);
                let (n, f) = self
                    .decoder
                    .push(input)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                self.start += n;
                if let Some(f) = f {
                    return Ok(Some(f));
                }
            }
            // Both reset before the read: a read cancelled by a select
            // must not leave the old bytes to be decoded again.
            self.start = 0;
            self.end = 0;
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return if self.decoder.at_boundary() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.end = n;
        }
    }

    /// The next frame, an end of stream being an error.
    pub async fn expect(&mut self) -> std::io::Result<(u32, Frame)> {
        self.next()
            .await?
            .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    tag: u32,
    f: &Frame,
) -> std::io::Result<()> {
    w.write_all(&f.encode(tag)).await
}

fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

fn refused(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)
}

/// The dialer's half: proves itself and checks the listener is `expect`
/// and knows the secret.
pub async fn dial_handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut FrameReader<R>,
    w: &mut W,
    me: &str,
    expect: &str,
    secret: &[u8],
) -> std::io::Result<()> {
    let mine = nonce();
    let hello = Frame::Hello {
        gateway: me.to_owned(),
        nonce: mine,
    };
    write_frame(w, 0, &hello).await?;
    let (_, f) = r.expect().await?;
    let Frame::Challenge {
        gateway,
        nonce: theirs,
        proof,
    } = f
    else {
        return Err(refused(format!("expected a challenge, got {f:?}")));
    };
    if gateway != expect {
        return Err(refused(format!("the peer is {gateway:?}, not {expect:?}")));
    }
    if !auth::verify(secret, Side::Listener, me, &gateway, &mine, &theirs, &proof) {
        return Err(refused(format!(
            "{gateway} did not prove the peer secret (wrong cluster.peer_secret_file?)"
        )));
    }
    let proof = auth::proof(secret, Side::Dialer, me, &gateway, &mine, &theirs);
    write_frame(w, 0, &Frame::Response { proof }).await?;
    match r.expect().await? {
        (_, Frame::Welcome) => Ok(()),
        (_, f) => Err(refused(format!("expected welcome, got {f:?}"))),
    }
}

/// The listener's half: the dialer must be one of `known` and prove the
/// secret; returns its id.
pub async fn accept_handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut FrameReader<R>,
    w: &mut W,
    me: &str,
    known: &[String],
    secret: &[u8],
) -> std::io::Result<String> {
    let (_, f) = r.expect().await?;
    let Frame::Hello {
        gateway,
        nonce: theirs,
    } = f
    else {
        return Err(refused("expected hello".into()));
    };
    if gateway == me || !known.contains(&gateway) {
        return Err(refused(format!("{gateway:?} is not a peer gateway")));
    }
    let mine = nonce();
    let proof = auth::proof(secret, Side::Listener, &gateway, me, &theirs, &mine);
    let challenge = Frame::Challenge {
        gateway: me.to_owned(),
        nonce: mine,
        proof,
    };
    write_frame(w, 0, &challenge).await?;
    let (_, f) = r.expect().await?;
    let Frame::Response { proof } = f else {
        return Err(refused("expected a response".into()));
    };
    if !auth::verify(secret, Side::Dialer, &gateway, me, &theirs, &mine, &proof) {
        return Err(refused(format!("{gateway} did not prove the peer secret")));
    }
    write_frame(w, 0, &Frame::Welcome).await?;
    Ok(gateway)
}
