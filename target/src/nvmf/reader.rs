//! Reading NVMe/TCP PDUs from one connection: the common header, the rest
//! of the header and its digest, padding up to PDO, data — control data into
//! a `Vec`, write data straight into leased buffers — and the data digest.

use std::io;
use std::rc::Rc;

use smallvec::SmallVec;
use tokio::net::TcpStream;
use zctarget_backends::SegmentList;
use zctarget_protocol::nvme_tcp::digest::{self, DataDigest};
use zctarget_protocol::nvme_tcp::{CommonHeader, PduError, PduLayout, PduType, CH_LEN};

/// Why reading a PDU failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or closed mid-PDU.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection between PDUs.
    #[error("connection closed by the host")]
    Closed,
    /// No PDU has started yet (the readiness that woke the caller was
    /// stale): wait again, timers included.
    #[error("no data yet")]
    NotReady,
    /// A malformed PDU; the header bytes read so far go in the C2HTermReq.
    #[error("{error}")]
    Pdu {
        /// What is wrong.
        error: PduError,
        /// The offending header (as much as was read).
        header: SmallVec<[u8; 72]>,
    },
    /// The data digest did not match.
    #[error("data digest mismatch")]
    DataDigest,
}

/// A PDU header read and checked, data not yet read.
#[derive(Debug)]
pub struct Header {
    /// The common header.
    pub ch: CommonHeader,
    /// Where the rest lies.
    pub layout: PduLayout,
    /// The whole header (CH included), up to HLEN.
    pub bytes: SmallVec<[u8; 72]>,
}

/// Reads PDUs from one connection.
pub struct PduReader {
    rx: crate::sockio::Receiver,
    /// Header digests negotiated.
    pub header_digest: bool,
    /// Data digests negotiated.
    pub data_digest: bool,
    /// Largest PLEN accepted.
    pub max_plen: u32,
}

impl PduReader {
    /// A reader before ICReq: no digests.
    pub fn new(stream: Rc<TcpStream>, max_plen: u32) -> Self {
        Self {
            rx: crate::sockio::Receiver::new(stream),
            header_digest: false,
            data_digest: false,
            max_plen,
        }
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
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

    /// Reads the next PDU header (CH, PDU-specific header, header digest,
    /// padding up to PDO). Call when the socket is readable. `Closed` when
    /// the host closed cleanly between PDUs, `NotReady` when no byte of a
    /// PDU is there yet.
    pub async fn read_header(&mut self) -> Result<Header, ReadError> {
        let mut ch = [0u8; CH_LEN];
        // The caller waited for readiness; if it was stale, say so rather
        // than block here where its timers cannot fire.
        match self.rx.try_read_start(&mut ch) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                if n < CH_LEN {
                    self.read_exact(&mut ch[n..]).await?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(ReadError::NotReady),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(ReadError::NotReady),
            Err(e) => return Err(e.into()),
        }
        let bad = |error: PduError, header: &[u8]| ReadError::Pdu {
            error,
            header: SmallVec::from_slice(header),
        };
        let parsed = CommonHeader::parse(&ch).map_err(|e| bad(e, &ch))?;
        let layout = parsed
            .validate(self.header_digest, self.data_digest, self.max_plen)
            .map_err(|e| bad(e, &ch))?;
        if parsed.pdu_type.is_term_req() {
            // The rest of a TermReq is read by the caller as data.
            let bytes = SmallVec::from_slice(&ch);
            return Ok(Header {
                ch: parsed,
                layout,
                bytes,
            });
        }
        let mut bytes: SmallVec<[u8; 72]> = SmallVec::from_elem(0, layout.hlen);
        bytes[..CH_LEN].copy_from_slice(&ch);
        self.read_exact(&mut bytes[CH_LEN..]).await?;
        if layout.header_digest {
            let mut d = [0u8; 4];
            self.read_exact(&mut d).await?;
            if digest::from_wire(d) != digest::header_digest(&bytes) {
                return Err(bad(PduError::HeaderDigest, &bytes));
            }
        }
        let pad = layout.pad_len();
        if pad > 0 {
            let mut scratch = [0u8; 128];
            self.read_exact(&mut scratch[..pad.min(128)]).await?;
        }
        Ok(Header {
            ch: parsed,
            layout,
            bytes,
        })
    }

    /// Reads the PDU's data into `buf` (control data) and checks its digest.
    pub async fn read_data(&mut self, h: &Header, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        buf.clear();
        buf.resize(h.layout.data_len, 0);
        self.read_exact(buf).await?;
        if h.layout.data_digest {
            self.check_digest(digest::data_digest(buf)).await?;
        }
        Ok(())
    }

    /// Reads the PDU's data straight into `payload` at `offset` (write data,
    /// no copy) and checks its digest.
    pub async fn read_data_into(
        &mut self,
        h: &Header,
        payload: &mut SegmentList,
        offset: usize,
    ) -> Result<(), ReadError> {
        let len = h.layout.data_len;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > payload.len())
        {
            return Err(ReadError::Pdu {
                error: PduError::DataOutOfRange,
                header: h.bytes.clone(),
            });
        }
        self.rx.read_into(payload, offset, len).await?;
        if h.layout.data_digest {
            self.check_digest(payload.crc32c_range(offset, len)).await?;
        }
        Ok(())
    }

    /// Reads and discards the PDU's data (digest still checked).
    pub async fn skip_data(&mut self, h: &Header) -> Result<(), ReadError> {
        let mut d = DataDigest::default();
        self.rx.skip(h.layout.data_len, |b| d.update(b)).await?;
        if h.layout.data_digest {
            self.check_digest(d.finish()).await?;
        }
        Ok(())
    }

    async fn check_digest(&mut self, crc: u32) -> Result<(), ReadError> {
        let mut d = [0u8; 4];
        self.read_exact(&mut d).await?;
        if digest::from_wire(d) == crc {
            Ok(())
        } else {
            Err(ReadError::DataDigest)
        }
    }
}

/// True for PDU types a host may send after the ICReq.
pub fn host_pdu(t: PduType) -> bool {
    matches!(
        t,
        PduType::CapsuleCmd | PduType::H2CData | PduType::H2CTermReq
    )
}
