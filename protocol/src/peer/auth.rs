//! Mutual authentication of the peer link: HMAC-SHA256 over both nonces
//! and both gateway ids, with a secret every gateway of the cluster shares
//! (`cluster.peer_secret_file`). Each side proves it knows the secret for
//! the other side's fresh nonce, so a recorded exchange cannot be replayed
//! and a host without the secret cannot write volumes through the link.

use super::NONCE_LEN;
use crate::nvme::auth::response::{hmac, responses_match};
use crate::nvme::auth::HashId;

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
    let label: &[u8] = match side {
        Side::Listener => b"zctarget peer listener\0",
        Side::Dialer => b"zctarget peer dialer\0\0\0",
    };
    let (dl, ll) = (
        (dialer.len() as u64).to_be_bytes(),
        (listener.len() as u64).to_be_bytes(),
    );
    let parts: [&[u8]; 7] = [
        label,
        &dl,
        dialer.as_bytes(),
        &ll,
        listener.as_bytes(),
        dialer_nonce,
        listener_nonce,
    ];
    let out = hmac(HashId::Sha256, secret, &parts);
    let mut p = [0u8; NONCE_LEN];
    if let Some(out) = out.get(..NONCE_LEN) {
        p.copy_from_slice(out);
    }
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
    let want = proof(secret, side, dialer, listener, dialer_nonce, listener_nonce);
    responses_match(&want, got)
}
