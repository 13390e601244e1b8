//! The gateway-to-gateway peer link (issue #13): a follower forwards the
//! writes its hosts send to the gateway that holds a volume's lock, and
//! gateways tell each other about unit attentions that concern every
//! I_T nexus of a logical unit (LOGICAL UNIT RESET).
//!
//! Every frame is a 16-byte header — magic `ZCPL`, version, kind, two
//! reserved bytes, a tag and the body length, big-endian — and a body
//! whose layout the kind gives. Requests carry a tag the sender chose;
//! the answer is a [`Frame::Reply`] with the same tag, so many requests
//! may be in flight on one connection. [`Decoder`] is a state machine fed
//! bytes; it refuses a body longer than [`MAX_BODY`] before reading it
//! and never allocates more than what has arrived.
//!
//! A connection starts with mutual authentication ([`auth`]): Hello (the
//! dialer's id and nonce), Challenge (the listener's id, nonce and proof),
//! Response (the dialer's proof), Welcome.

pub mod auth;
mod decode;

pub use decode::Decoder;

/// Header length.
pub const HEADER_LEN: usize = 16;
/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"ZCPL";
/// The only version.
pub const VERSION: u8 = 1;
/// Largest payload of a forwarded write (a larger write is split by the
/// sender), and of each half of a COMPARE AND WRITE.
pub const MAX_DATA: usize = 8 << 20;
/// Largest body: a COMPARE AND WRITE's two halves and its fields.
pub const MAX_BODY: usize = 2 * MAX_DATA + 1024;
/// Longest gateway id or volume identity, in bytes.
pub const MAX_NAME: usize = 1024;
/// Length of a nonce and of a proof (HMAC-SHA256).
pub const NONCE_LEN: usize = 32;

/// Why bytes are not a frame. Any of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The magic is wrong: not a peer link.
    #[error("not a zctarget peer link frame (magic {0:02x?})")]
    Magic([u8; 4]),
    /// Another version.
    #[error("peer link version {0} is not supported (this gateway speaks {VERSION})")]
    Version(u8),
    /// An unknown kind.
    #[error("unknown peer frame kind {0}")]
    Kind(u8),
    /// The body announced is longer than allowed.
    #[error("peer frame body of {0} bytes exceeds the limit of {MAX_BODY}")]
    TooLong(u32),
    /// The body does not hold what the kind needs.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

/// A unit attention every I_T nexus of a logical unit gets, on every
/// gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedUa {
    /// A LOGICAL UNIT RESET (BUS DEVICE RESET FUNCTION OCCURRED, 06/29/03).
    LuReset,
}

impl SharedUa {
    fn code(self) -> u8 {
        match self {
            SharedUa::LuReset => 1,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(SharedUa::LuReset),
            _ => None,
        }
    }
}

/// The outcome of a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// The answering gateway may not write the volume (it does not hold
    /// its lock, or lost it: `fenced`); `settled`: another live gateway
    /// holds it.
    NotOwner {
        /// Lost the lock.
        fenced: bool,
        /// Another live gateway holds it.
        settled: bool,
    },
    /// The medium failed (write error).
    Medium,
    /// COMPARE AND WRITE: the data differ, first at this byte offset of
    /// the compared range; nothing was written.
    Miscompare(u64),
    /// The volume is read-only.
    WriteProtected,
    /// Not now (no buffers, too much in flight, timed out): retry.
    Busy,
    /// The answering gateway has no such volume.
    NoVolume,
    /// The request does not fit the volume (range, alignment).
    Invalid,
}

/// One frame of the peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Dialer → listener: who I am, my nonce.
    Hello {
        /// The dialer's gateway id.
        gateway: String,
        /// Its challenge to the listener.
        nonce: [u8; NONCE_LEN],
    },
    /// Listener → dialer: who I am, my nonce, my proof over both.
    Challenge {
        /// The listener's gateway id.
        gateway: String,
        /// Its challenge to the dialer.
        nonce: [u8; NONCE_LEN],
        /// [`auth::proof`] of the listener.
        proof: [u8; NONCE_LEN],
    },
    /// Dialer → listener: the dialer's proof.
    Response {
        /// [`auth::proof`] of the dialer.
        proof: [u8; NONCE_LEN],
    },
    /// Listener → dialer: authenticated.
    Welcome,
    /// Write `data` at `offset`.
    Write {
        /// The volume's identity.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// Durable before the answer.
        fua: bool,
        /// What to write.
        data: Vec<u8>,
    },
    /// Zero `len` bytes at `offset`.
    WriteZeroes {
        /// The volume's identity.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Discard (deallocate) `len` bytes at `offset`.
    Discard {
        /// The volume's identity.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Make completed writes durable.
    Flush {
        /// The volume's identity.
        volume: String,
    },
    /// Atomically: if the medium at `offset` equals `compare`, write
    /// `data` there (answered [`Status::Miscompare`] otherwise).
    CompareAndWrite {
        /// The volume's identity.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// Durable before the answer.
        fua: bool,
        /// The expected contents.
        compare: Vec<u8>,
        /// The new contents (as long as `compare`).
        data: Vec<u8>,
    },
    /// Establish `ua` for every I_T nexus of the volume's logical units.
    UnitAttention {
        /// The volume's identity.
        volume: String,
        /// Which.
        ua: SharedUa,
    },
    /// Are you there?
    Ping,
    /// Yes.
    Pong,
    /// The answer to the request with the same tag.
    Reply(Status),
    /// Release the volume's lock if this gateway owns it (`ctl volume
    /// handover` on the gateway that is to own it): answered once released.
    Release {
        /// The volume's identity.
        volume: String,
    },
}

/// Frame kinds on the wire.
mod kind {
    pub const HELLO: u8 = 1;
    pub const CHALLENGE: u8 = 2;
    pub const RESPONSE: u8 = 3;
    pub const WELCOME: u8 = 4;
    pub const WRITE: u8 = 5;
    pub const WRITE_ZEROES: u8 = 6;
    pub const DISCARD: u8 = 7;
    pub const FLUSH: u8 = 8;
    pub const COMPARE_AND_WRITE: u8 = 9;
    pub const UNIT_ATTENTION: u8 = 10;
    pub const PING: u8 = 11;
    pub const PONG: u8 = 12;
    pub const REPLY: u8 = 13;
    pub const RELEASE: u8 = 14;
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame kind.
    pub kind: u8,
    /// Request tag (a reply carries its request's).
    pub tag: u32,
    /// Body length.
    pub len: u32,
}

impl Header {
    /// Parses and checks a header: magic, version, kind and the body
    /// length limit.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, PeerError> {
        let magic = crate::wire::array::<4>(b, 0);
        if magic != MAGIC {
            return Err(PeerError::Magic(magic));
        }
        let version = crate::wire::u8_at(b, 4);
        if version != VERSION {
            return Err(PeerError::Version(version));
        }
        let kind = crate::wire::u8_at(b, 5);
        if !(kind::HELLO..=kind::RELEASE).contains(&kind) {
            return Err(PeerError::Kind(kind));
        }
        let tag = crate::wire::be32(b, 8);
        let len = crate::wire::be32(b, 12);
        if len as usize > MAX_BODY {
            return Err(PeerError::TooLong(len));
        }
        Ok(Header { kind, tag, len })
    }
}

impl Frame {
    /// A request that needs a [`Frame::Reply`] (the handshake frames and
    /// Pong do not).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Frame::Write { .. }
                | Frame::WriteZeroes { .. }
                | Frame::Discard { .. }
                | Frame::Flush { .. }
                | Frame::CompareAndWrite { .. }
                | Frame::UnitAttention { .. }
                | Frame::Release { .. }
        )
    }

    /// The frame with `tag`, header and body.
    pub fn encode(&self, tag: u32) -> Vec<u8> {
        let mut body = Vec::new();
        let k = match self {
            Frame::Hello { gateway, nonce } => {
                put_str(&mut body, gateway);
                body.extend_from_slice(nonce);
                kind::HELLO
            }
            Frame::Challenge {
                gateway,
                nonce,
                proof,
            } => {
                put_str(&mut body, gateway);
                body.extend_from_slice(nonce);
                body.extend_from_slice(proof);
                kind::CHALLENGE
            }
            Frame::Response { proof } => {
                body.extend_from_slice(proof);
                kind::RESPONSE
            }
            Frame::Welcome => kind::WELCOME,
            Frame::Write {
                volume,
                offset,
                fua,
                data,
            } => {
                put_str(&mut body, volume);
                body.extend_from_slice(&offset.to_be_bytes());
                body.push(u8::from(*fua));
                body.extend_from_slice(data);
                kind::WRITE
            }
            Frame::WriteZeroes {
                volume,
                offset,
                len,
            }
            | Frame::Discard {
                volume,
                offset,
                len,
            } => {
                put_str(&mut body, volume);
                body.extend_from_slice(&offset.to_be_bytes());
                body.extend_from_slice(&len.to_be_bytes());
                if matches!(self, Frame::Discard { .. }) {
                    kind::DISCARD
                } else {
                    kind::WRITE_ZEROES
                }
            }
            Frame::Flush { volume } => {
                put_str(&mut body, volume);
                kind::FLUSH
            }
            Frame::Release { volume } => {
                put_str(&mut body, volume);
                kind::RELEASE
            }
            Frame::CompareAndWrite {
                volume,
                offset,
                fua,
                compare,
                data,
            } => {
                put_str(&mut body, volume);
                body.extend_from_slice(&offset.to_be_bytes());
                body.push(u8::from(*fua));
                body.extend_from_slice(&(compare.len() as u32).to_be_bytes());
                body.extend_from_slice(compare);
                body.extend_from_slice(data);
                kind::COMPARE_AND_WRITE
            }
            Frame::UnitAttention { volume, ua } => {
                put_str(&mut body, volume);
                body.push(ua.code());
                kind::UNIT_ATTENTION
            }
            Frame::Ping => kind::PING,
            Frame::Pong => kind::PONG,
            Frame::Reply(status) => {
                let (code, flags, offset) = match *status {
                    Status::Ok => (0u8, 0u8, 0u64),
                    Status::NotOwner { fenced, settled } => {
                        (1, u8::from(fenced) | (u8::from(settled) << 1), 0)
                    }
                    Status::Medium => (2, 0, 0),
                    Status::Miscompare(at) => (3, 0, at),
                    Status::WriteProtected => (4, 0, 0),
                    Status::Busy => (5, 0, 0),
                    Status::NoVolume => (6, 0, 0),
                    Status::Invalid => (7, 0, 0),
                };
                body.push(code);
                body.push(flags);
                body.extend_from_slice(&offset.to_be_bytes());
                kind::REPLY
            }
        };
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(k);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The frame a header and its whole body make.
    pub fn parse(header: &Header, body: &[u8]) -> Result<Frame, PeerError> {
        let mut r = Reader { b: body };
        let name = kind_name(header.kind);
        let bad = || PeerError::Malformed(name);
        let f = match header.kind {
            kind::HELLO => Frame::Hello {
                gateway: r.string().ok_or_else(bad)?,
                nonce: r.array().ok_or_else(bad)?,
            },
            kind::CHALLENGE => Frame::Challenge {
                gateway: r.string().ok_or_else(bad)?,
                nonce: r.array().ok_or_else(bad)?,
                proof: r.array().ok_or_else(bad)?,
            },
            kind::RESPONSE => Frame::Response {
                proof: r.array().ok_or_else(bad)?,
            },
            kind::WELCOME => Frame::Welcome,
            kind::WRITE => {
                let volume = r.string().ok_or_else(bad)?;
                let offset = r.u64().ok_or_else(bad)?;
                let fua = r.flag().ok_or_else(bad)?;
                let data = r.rest();
                if data.len() > MAX_DATA {
                    return Err(bad());
                }
                Frame::Write {
                    volume,
                    offset,
                    fua,
                    data: data.to_vec(),
                }
            }
            kind::WRITE_ZEROES | kind::DISCARD => {
                let volume = r.string().ok_or_else(bad)?;
                let offset = r.u64().ok_or_else(bad)?;
                let len = r.u64().ok_or_else(bad)?;
                if header.kind == kind::DISCARD {
                    Frame::Discard {
                        volume,
                        offset,
                        len,
                    }
                } else {
                    Frame::WriteZeroes {
                        volume,
                        offset,
                        len,
                    }
                }
            }
            kind::FLUSH => Frame::Flush {
                volume: r.string().ok_or_else(bad)?,
            },
            kind::RELEASE => Frame::Release {
                volume: r.string().ok_or_else(bad)?,
            },
            kind::COMPARE_AND_WRITE => {
                let volume = r.string().ok_or_else(bad)?;
                let offset = r.u64().ok_or_else(bad)?;
                let fua = r.flag().ok_or_else(bad)?;
                let n = r.u32().ok_or_else(bad)? as usize;
                if n > MAX_DATA {
                    return Err(bad());
                }
                let compare = r.take(n).ok_or_else(bad)?.to_vec();
                let data = r.rest();
                if data.len() != n {
                    return Err(bad());
                }
                Frame::CompareAndWrite {
                    volume,
                    offset,
                    fua,
                    compare,
                    data: data.to_vec(),
                }
            }
            kind::UNIT_ATTENTION => Frame::UnitAttention {
                volume: r.string().ok_or_else(bad)?,
                ua: r.u8().and_then(SharedUa::from_code).ok_or_else(bad)?,
            },
            kind::PING => Frame::Ping,
            kind::PONG => Frame::Pong,
            kind::REPLY => {
                let code = r.u8().ok_or_else(bad)?;
                let flags = r.u8().ok_or_else(bad)?;
                let offset = r.u64().ok_or_else(bad)?;
                if flags & !3 != 0 || (code != 1 && flags != 0) || (code != 3 && offset != 0) {
                    return Err(bad());
                }
                Frame::Reply(match code {
                    0 => Status::Ok,
                    1 => Status::NotOwner {
                        fenced: flags & 1 != 0,
                        settled: flags & 2 != 0,
                    },
                    2 => Status::Medium,
                    3 => Status::Miscompare(offset),
                    4 => Status::WriteProtected,
                    5 => Status::Busy,
                    6 => Status::NoVolume,
                    7 => Status::Invalid,
                    _ => return Err(bad()),
                })
            }
            k => return Err(PeerError::Kind(k)),
        };
        if !r.b.is_empty() {
            return Err(bad());
        }
        Ok(f)
    }
}

fn kind_name(k: u8) -> &'static str {
    match k {
        kind::HELLO => "hello",
        kind::CHALLENGE => "challenge",
        kind::RESPONSE => "response",
        kind::WELCOME => "welcome",
        kind::WRITE => "write",
        kind::WRITE_ZEROES => "write zeroes",
        kind::DISCARD => "discard",
        kind::FLUSH => "flush",
        kind::COMPARE_AND_WRITE => "compare and write",
        kind::UNIT_ATTENTION => "unit attention",
        kind::PING => "ping",
        kind::PONG => "pong",
        kind::REPLY => "reply",
        kind::RELEASE => "release",
        _ => "unknown",
    }
}

fn put_str(body: &mut Vec<u8>, s: &str) {
    // Longer names are cut (the encoder never fails): the configuration
    // keeps ids and identities far below the limit.
    let b = s.as_bytes();
    let b = b.get(..b.len().min(MAX_NAME)).unwrap_or(b);
    body.extend_from_slice(&(b.len() as u16).to_be_bytes());
    body.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(u8::from_be_bytes(self.array()?))
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        if n > MAX_NAME {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}
