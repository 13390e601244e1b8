//! The DH-HMAC-CHAP messages (Base 2.x §8.13.5 figures "AUTH_Negotiate"
//! to "AUTH_Failure"), carried in AUTH_Send and AUTH_Receive data.
//!
//! Every message starts with AUTH-TYPE (00h common, 01h DH-HMAC-CHAP),
//! AUTH-ID, two reserved bytes and T_ID (little-endian). Identifier
//! fields are kept raw (`u8`) so that any value round-trips; the
//! controller state machine decides what it accepts.

/// AUTH-TYPE of Negotiate and Failure messages.
pub const TYPE_COMMON: u8 = 0x00;
/// AUTH-TYPE of Challenge, Reply, Success1 and Success2.
pub const TYPE_DHCHAP: u8 = 0x01;

/// AUTH-ID values.
pub mod id {
    /// AUTH_Negotiate.
    pub const NEGOTIATE: u8 = 0x00;
    /// DH-HMAC-CHAP_Challenge.
    pub const CHALLENGE: u8 = 0x01;
    /// DH-HMAC-CHAP_Reply.
    pub const REPLY: u8 = 0x02;
    /// DH-HMAC-CHAP_Success1.
    pub const SUCCESS1: u8 = 0x03;
    /// DH-HMAC-CHAP_Success2.
    pub const SUCCESS2: u8 = 0x04;
    /// AUTH_Failure2 (host to controller).
    pub const FAILURE2: u8 = 0xF0;
    /// AUTH_Failure1 (controller to host).
    pub const FAILURE1: u8 = 0xF1;
}

/// Length of a protocol descriptor in AUTH_Negotiate.
pub const DESCRIPTOR_LEN: usize = 64;
/// Identifier slots of each list (hash, DH group) in a descriptor.
pub const ID_SLOTS: usize = 30;

/// One AUTH_Negotiate protocol descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Protocol {
    /// AUTHID (01h: DH-HMAC-CHAP).
    pub authid: u8,
    /// Hash identifiers the host offers, in its order (at most 30).
    pub hashes: Vec<u8>,
    /// DH group identifiers the host offers (at most 30).
    pub dhgroups: Vec<u8>,
}

/// AUTH_Negotiate (host to controller, AUTH_Send).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiate {
    /// Transaction identifier.
    pub tid: u16,
    /// SC_C: secure channel concatenation (00h: none).
    pub sc_c: u8,
    /// Protocol descriptors (NAPD of them).
    pub protocols: Vec<Protocol>,
}

/// DH-HMAC-CHAP_Challenge (controller to host, AUTH_Receive).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// Transaction identifier.
    pub tid: u16,
    /// HASHID.
    pub hash: u8,
    /// DHGID.
    pub dhgroup: u8,
    /// SEQNUM (S1).
    pub seqnum: u32,
    /// Challenge value C1 (HL bytes).
    pub challenge: Vec<u8>,
    /// The controller's DH public value (DHVLEN bytes, empty for null).
    pub dh_value: Vec<u8>,
}

/// DH-HMAC-CHAP_Reply (host to controller, AUTH_Send).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Transaction identifier.
    pub tid: u16,
    /// CVALID: the host asks the controller to authenticate itself
    /// (bidirectional; `challenge` and `seqnum` are valid).
    pub cvalid: bool,
    /// SEQNUM (S2; non-zero when `cvalid`).
    pub seqnum: u32,
    /// Response R1 (HL bytes).
    pub response: Vec<u8>,
    /// Challenge C2 (HL bytes, zero when not `cvalid`).
    pub challenge: Vec<u8>,
    /// The host's DH public value (DHVLEN bytes).
    pub dh_value: Vec<u8>,
}

/// DH-HMAC-CHAP_Success1 (controller to host, AUTH_Receive).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Success1 {
    /// Transaction identifier.
    pub tid: u16,
    /// RVALID: `response` holds the controller's response R2.
    pub rvalid: bool,
    /// R2 (HL bytes; zero when not `rvalid`).
    pub response: Vec<u8>,
}

/// AUTH_Failure1 / AUTH_Failure2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failure {
    /// Transaction identifier.
    pub tid: u16,
    /// Reason code (01h).
    pub code: u8,
    /// Reason code explanation ([`super::reason`]).
    pub explanation: u8,
}

/// Any authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// AUTH_Negotiate.
    Negotiate(Negotiate),
    /// DH-HMAC-CHAP_Challenge.
    Challenge(Challenge),
    /// DH-HMAC-CHAP_Reply.
    Reply(Reply),
    /// DH-HMAC-CHAP_Success1.
    Success1(Success1),
    /// DH-HMAC-CHAP_Success2.
    Success2 {
        /// Transaction identifier.
        tid: u16,
    },
    /// AUTH_Failure1.
    Failure1(Failure),
    /// AUTH_Failure2.
    Failure2(Failure),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its header or than the lengths it declares.
    #[error("truncated authentication message")]
    Truncated,
    /// An AUTH-TYPE / AUTH-ID pair that names no message.
    #[error("unknown authentication message type {auth_type:#04x} id {auth_id:#04x}")]
    Unknown {
        /// AUTH-TYPE.
        auth_type: u8,
        /// AUTH-ID.
        auth_id: u8,
    },
    /// A count beyond its field (HALEN or DHLEN above 30).
    #[error("malformed authentication message")]
    Malformed,
}

impl ParseError {
    /// The Failure1 reason code explanation this error answers with.
    pub const fn explanation(self) -> u8 {
        match self {
            ParseError::Unknown { .. } => super::reason::INCORRECT_MESSAGE,
            ParseError::Truncated | ParseError::Malformed => super::reason::INCORRECT_PAYLOAD,
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        x.copy_from_slice(s);
    }
    u16::from_le_bytes(x)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn take(b: &[u8], at: usize, len: usize) -> Result<Vec<u8>, ParseError> {
    b.get(at..at.checked_add(len).ok_or(ParseError::Truncated)?)
        .map(<[u8]>::to_vec)
        .ok_or(ParseError::Truncated)
}

fn header(auth_type: u8, auth_id: u8, tid: u16, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for (i, v) in [auth_type, auth_id].into_iter().enumerate() {
        if let Some(x) = b.get_mut(i) {
            *x = v;
        }
    }
    put(&mut b, 4, &tid.to_le_bytes());
    b
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(at..at + v.len()) {
        s.copy_from_slice(v);
    }
}

impl Message {
    /// Parses a message; bytes after its end are ignored (AUTH_Receive
    /// data is padded to the allocation length).
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < 8 {
            return Err(ParseError::Truncated);
        }
        let (auth_type, auth_id, tid) = (byte(b, 0), byte(b, 1), le16(b, 4));
        let need16 = || {
            if b.len() < 16 {
                Err(ParseError::Truncated)
            } else {
                Ok(())
            }
        };
        Ok(match (auth_type, auth_id) {
            (TYPE_COMMON, id::NEGOTIATE) => {
                let napd = usize::from(byte(b, 7));
                let mut protocols = Vec::with_capacity(napd);
                for i in 0..napd {
                    let d = take(b, 8 + i * DESCRIPTOR_LEN, DESCRIPTOR_LEN)?;
                    let (halen, dhlen) = (usize::from(byte(&d, 2)), usize::from(byte(&d, 3)));
                    if halen > ID_SLOTS || dhlen > ID_SLOTS {
                        return Err(ParseError::Malformed);
                    }
                    protocols.push(Protocol {
                        authid: byte(&d, 0),
                        hashes: take(&d, 4, halen)?,
                        dhgroups: take(&d, 4 + ID_SLOTS, dhlen)?,
                    });
                }
                Message::Negotiate(Negotiate {
                    tid,
                    sc_c: byte(b, 6),
                    protocols,
                })
            }
            (TYPE_DHCHAP, id::CHALLENGE) => {
                need16()?;
                let hl = usize::from(byte(b, 6));
                Message::Challenge(Challenge {
                    tid,
                    hash: byte(b, 8),
                    dhgroup: byte(b, 9),
                    seqnum: le32(b, 12),
                    challenge: take(b, 16, hl)?,
                    dh_value: take(b, 16 + hl, usize::from(le16(b, 10)))?,
                })
            }
            (TYPE_DHCHAP, id::REPLY) => {
                need16()?;
                let hl = usize::from(byte(b, 6));
                Message::Reply(Reply {
                    tid,
                    cvalid: byte(b, 8) & 1 != 0,
                    seqnum: le32(b, 12),
                    response: take(b, 16, hl)?,
                    challenge: take(b, 16 + hl, hl)?,
                    dh_value: take(b, 16 + 2 * hl, usize::from(le16(b, 10)))?,
                })
            }
            (TYPE_DHCHAP, id::SUCCESS1) => {
                need16()?;
                Message::Success1(Success1 {
                    tid,
                    rvalid: byte(b, 8) & 1 != 0,
                    response: take(b, 16, usize::from(byte(b, 6)))?,
                })
            }
            (TYPE_DHCHAP, id::SUCCESS2) => {
                need16()?;
                Message::Success2 { tid }
            }
            (TYPE_COMMON, id::FAILURE1 | id::FAILURE2) => {
                let f = Failure {
                    tid,
                    code: byte(b, 6),
                    explanation: byte(b, 7),
                };
                if auth_id == id::FAILURE1 {
                    Message::Failure1(f)
                } else {
                    Message::Failure2(f)
                }
            }
            (auth_type, auth_id) => return Err(ParseError::Unknown { auth_type, auth_id }),
        })
    }

    /// The transaction identifier.
    pub const fn tid(&self) -> u16 {
        match self {
            Message::Negotiate(m) => m.tid,
            Message::Challenge(m) => m.tid,
            Message::Reply(m) => m.tid,
            Message::Success1(m) => m.tid,
            Message::Success2 { tid } => *tid,
            Message::Failure1(f) | Message::Failure2(f) => f.tid,
        }
    }

    /// The AUTH-ID.
    pub const fn auth_id(&self) -> u8 {
        match self {
            Message::Negotiate(_) => id::NEGOTIATE,
            Message::Challenge(_) => id::CHALLENGE,
            Message::Reply(_) => id::REPLY,
            Message::Success1(_) => id::SUCCESS1,
            Message::Success2 { .. } => id::SUCCESS2,
            Message::Failure1(_) => id::FAILURE1,
            Message::Failure2(_) => id::FAILURE2,
        }
    }

    /// Encodes the message. Lengths beyond their fields (HL above 255,
    /// DHVLEN above 65535, more than 30 identifiers) are truncated to fit
    /// — callers build messages from valid values.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Negotiate(m) => {
                let napd = m.protocols.len().min(255);
                let mut b = header(TYPE_COMMON, id::NEGOTIATE, m.tid, 8 + napd * DESCRIPTOR_LEN);
                put(&mut b, 6, &[m.sc_c, napd as u8]);
                for (i, p) in m.protocols.iter().take(napd).enumerate() {
                    let at = 8 + i * DESCRIPTOR_LEN;
                    let hashes = p.hashes.get(..p.hashes.len().min(ID_SLOTS)).unwrap_or(&[]);
                    let groups = p
                        .dhgroups
                        .get(..p.dhgroups.len().min(ID_SLOTS))
                        .unwrap_or(&[]);
                    put(
                        &mut b,
                        at,
                        &[p.authid, 0, hashes.len() as u8, groups.len() as u8],
                    );
                    put(&mut b, at + 4, hashes);
                    put(&mut b, at + 4 + ID_SLOTS, groups);
                }
                b
            }
            Message::Challenge(m) => {
                let hl = m.challenge.len().min(255);
                let dl = m.dh_value.len().min(0xFFFF);
                let mut b = header(TYPE_DHCHAP, id::CHALLENGE, m.tid, 16 + hl + dl);
                put(&mut b, 6, &[hl as u8, 0, m.hash, m.dhgroup]);
                put(&mut b, 10, &(dl as u16).to_le_bytes());
                put(&mut b, 12, &m.seqnum.to_le_bytes());
                put(&mut b, 16, m.challenge.get(..hl).unwrap_or(&[]));
                put(&mut b, 16 + hl, m.dh_value.get(..dl).unwrap_or(&[]));
                b
            }
            Message::Reply(m) => {
                let hl = m.response.len().min(255);
                let dl = m.dh_value.len().min(0xFFFF);
                let mut b = header(TYPE_DHCHAP, id::REPLY, m.tid, 16 + 2 * hl + dl);
                put(&mut b, 6, &[hl as u8, 0, u8::from(m.cvalid)]);
                put(&mut b, 10, &(dl as u16).to_le_bytes());
                put(&mut b, 12, &m.seqnum.to_le_bytes());
                put(&mut b, 16, m.response.get(..hl).unwrap_or(&[]));
                let c2 = m.challenge.get(..m.challenge.len().min(hl)).unwrap_or(&[]);
                put(&mut b, 16 + hl, c2);
                put(&mut b, 16 + 2 * hl, m.dh_value.get(..dl).unwrap_or(&[]));
                b
            }
            Message::Success1(m) => {
                let hl = m.response.len().min(255);
                let mut b = header(TYPE_DHCHAP, id::SUCCESS1, m.tid, 16 + hl);
                put(&mut b, 6, &[hl as u8, 0, u8::from(m.rvalid)]);
                put(&mut b, 16, m.response.get(..hl).unwrap_or(&[]));
                b
            }
            Message::Success2 { tid } => header(TYPE_DHCHAP, id::SUCCESS2, *tid, 16),
            Message::Failure1(f) | Message::Failure2(f) => {
                let mut b = header(TYPE_COMMON, self.auth_id(), f.tid, 8);
                put(&mut b, 6, &[f.code, f.explanation]);
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn message() -> impl Strategy<Value = Message> {
        let proto = (any::<u8>(), bytes(31), bytes(31)).prop_map(|(authid, h, d)| Protocol {
            authid,
            hashes: h.into_iter().take(ID_SLOTS).collect(),
            dhgroups: d.into_iter().take(ID_SLOTS).collect(),
        });
        prop_oneof![
            (
                any::<u16>(),
                any::<u8>(),
                prop::collection::vec(proto, 0..3)
            )
                .prop_map(|(tid, sc_c, protocols)| Message::Negotiate(Negotiate {
                    tid,
                    sc_c,
                    protocols
                })),
            (
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                any::<u32>(),
                bytes(65),
                bytes(300)
            )
                .prop_map(|(tid, hash, dhgroup, seqnum, challenge, dh_value)| {
                    Message::Challenge(Challenge {
                        tid,
                        hash,
                        dhgroup,
                        seqnum,
                        challenge,
                        dh_value,
                    })
                }),
            (
                any::<u16>(),
                any::<bool>(),
                any::<u32>(),
                bytes(65),
                bytes(300)
            )
                .prop_map(|(tid, cvalid, seqnum, response, dh_value)| {
                    let challenge = response.iter().map(|b| b ^ 0x5A).collect();
                    Message::Reply(Reply {
                        tid,
                        cvalid,
                        seqnum,
                        response,
                        challenge,
                        dh_value,
                    })
                }),
            (any::<u16>(), any::<bool>(), bytes(65)).prop_map(|(tid, rvalid, response)| {
                Message::Success1(Success1 {
                    tid,
                    rvalid,
                    response,
                })
            }),
            any::<u16>().prop_map(|tid| Message::Success2 { tid }),
            (any::<u16>(), any::<u8>(), any::<u8>(), any::<bool>()).prop_map(
                |(tid, code, explanation, one)| {
                    let f = Failure {
                        tid,
                        code,
                        explanation,
                    };
                    if one {
                        Message::Failure1(f)
                    } else {
                        Message::Failure2(f)
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(m in message()) {
            let b = m.encode();
            prop_assert_eq!(Message::parse(&b), Ok(m.clone()));
            // Padding after the message (AUTH_Receive allocation) is ignored.
            let mut padded = b.clone();
            padded.resize(b.len() + 100, 0);
            prop_assert_eq!(Message::parse(&padded), Ok(m));
        }

        #[test]
        fn every_prefix_of_a_message_is_truncated(m in message()) {
            let b = m.encode();
            for n in 0..b.len() {
                if let Ok(short) = Message::parse(&b[..n]) {
                    // Only a Negotiate with trailing empty descriptors or
                    // a reply cut in its padding could decode; none can.
                    prop_assert!(false, "{n}-byte prefix decoded: {short:?}");
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in bytes(600)) {
            if let Ok(m) = Message::parse(&b) {
                prop_assert_eq!(Message::parse(&m.encode()), Ok(m));
            }
        }
    }

    #[test]
    fn layout_matches_the_spec_figures() {
        // A Linux host's Negotiate: SHA-256/384/512, groups null..8192.
        let n = Message::Negotiate(Negotiate {
            tid: 0x0102,
            sc_c: 0,
            protocols: vec![Protocol {
                authid: 1,
                hashes: vec![1, 2, 3],
                dhgroups: vec![0, 1, 2, 3, 4, 5],
            }],
        })
        .encode();
        assert_eq!(n.len(), 72);
        assert_eq!(&n[..12], &[0, 0, 0, 0, 2, 1, 0, 1, 1, 0, 3, 6]);
        assert_eq!(&n[12..15], &[1, 2, 3]);
        assert_eq!(&n[42..48], &[0, 1, 2, 3, 4, 5]);
        let f = Message::Failure1(Failure {
            tid: 7,
            code: 1,
            explanation: 6,
        })
        .encode();
        assert_eq!(f, [0, 0xF1, 0, 0, 7, 0, 1, 6]);
        let c = Message::Challenge(Challenge {
            tid: 9,
            hash: 1,
            dhgroup: 1,
            seqnum: 0x0A0B0C0D,
            challenge: vec![0xCC; 32],
            dh_value: vec![0xDD; 256],
        })
        .encode();
        assert_eq!(
            &c[..16],
            &[1, 1, 0, 0, 9, 0, 32, 0, 1, 1, 0, 1, 0x0D, 0x0C, 0x0B, 0x0A]
        );
        assert_eq!(c.len(), 16 + 32 + 256);
    }
}
