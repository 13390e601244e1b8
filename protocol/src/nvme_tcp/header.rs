//! The 8-byte common header and PDU layout checks (TCP Transport 1.0
//! §3.6.2).

use super::{Direction, PduError, PduFlags, PduType, TERM_REQ_MAX_PLEN};
use crate::wire::{array, le32, put_le32};

/// Length of the common header.
pub const CH_LEN: usize = 8;

const DIGEST_LEN: u32 = 4;

/// The common header (CH) that starts every NVMe/TCP PDU (§3.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// PDU-Type.
    pub pdu_type: PduType,
    /// FLAGS.
    pub flags: PduFlags,
    /// HLEN: length of CH plus PDU-specific header, without header digest.
    pub hlen: u8,
    /// PDO: offset of the PDU data from the start of the PDU (0 if none).
    pub pdo: u8,
    /// PLEN: length of the whole PDU, digests and padding included.
    pub plen: u32,
}

/// Where the parts of a validated PDU lie, as byte offsets from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduLayout {
    /// HLEN.
    pub hlen: usize,
    /// True if a 4-byte header digest follows the header at `hlen`.
    pub header_digest: bool,
    /// Offset of the data (PDO); with no data, the end of the header and
    /// header digest.
    pub data_offset: usize,
    /// Length of the data, without padding or digest.
    pub data_len: usize,
    /// True if a 4-byte data digest follows the data.
    pub data_digest: bool,
    /// PLEN.
    pub plen: usize,
}

impl PduLayout {
    /// Bytes of padding between the header (and its digest) and the data.
    pub fn pad_len(&self) -> usize {
        let header_end = self.hlen + if self.header_digest { 4 } else { 0 };
        self.data_offset.saturating_sub(header_end)
    }
}

impl CommonHeader {
    /// Decodes the first 8 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, PduError> {
        let b: [u8; CH_LEN] =
            buf.get(..CH_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(PduError::Truncated {
                    needed: CH_LEN,
                    got: buf.len(),
                })?;
        Ok(CommonHeader {
            pdu_type: PduType::from_code(b[0])?,
            flags: PduFlags(b[1]),
            hlen: b[2],
            pdo: b[3],
            plen: le32(&b, 4),
        })
    }

    /// Encodes the 8 bytes.
    pub fn encode(&self) -> [u8; CH_LEN] {
        let mut b = [
            self.pdu_type.code(),
            self.flags.0,
            self.hlen,
            self.pdo,
            0,
            0,
            0,
            0,
        ];
        put_le32(&mut b, 4, self.plen);
        b
    }

    /// Checks the header against the negotiated digests and the receiver's
    /// PLEN limit, with no PDU data alignment requirement (PDA 0, i.e.
    /// 4-byte alignment), and returns the PDU's layout. Fields are checked
    /// in offset order so the error names the lowest bad field, as a
    /// C2HTermReq's FEI must (§3.6.2.4).
    pub fn validate(
        &self,
        hdr_digest_enabled: bool,
        data_digest_enabled: bool,
        max_plen: u32,
    ) -> Result<PduLayout, PduError> {
        self.validate_with_pda(hdr_digest_enabled, data_digest_enabled, max_plen, 0)
    }

    /// [`CommonHeader::validate`] with the receiver's PDU data alignment
    /// (HPDA or CPDA from the ICReq: data offsets must be multiples of
    /// `(pda + 1) * 4`, §3.6.2.2-3).
    pub fn validate_with_pda(
        &self,
        hdr_digest_enabled: bool,
        data_digest_enabled: bool,
        max_plen: u32,
        pda: u8,
    ) -> Result<PduLayout, PduError> {
        let t = self.pdu_type;
        let plen = self.plen;

        // A TermReq with an impossible length is not answered (NVMe over Fabrics 1.1
        // §7.4.7): check it first.
        if t.is_term_req() && !(u32::from(t.header_len())..=TERM_REQ_MAX_PLEN).contains(&plen) {
            return Err(PduError::InvalidTermReqLength(plen));
        }

        // FLAGS (offset 1).
        let hdgst = self.flags.contains(PduFlags::HDGSTF);
        let ddgst = self.flags.contains(PduFlags::DDGSTF);
        if hdgst != (t.has_header_digest() && hdr_digest_enabled)
            || (ddgst && !(t.has_data() && data_digest_enabled))
            || (t == PduType::C2HData
                && self.flags.contains(PduFlags::SUCCESS)
                && !self.flags.contains(PduFlags::LAST_PDU))
        {
            return Err(PduError::InvalidFlags(self.flags.0));
        }

        // HLEN (offset 2).
        if self.hlen != t.header_len() {
            return Err(PduError::InvalidHlen {
                pdu_type: t,
                hlen: self.hlen,
            });
        }
        let hlen = u32::from(self.hlen);
        let header_end = hlen + if hdgst { DIGEST_LEN } else { 0 };
        let pdo = u32::from(self.pdo);
        let fixed_layout = |data_offset: u32| PduLayout {
            hlen: hlen as usize,
            header_digest: hdgst,
            data_offset: data_offset as usize,
            data_len: plen.saturating_sub(data_offset) as usize,
            data_digest: false,
            plen: plen as usize,
        };

        let layout = if t.has_data() {
            if plen < header_end {
                return Err(PduError::InvalidPlen(plen));
            }
            if plen == header_end && (pdo == 0 || pdo == header_end) {
                // No data: DDGSTF would announce a digest there is no room for.
                if ddgst {
                    return Err(PduError::InvalidPlen(plen));
                }
                fixed_layout(header_end)
            } else {
                // PDO (offset 3).
                let align = (u32::from(pda) + 1) * 4;
                if pdo < header_end || pdo > plen || pdo % align != 0 {
                    return Err(PduError::InvalidPdo(self.pdo));
                }
                let after = plen - pdo;
                let data_len = if ddgst {
                    if after <= DIGEST_LEN {
                        return Err(PduError::InvalidPlen(plen));
                    }
                    after - DIGEST_LEN
                } else {
                    if data_digest_enabled && after > 0 {
                        // Data digests are on, but this PDU's data has none.
                        return Err(PduError::InvalidFlags(self.flags.0));
                    }
                    after
                };
                PduLayout {
                    hlen: hlen as usize,
                    header_digest: hdgst,
                    data_offset: pdo as usize,
                    data_len: data_len as usize,
                    data_digest: ddgst,
                    plen: plen as usize,
                }
            }
        } else {
            if self.pdo != 0 {
                return Err(PduError::InvalidPdo(self.pdo));
            }
            // PLEN (offset 4). TermReq data (the offending header) follows
            // the header directly; the range was checked above.
            if !t.is_term_req() && plen != header_end {
                return Err(PduError::InvalidPlen(plen));
            }
            fixed_layout(header_end)
        };

        if plen > max_plen {
            return Err(PduError::PlenExceedsLimit {
                plen,
                max: max_plen,
            });
        }
        Ok(layout)
    }

    /// Checks that the PDU travels in `direction`; a controller passes
    /// [`Direction::HostToController`] (FES 01h, FEI 0 otherwise).
    pub fn expect_direction(&self, direction: Direction) -> Result<(), PduError> {
        if self.pdu_type.direction() == direction {
            Ok(())
        } else {
            Err(PduError::UnexpectedPduType(self.pdu_type))
        }
    }
}

/// Reads the common header at the start of a fixed header array.
pub(crate) fn common_of<const N: usize>(b: &[u8; N]) -> Result<CommonHeader, PduError> {
    CommonHeader::parse(&array::<CH_LEN>(b, 0))
}
