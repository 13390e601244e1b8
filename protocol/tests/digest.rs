//! CRC32C digest known answers (RFC 3720 Appendix B.4 / RFC 7143).

use zctarget_protocol::iscsi::digest::{self, DataDigest};
use zctarget_protocol::nvme_tcp;

#[test]
fn rfc3720_b4_examples() {
    let zeros = [0u8; 32];
    let ones = [0xffu8; 32];
    let inc: Vec<u8> = (0u8..32).collect();
    let dec: Vec<u8> = (0u8..32).rev().collect();
    assert_eq!(digest::crc32c(&zeros), 0x8A91_36AA);
    assert_eq!(digest::crc32c(&ones), 0x62A8_AB43);
    assert_eq!(digest::crc32c(&inc), 0x46DD_794E);
    assert_eq!(digest::crc32c(&dec), 0x113F_DB5C);
    // The RFC lists the bytes as sent: "aa 36 91 8a".
    assert_eq!(
        digest::to_wire(digest::crc32c(&zeros)),
        [0xaa, 0x36, 0x91, 0x8a]
    );
    assert_eq!(digest::from_wire([0x43, 0xab, 0xa8, 0x62]), 0x62A8_AB43);
}

#[test]
fn data_digest_covers_padding() {
    let data = [1u8, 2, 3, 4, 5];
    assert_eq!(
        digest::data_digest(&data),
        digest::crc32c(&[1, 2, 3, 4, 5, 0, 0, 0])
    );
    let mut d = DataDigest::new();
    d.update(&data[..2]);
    d.update(&data[2..]);
    assert_eq!(d.finish(), digest::data_digest(&data));
    // Nothing to pad for an aligned segment, and the empty segment's CRC
    // is zero.
    assert_eq!(digest::data_digest(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(digest::data_digest(&[]), 0);
}

#[test]
fn nvme_tcp_digests_do_not_pad() {
    let data = [1u8, 2, 3, 4, 5];
    assert_eq!(nvme_tcp::digest::data_digest(&data), digest::crc32c(&data));
    assert_ne!(
        nvme_tcp::digest::data_digest(&data),
        digest::data_digest(&data)
    );
    let mut d = nvme_tcp::digest::DataDigest::new();
    d.update(&data[..3]);
    d.update(&data[3..]);
    assert_eq!(d.finish(), digest::crc32c(&data));
    assert_eq!(nvme_tcp::digest::header_digest(&[0u8; 32]), 0x8A91_36AA);
}
