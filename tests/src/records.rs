//! Self-describing data blocks (a torn, foreign or stale block is told
//! from a whole one) and a small replayable random generator.

pub const MAGIC: &[u8; 8] = b"ZCRASH01";

/// A block's content for `(block, version)`: magic, block number, version,
/// writer, a pattern derived from them, and a CRC32C over everything before
/// the last 4 bytes.
pub fn record(bs: usize, block: u64, version: u64, writer: u64) -> Vec<u8> {
    let mut b = vec![0u8; bs];
    b[0..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&block.to_le_bytes());
    b[16..24].copy_from_slice(&version.to_le_bytes());
    b[24..32].copy_from_slice(&writer.to_le_bytes());
    let mut x = (block << 32 ^ version).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in b[32..bs - 4].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    let crc = crc32c::crc32c(&b[..bs - 4]);
    b[bs - 4..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What a block on disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Never written (all zeroes): version 0.
    Blank,
    /// A whole record of this version.
    Version(u64),
}

/// Decodes the block `block` read back; `Err` says why it is not a whole
/// record of that block (torn, foreign, corrupt).
pub fn check_record(bytes: &[u8], block: u64) -> Result<Found, String> {
    let bs = bytes.len();
    if bytes.iter().all(|&b| b == 0) {
        return Ok(Found::Blank);
    }
    if &bytes[0..8] != MAGIC {
        return Err(format!(
            "block {block}: no magic (first bytes {:02x?})",
            &bytes[..16]
        ));
    }
    let crc = u32::from_le_bytes(bytes[bs - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..bs - 4]) != crc {
        return Err(format!(
            "block {block}: checksum mismatch (torn or corrupt)"
        ));
    }
    let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if at(8) != block {
        return Err(format!("block {block}: holds block {}", at(8)));
    }
    let version = at(16);
    if record(bs, block, version, at(24)) != bytes {
        return Err(format!(
            "block {block}: pattern mismatch at version {version}"
        ));
    }
    Ok(Found::Version(version))
}

/// One block as a short description: "v<version> w<writer>", "blank" or
/// why it is not a record (for failure reports).
pub fn describe_block(bytes: &[u8], block: u64) -> String {
    match check_record(bytes, block) {
        Ok(Found::Blank) => "blank".to_owned(),
        Ok(Found::Version(v)) => {
            let writer = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
            format!("v{v} w{writer}")
        }
        Err(e) => e,
    }
}

/// A small xorshift generator (seeded per test, printed, so a failure can
/// be replayed by hand).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A seed from `ZC_TEST_SEED` (to replay a failure), else from the
    /// clock.
    pub fn seed() -> u64 {
        if let Some(seed) = std::env::var("ZC_TEST_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return seed;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }

    // Named like the generators it stands in for; not an iterator.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
