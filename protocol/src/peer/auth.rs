//! Mutual authentication of the peer link: HMAC-SHA256 over both nonces
//! and both gateway ids, with a secret every gateway of the cluster shares
//! (`cluster.peer_secret_file`). Each side proves it knows the secret for
//! the other side's fresh nonce, so a recorded exchange cannot be replayed
//! and a host without the secret cannot write volumes through the link.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::NONCE_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Which side a proof is for (so one side's proof is never valid as the
/// other's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The gateway that accepted the connection.
    Listener,
    /// The gateway that connected.
    Dialer,
}

/// The proof `side` sends: HMAC-SHA256(secret, label ‖ dialer id ‖
/// listener id ‖ dialer nonce ‖ listener nonce), lengths prefixed.
pub fn proof(
    secret: &[u8],
    side: Side,
    dialer: &str,
    listener: &str,
    dialer_nonce: &[u8; NONCE_LEN],
    listener_nonce: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    let out = mac(secret, side, dialer, listener, dialer_nonce, listener_nonce)
        .finalize()
        .into_bytes();
    let mut p = [0u8; NONCE_LEN];
    p.copy_from_slice(&out);
    p
}

/// Whether `got` is `side`'s proof (compared in constant time).
pub fn verify(
    secret: &[u8],
    side: Side,
    dialer: &str,
    listener: &str,
    dialer_nonce: &[u8; NONCE_LEN],
    listener_nonce: &[u8; NONCE_LEN],
    got: &[u8; NONCE_LEN],
) -> bool {
    mac(secret, side, dialer, listener, dialer_nonce, listener_nonce)
        .verify_slice(got)
        .is_ok()
}

fn unreachable_mac() -> HmacSha256 {
    // HMAC takes keys of any length: new_from_slice never fails.
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    HmacSha256::new_from_slice(&[0]).expect("HMAC accepts any key length")
}

fn mac(
    secret: &[u8],
    side: Side,
    dialer: &str,
    listener: &str,
    dialer_nonce: &[u8; NONCE_LEN],
    listener_nonce: &[u8; NONCE_LEN],
) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_mac());
    m.update(match side {
        Side::Listener => b"zctarget peer listener\0",
        Side::Dialer => b"zctarget peer dialer\0\0\0",
    });
    for id in [dialer, listener] {
        m.update(&(id.len() as u64).to_be_bytes());
        m.update(id.as_bytes());
    }
    m.update(dialer_nonce);
    m.update(listener_nonce);
    m
}
