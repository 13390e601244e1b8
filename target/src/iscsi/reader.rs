//! Reading iSCSI PDUs from a connection.
//!
//! Reads are exact: first the BHS (+ AHS + header digest), then the data
//! segment to where it belongs — control data (login/text, sense-less
//! commands) into a small bounded buffer, write payload (immediate data and
//! Data-Out) straight into the command's leased [`SegmentList`], so payload is
//! never copied in userspace. Padding and the data digest follow.

use std::io;
use std::rc::Rc;

use smallvec::SmallVec;
use tokio::net::TcpStream;

use crate::sockio::Receiver;
use zctarget_backends::{SegmentList, INLINE_SEGMENTS};
use zctarget_protocol::iscsi::{digest, Bhs, BhsError, BHS_LEN};

/// Why reading a PDU failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or closed mid-PDU.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// No PDU has started yet (stale readiness): wait again.
    #[error("no data yet")]
    NotReady,
    /// The peer closed the connection between PDUs.
    #[error("connection closed by the initiator")]
    Closed,
    /// The header digest did not match (RFC 7143 §7.8: the PDU is discarded
    /// and, at ErrorRecoveryLevel 0, the connection dropped).
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The data digest did not match; the header was fine.
    #[error("data digest mismatch")]
    DataDigest,
    /// A BHS that does not parse.
    #[error("malformed BHS: {0}")]
    Bhs(#[from] BhsError),
    /// A data segment longer than we declared we accept.
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    DataSegmentTooLong {
        /// Announced length.
        len: u32,
        /// Negotiated limit.
        max: u32,
    },
}

/// A received header: the BHS and its AHS.
#[derive(Debug, Clone)]
pub struct Header {
    /// The raw BHS.
    pub bhs: [u8; BHS_LEN],
    /// Additional header segments (rare: extended CDBs, bidi lengths).
    pub ahs: SmallVec<[u8; 32]>,
}

impl Header {
    /// The BHS view.
    pub fn view(&self) -> Result<Bhs, BhsError> {
        Bhs::from_bytes(&self.bhs)
    }

    /// DataSegmentLength.
    pub fn data_len(&self) -> u32 {
        u32::from_be_bytes([0, self.bhs[5], self.bhs[6], self.bhs[7]])
    }
}

/// Reads PDUs from one connection.
pub struct PduReader {
    rx: Receiver,
    /// CRC32C header digests negotiated.
    pub header_digest: bool,
    /// CRC32C data digests negotiated.
    pub data_digest: bool,
    /// Largest data segment we accept (our declared MaxRecvDataSegmentLength).
    pub max_data_segment: u32,
}

impl PduReader {
    /// A reader before login: no digests, 8 KiB data segments (RFC default).
    pub fn new(stream: Rc<TcpStream>) -> Self {
        Self {
            rx: Receiver::new(stream),
            header_digest: false,
            data_digest: false,
            max_data_segment: 8192,
        }
    }

    /// Reads exactly `buf.len()` bytes.
    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.rx.read_exact(buf).await
    }

    /// Bytes received and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.rx.buffered()
    }

    /// Waits until a PDU can be read: at once when bytes are already
    /// buffered.
    pub async fn readable(&self) -> io::Result<()> {
        self.rx.readable().await
    }

    /// Reads the next header. `Closed` when the peer closed cleanly before
    /// the first byte.
    pub async fn read_header(&mut self) -> Result<Header, ReadError> {
        let mut bhs = [0u8; BHS_LEN];
        // The caller waited for readiness; a first read that finds nothing
        // means the readiness was stale — say so rather than block here
        // where the caller's timers (NOP ping, shutdown) cannot fire. Zero
        // bytes: a clean close, told apart from a torn PDU.
        match self.rx.try_read_start(&mut bhs) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                if n < BHS_LEN {
                    self.read_exact(&mut bhs[n..]).await?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(ReadError::NotReady),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(ReadError::NotReady),
            Err(e) => return Err(e.into()),
        }
        let ahs_len = usize::from(bhs[4]) * 4;
        let mut ahs: SmallVec<[u8; 32]> = SmallVec::from_elem(0, ahs_len);
        if ahs_len > 0 {
            self.read_exact(&mut ahs).await?;
        }
        if self.header_digest {
            let mut d = [0u8; 4];
            self.read_exact(&mut d).await?;
            digest::verify(digest::header_digest(&bhs, &ahs), d)
                .map_err(|_| ReadError::HeaderDigest)?;
        }
        let header = Header { bhs, ahs };
        let len = header.data_len();
        if len > self.max_data_segment {
            return Err(ReadError::DataSegmentTooLong {
                len,
                max: self.max_data_segment,
            });
        }
        Ok(header)
    }

    /// Waits for and reads the next header (no caller timers involved,
    /// e.g. during login).
    pub async fn next_header(&mut self) -> Result<Header, ReadError> {
        loop {
            self.rx.readable().await?;
            match self.read_header().await {
                Err(ReadError::NotReady) => continue,
                other => return other,
            }
        }
    }

    /// Reads a data segment of `len` bytes into `buf` (control data).
    pub async fn read_data(&mut self, len: u32, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        buf.clear();
        buf.resize(len as usize, 0);
        self.read_exact(buf).await?;
        let crc = if self.data_digest {
            digest::data_digest(buf)
        } else {
            0
        };
        self.read_trailer(len as usize, crc).await
    }

    /// Reads a data segment of `len` bytes straight into `payload` at
    /// `offset` — the zero-copy path for write data.
    pub async fn read_data_into(
        &mut self,
        len: u32,
        payload: &mut SegmentList,
        offset: usize,
    ) -> Result<(), ReadError> {
        let len = len as usize;
        self.rx.read_into(payload, offset, len).await?;
        let crc = if self.data_digest {
            payload_digest(payload, offset, len)
        } else {
            0
        };
        self.read_trailer(len, crc).await
    }

    /// Reads and discards a data segment (for PDUs we answer without data).
    pub async fn skip_data(&mut self, len: u32) -> Result<(), ReadError> {
        let mut d = digest::DataDigest::new();
        let digest = self.data_digest;
        self.rx
            .skip(len as usize, |b| {
                if digest {
                    d.update(b)
                }
            })
            .await?;
        self.read_trailer(len as usize, d.finish()).await
    }

    /// Padding, then the data digest (checked against `crc`).
    async fn read_trailer(&mut self, len: usize, crc: u32) -> Result<(), ReadError> {
        if len == 0 {
            return Ok(());
        }
        let pad = digest::padding(len).len();
        let mut trailer = [0u8; 8];
        let want = pad + if self.data_digest { 4 } else { 0 };
        self.read_exact(&mut trailer[..want]).await?;
        if self.data_digest {
            let mut received = [0u8; 4];
            received.copy_from_slice(&trailer[pad..pad + 4]);
            digest::verify(crc, received).map_err(|_| ReadError::DataDigest)?;
        }
        Ok(())
    }
}

/// The iSCSI data digest (CRC32C over the data and its padding) of payload
/// bytes `[offset, offset + len)`: reads the leased data, copies nothing.
pub fn payload_digest(payload: &SegmentList, offset: usize, len: usize) -> u32 {
    let mut d = digest::DataDigest::new();
    let mut parts: SmallVec<[std::io::IoSlice<'_>; INLINE_SEGMENTS]> = SmallVec::new();
    payload.io_slices_range(offset, len, &mut parts);
    for p in &parts {
        d.update(p);
    }
    d.finish()
}
