//! Login/Text key=value tests (RFC 7143 §6.1).

use proptest::prelude::*;
use zctarget_protocol::iscsi::text::{self, TextError, TextWriter};

fn pairs(data: &[u8]) -> Result<Vec<(&str, &str)>, TextError> {
    text::parse(data).map(|p| p.collect())
}

#[test]
fn ok_cases() {
    let data =
        b"InitiatorName=iqn.1994-05.com.redhat:abc\0SessionType=Normal\0AuthMethod=None,CHAP\0";
    assert_eq!(
        pairs(data).unwrap(),
        [
            ("InitiatorName", "iqn.1994-05.com.redhat:abc"),
            ("SessionType", "Normal"),
            ("AuthMethod", "None,CHAP"),
        ]
    );
    let p = text::parse(data).unwrap();
    assert_eq!(p.get("SessionType"), Some("Normal"));
    assert_eq!(p.get("TargetName"), None);
    // An empty value, '=' inside a value, extension keys, UTF-8 aliases.
    assert_eq!(
        pairs("X-com.example.k=\0X#Reg_1=a=b\0InitiatorAlias=bücher\0".as_bytes()).unwrap(),
        [
            ("X-com.example.k", ""),
            ("X#Reg_1", "a=b"),
            ("InitiatorAlias", "bücher")
        ]
    );
}

#[test]
fn empty_data_has_no_pairs() {
    assert_eq!(pairs(b"").unwrap(), []);
}

#[test]
fn missing_equals() {
    assert_eq!(
        pairs(b"A=1\0NoEquals\0"),
        Err(TextError::MissingEquals { offset: 4 })
    );
}

#[test]
fn empty_key_and_empty_pair() {
    assert_eq!(pairs(b"=v\0"), Err(TextError::EmptyKey { offset: 0 }));
    assert_eq!(pairs(b"A=1\0\0"), Err(TextError::EmptyPair { offset: 4 }));
    assert_eq!(pairs(b"\0"), Err(TextError::EmptyPair { offset: 0 }));
}

#[test]
fn overlong_key() {
    let ok = format!("K{}=v\0", "x".repeat(62));
    assert_eq!(pairs(ok.as_bytes()).unwrap().len(), 1);
    let long = format!("K{}=v\0", "x".repeat(63));
    assert_eq!(
        pairs(long.as_bytes()),
        Err(TextError::KeyTooLong { offset: 0, len: 64 })
    );
}

#[test]
fn overlong_value() {
    let ok = format!("TargetAlias={}\0", "v".repeat(255));
    assert!(pairs(ok.as_bytes()).is_ok());
    let long = format!("TargetAlias={}\0", "v".repeat(256));
    assert_eq!(
        pairs(long.as_bytes()),
        Err(TextError::ValueTooLong {
            offset: 0,
            len: 256,
            max: 255
        })
    );
    // CHAP_C carries a large-binary-value: a 1024-byte challenge in hex.
    let chap = format!("CHAP_C=0x{}\0", "ab".repeat(1024));
    assert!(pairs(chap.as_bytes()).is_ok());
    let too_big = format!("CHAP_C=0x{}\0", "ab".repeat(1025));
    assert!(matches!(
        pairs(too_big.as_bytes()),
        Err(TextError::ValueTooLong { max: 2050, .. })
    ));
}

#[test]
fn non_utf8() {
    assert_eq!(
        pairs(b"A=1\0B=\xff\xfe\0"),
        Err(TextError::NotUtf8 { offset: 4 })
    );
}

#[test]
fn invalid_keys() {
    for bad in [
        &b"_lower=1\0"[..],
        b"A B=1\0",
        b"A#=1\0",
        b"1A=1\0",
        b"\xc3\xa9=1\0",
    ] {
        assert!(
            matches!(pairs(bad), Err(TextError::InvalidKey { offset: 0 })),
            "{bad:?}"
        );
    }
}

#[test]
fn keys_starting_lowercase_are_accepted() {
    // RFC 7144/7145 keys that initiators really send.
    assert_eq!(
        pairs(b"iSCSIProtocolLevel=1\0iSERHelloRequired=No\0"),
        Ok(vec![
            ("iSCSIProtocolLevel", "1"),
            ("iSERHelloRequired", "No")
        ])
    );
}

#[test]
fn unterminated_last_pair() {
    assert_eq!(
        pairs(b"A=1\0B=2"),
        Err(TextError::Unterminated { offset: 4 })
    );
}

#[test]
fn writer_appends_and_respects_the_bound() {
    let mut buf = [0xAAu8; 64];
    let mut w = TextWriter::new(&mut buf, 20);
    w.push("HeaderDigest", "None").unwrap();
    assert_eq!(w.as_bytes(), b"HeaderDigest=None\0");
    assert_eq!(w.remaining(), 2);
    // Does not fit: nothing is written.
    assert_eq!(
        w.push("A", "1"),
        Err(TextError::BufferFull {
            needed: 4,
            available: 2
        })
    );
    assert_eq!(w.len(), 18);

    let mut buf = [0u8; 64];
    let mut w = TextWriter::new(&mut buf, usize::MAX);
    w.push_u64("MaxRecvDataSegmentLength", 262_144).unwrap();
    w.push_u64("DefaultTime2Wait", 0).unwrap();
    assert_eq!(
        pairs(w.as_bytes()).unwrap(),
        [
            ("MaxRecvDataSegmentLength", "262144"),
            ("DefaultTime2Wait", "0")
        ]
    );
    assert!(matches!(
        w.push("1bad", "1"),
        Err(TextError::InvalidKey { .. })
    ));
    assert!(matches!(
        w.push("A", "x\0y"),
        Err(TextError::ValueContainsNul { .. })
    ));
    let mut small = [0u8; 3];
    assert!(TextWriter::new(&mut small, 100).push("A", "1").is_err());
}

fn key() -> impl Strategy<Value = String> {
    "[A-Z][A-Za-z0-9.+@_-]{0,62}"
}

proptest! {
    /// Whatever the writer accepts, the parser returns unchanged.
    #[test]
    fn writer_then_parser_round_trips(
        kvs in proptest::collection::vec((key(), "[^\0]{0,40}"), 0..12),
        limit in 0usize..2048,
    ) {
        let mut buf = vec![0u8; 1024];
        let mut w = TextWriter::new(&mut buf, limit);
        let mut written = Vec::new();
        for (k, v) in &kvs {
            if w.push(k, v).is_ok() {
                written.push((k.as_str(), v.as_str()));
            }
        }
        prop_assert!(w.len() <= limit.min(1024));
        let got = pairs(w.as_bytes()).unwrap();
        prop_assert_eq!(got, written);
    }

    /// Arbitrary bytes never panic; on success every pair is re-encodable.
    #[test]
    fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(p) = text::parse(&data) {
            let mut buf = vec![0u8; data.len()];
            let mut w = TextWriter::new(&mut buf, data.len());
            for (k, v) in p {
                w.push(k, v).unwrap();
            }
            prop_assert_eq!(w.as_bytes(), &data[..]);
        }
    }

    /// Mostly-valid text with one corrupted byte: still no panic, and any
    /// error names an offset inside the data.
    #[test]
    fn corrupted_text(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut data = b"InitiatorName=iqn.2024-01.x:y\0MaxBurstLength=262144\0".to_vec();
        let i = pos.index(data.len());
        data[i] = byte;
        let offset = match text::parse(&data) {
            Ok(_) => 0,
            Err(TextError::MissingEquals { offset }
                | TextError::EmptyKey { offset }
                | TextError::KeyTooLong { offset, .. }
                | TextError::InvalidKey { offset }
                | TextError::ValueTooLong { offset, .. }
                | TextError::NotUtf8 { offset }
                | TextError::Unterminated { offset }
                | TextError::EmptyPair { offset }) => offset,
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        };
        prop_assert!(offset < data.len());
    }
}
