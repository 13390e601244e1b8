//! NVMe in-band authentication (DH-HMAC-CHAP) settings: the names of the
//! hashes and DH groups, and the shape check of a `DHHC-1:xx:<base64>:`
//! secret (format, transformation, base64, key length, CRC-32). The
//! daemon parses secrets with `zctarget_protocol::nvme::auth::DhchapKey`;
//! this crate does not depend on the protocol crate, so the check that
//! reports a mistyped secret with its location lives here.

use base64::Engine as _;

/// Hash names, in the default preference order.
pub const HASHES: [&str; 3] = ["sha256", "sha384", "sha512"];
/// DH group names, in the default preference order.
pub const DHGROUPS: [&str; 6] = [
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
    "null",
];

/// Why `secret` is not a DH-HMAC-CHAP secret; never quotes it.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let format =
        || "expected DHHC-1:<00|01|02|03>:<base64>: (as `nvme gen-dhchap-key` prints)".to_owned();
    let rest = secret.strip_prefix("DHHC-1:").ok_or_else(format)?;
    let (hh, rest) = rest.split_once(':').ok_or_else(format)?;
    if !matches!(hh, "00" | "01" | "02" | "03") {
        return Err(format!(
            "unknown key transformation `{hh}` (00, 01, 02 or 03)"
        ));
    }
    let b64 = rest.strip_suffix(':').unwrap_or(rest);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key is not valid base64".to_owned())?;
    let len = raw.len().saturating_sub(4);
    if !matches!(len, 32 | 48 | 64) {
        return Err(format!("the key is {len} bytes; it must be 32, 48 or 64"));
    }
    let (key, crc) = raw.split_at(len);
    if crc != crc32fast::hash(key).to_le_bytes() {
        return Err("the key's CRC-32 does not match (mistyped secret?)".into());
    }
    Ok(())
}
