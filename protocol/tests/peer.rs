//! The peer link codec: every frame round-trips through any split of its
//! bytes, oversized and malformed input is refused before allocation, and
//! the handshake proofs bind the secret, both ids, both nonces and the
//! side.

use proptest::prelude::*;
use zctarget_protocol::peer::auth::{self, Side};
use zctarget_protocol::peer::{
    Decoder, Frame, Header, PeerError, SharedUa, Status, HEADER_LEN, MAX_BODY, MAX_DATA,
};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9:/._-]{0,40}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Ok),
        (any::<bool>(), any::<bool>())
            .prop_map(|(fenced, settled)| Status::NotOwner { fenced, settled }),
        Just(Status::Medium),
        any::<u64>().prop_map(Status::Miscompare),
        Just(Status::WriteProtected),
        Just(Status::Busy),
        Just(Status::NoVolume),
        Just(Status::Invalid),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (name(), any::<[u8; 32]>()).prop_map(|(gateway, nonce)| Frame::Hello { gateway, nonce }),
        (name(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(gateway, nonce, proof)| {
            Frame::Challenge {
                gateway,
                nonce,
                proof,
            }
        }),
        any::<[u8; 32]>().prop_map(|proof| Frame::Response { proof }),
        Just(Frame::Welcome),
        (name(), any::<u64>(), any::<bool>(), bytes(3000)).prop_map(
            |(volume, offset, fua, data)| Frame::Write {
                volume,
                offset,
                fua,
                data
            }
        ),
        (name(), any::<u64>(), any::<u64>()).prop_map(|(volume, offset, len)| {
            Frame::WriteZeroes {
                volume,
                offset,
                len,
            }
        }),
        (name(), any::<u64>(), any::<u64>()).prop_map(|(volume, offset, len)| Frame::Discard {
            volume,
            offset,
            len
        }),
        name().prop_map(|volume| Frame::Flush { volume }),
        name().prop_map(|volume| Frame::Release { volume }),
        (name(), any::<u64>(), any::<bool>(), bytes(600)).prop_flat_map(
            |(volume, offset, fua, compare)| {
                let n = compare.len();
                proptest::collection::vec(any::<u8>(), n..=n).prop_map(move |data| {
                    Frame::CompareAndWrite {
                        volume: volume.clone(),
                        offset,
                        fua,
                        compare: compare.clone(),
                        data,
                    }
                })
            }
        ),
        name().prop_map(|volume| Frame::UnitAttention {
            volume,
            ua: SharedUa::LuReset
        }),
        Just(Frame::Ping),
        Just(Frame::Pong),
        status().prop_map(Frame::Reply),
    ]
}

proptest! {
    /// Frames back to back, fed in arbitrary pieces, come out equal and in
    /// order; the decoder ends at a boundary.
    #[test]
    fn frames_round_trip_through_any_split(
        frames in proptest::collection::vec((any::<u32>(), frame()), 1..6),
        cuts in proptest::collection::vec(1usize..500, 0..40),
    ) {
        let mut stream = Vec::new();
        for (tag, f) in &frames {
            stream.extend(f.encode(*tag));
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            got.extend(d.push_all(piece).unwrap());
            rest = tail;
        }
        prop_assert_eq!(got, frames);
        prop_assert!(d.at_boundary());
    }

    /// Any bytes: no panic, and whatever decodes re-encodes to the same
    /// bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(400)) {
        let mut d = Decoder::new();
        if let Ok(frames) = d.push_all(&data) {
            let again: Vec<u8> = frames.iter().flat_map(|(t, f)| f.encode(*t)).collect();
            prop_assert!(data.starts_with(&again));
        }
    }

    /// The proof verifies only with the same secret, ids, nonces and side.
    #[test]
    fn proofs_bind_everything(
        secret in bytes(40), other in bytes(40),
        a in name(), b in name(),
        na in any::<[u8; 32]>(), nb in any::<[u8; 32]>(),
    ) {
        let p = auth::proof(&secret, Side::Dialer, &a, &b, &na, &nb);
        prop_assert!(auth::verify(&secret, Side::Dialer, &a, &b, &na, &nb, &p));
        prop_assert!(!auth::verify(&secret, Side::Listener, &a, &b, &na, &nb, &p));
        if other != secret {
            prop_assert!(!auth::verify(&other, Side::Dialer, &a, &b, &na, &nb, &p));
        }
        if na != nb {
            prop_assert!(!auth::verify(&secret, Side::Dialer, &a, &b, &nb, &na, &p));
        }
        if a != b {
            prop_assert!(!auth::verify(&secret, Side::Dialer, &b, &a, &na, &nb, &p));
        }
    }
}

/// The dialer's proof for fixed inputs equals HMAC-SHA256 of the layout
/// the module documents, computed independently (Python's `hmac`):
/// `label ‖ be64(len) ‖ dialer ‖ be64(len) ‖ listener ‖ nonces`.
#[test]
fn a_proof_matches_an_independent_computation() {
    let p = auth::proof(b"s3cret", Side::Dialer, "gw-a", "gw-b", &[1; 32], &[2; 32]);
    let want = "f4a3794243359a6842f442f94940923c893eeb65401e9ee93404a9d817c05d2a";
    let got: String = p.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, want);
}

fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(b"ZCPL");
    h[4] = 1;
    h[5] = kind;
    h[12..].copy_from_slice(&len.to_be_bytes());
    h
}

#[test]
fn an_oversized_body_is_refused_at_the_header() {
    let h = header(5, (MAX_BODY + 1) as u32);
    assert_eq!(
        Header::parse(&h),
        Err(PeerError::TooLong((MAX_BODY + 1) as u32))
    );
    let mut d = Decoder::new();
    assert!(d.push(&h).is_err());
    // The largest allowed length is accepted, and nothing of it is
    // reserved before it arrives.
    let mut d = Decoder::new();
    let (n, f) = d
        .push(&header(5, u32::try_from(MAX_BODY).unwrap()))
        .unwrap();
    assert_eq!((n, f), (HEADER_LEN, None));
}

#[test]
fn a_write_longer_than_the_data_limit_is_malformed() {
    let f = Frame::Write {
        volume: "v".into(),
        offset: 0,
        fua: false,
        data: vec![0; MAX_DATA + 1],
    };
    assert_eq!(
        Decoder::new().push_all(&f.encode(1)),
        Err(PeerError::Malformed("write"))
    );
}

#[test]
fn bad_magic_version_kind_and_trailing_bytes_are_refused() {
    let mut h = header(11, 0);
    h[0] = b'X';
    assert!(matches!(Header::parse(&h), Err(PeerError::Magic(_))));
    let mut h = header(11, 0);
    h[4] = 2;
    assert_eq!(Header::parse(&h), Err(PeerError::Version(2)));
    assert_eq!(Header::parse(&header(0, 0)), Err(PeerError::Kind(0)));
    assert_eq!(Header::parse(&header(15, 0)), Err(PeerError::Kind(15)));
    assert_eq!(Header::parse(&header(99, 0)), Err(PeerError::Kind(99)));
    // A Ping with a body.
    let mut b = header(11, 1).to_vec();
    b.push(0);
    assert_eq!(
        Decoder::new().push_all(&b),
        Err(PeerError::Malformed("ping"))
    );
    // A compare and write whose halves differ in length.
    let mut f = Frame::CompareAndWrite {
        volume: "v".into(),
        offset: 0,
        fua: false,
        compare: vec![1, 2],
        data: vec![3, 4],
    }
    .encode(1);
    f.push(5);
    let len = u32::from_be_bytes(f[12..16].try_into().unwrap()) + 1;
    f[12..16].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Decoder::new().push_all(&f),
        Err(PeerError::Malformed("compare and write"))
    );
}

#[test]
fn requests_are_told_from_answers() {
    assert!(Frame::Flush { volume: "v".into() }.is_request());
    assert!(!Frame::Reply(Status::Ok).is_request());
    assert!(!Frame::Ping.is_request());
}
