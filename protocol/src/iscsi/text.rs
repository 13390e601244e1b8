//! Login and Text key=value data (RFC 7143 §6.1).
//!
//! A text data segment is a sequence of `key=value` pairs, each followed by
//! exactly one NUL (0x00), encoded in UTF-8. Key names are standard labels:
//! a capital letter followed by letters, digits, `.`, `-`, `+`, `@` or `_`,
//! at most 63 bytes (`X-` and `X#` extension keys fit this form, `#`
//! being allowed right after the `X`). Values are at most 255 bytes, except
//! the large binary values of CHAP (`CHAP_C`, `CHAP_R`: up to 1024 bytes,
//! sent as `0x` and hex, RFC 7143 §12.1.3).
//!
//! Pairs split across PDUs (the C bit) are not handled here: callers pass a
//! complete logical text data segment.

/// Longest key name (RFC 7143 §6.1, standard-label).
pub const MAX_KEY_LEN: usize = 63;

/// Longest value of an ordinary key (RFC 7143 §6.1).
pub const MAX_VALUE_LEN: usize = 255;

/// Longest value of a key carrying a large-binary-value: `0x` followed by
/// the hex form of a 1024-byte CHAP challenge or response (RFC 7143
/// §12.1.3).
pub const MAX_LARGE_VALUE_LEN: usize = 2 + 2 * 1024;

/// Keys whose values may exceed [`MAX_VALUE_LEN`].
pub const LARGE_VALUE_KEYS: [&str; 2] = ["CHAP_C", "CHAP_R"];

/// The longest value `key` may carry.
pub fn max_value_len(key: &str) -> usize {
    if LARGE_VALUE_KEYS.contains(&key) {
        MAX_LARGE_VALUE_LEN
    } else {
        MAX_VALUE_LEN
    }
}

/// Why text data could not be decoded or a pair not encoded. Offsets are
/// those of the start of the offending pair in the data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The pair has no `=`.
    #[error("text pair at offset {offset} has no '='")]
    MissingEquals {
        /// Offset of the pair.
        offset: usize,
    },
    /// The key is empty (`=value`).
    #[error("empty key at offset {offset}")]
    EmptyKey {
        /// Offset of the pair.
        offset: usize,
    },
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("key at offset {offset} is {len} bytes, over {MAX_KEY_LEN}")]
    KeyTooLong {
        /// Offset of the pair.
        offset: usize,
        /// Key length in bytes.
        len: usize,
    },
    /// The key is not a standard label.
    #[error("key at offset {offset} is not a valid key name")]
    InvalidKey {
        /// Offset of the pair.
        offset: usize,
    },
    /// The value is longer than the key allows.
    #[error("value at offset {offset} is {len} bytes, over {max}")]
    ValueTooLong {
        /// Offset of the pair.
        offset: usize,
        /// Value length in bytes.
        len: usize,
        /// The limit for this key.
        max: usize,
    },
    /// The value contains a NUL (encoder only; on the wire a NUL ends it).
    #[error("value at offset {offset} contains NUL")]
    ValueContainsNul {
        /// Offset the pair would have had.
        offset: usize,
    },
    /// The pair is not valid UTF-8.
    #[error("text pair at offset {offset} is not UTF-8")]
    NotUtf8 {
        /// Offset of the pair.
        offset: usize,
    },
    /// The last pair has no terminating NUL.
    #[error("text pair at offset {offset} is not NUL-terminated")]
    Unterminated {
        /// Offset of the pair.
        offset: usize,
    },
    /// Two NULs in a row: an empty pair.
    #[error("empty text pair at offset {offset}")]
    EmptyPair {
        /// Offset of the pair.
        offset: usize,
    },
    /// The encoder's buffer or length bound has no room for the pair.
    #[error("text buffer full: pair needs {needed} bytes, {available} left")]
    BufferFull {
        /// Bytes the pair needs, with its NUL.
        needed: usize,
        /// Bytes left under the bound.
        available: usize,
    },
}

/// Characters of a standard-label after the first (RFC 7143 §6.1).
fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_')
}

/// Checks a key name; `offset` is used in the error.
fn check_key(key: &[u8], offset: usize) -> Result<(), TextError> {
    let Some((&first, rest)) = key.split_first() else {
        return Err(TextError::EmptyKey { offset });
    };
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong {
            offset,
            len: key.len(),
        });
    }
    // `X#` introduces IANA-registered public extension keys (§13.5.3).
    let rest = match rest.split_first() {
        Some((b'#', tail)) if first == b'X' => tail,
        _ => rest,
    };
    // RFC 7143 §6.1 asks for a capital first letter, but keys defined later
    // (iSCSIProtocolLevel, RFC 7144; iSERHelloRequired, RFC 7145) start with
    // a lowercase one, and initiators send them: accept any letter.
    if first.is_ascii_alphabetic() && rest.iter().all(|&c| is_label_char(c)) {
        Ok(())
    } else {
        Err(TextError::InvalidKey { offset })
    }
}

/// Decodes the pair at `pos`: `Ok((key, value, next_pos))`, or `None` at
/// the end of the data.
fn pair_at(data: &[u8], pos: usize) -> Option<Result<(&str, &str, usize), TextError>> {
    let rest = data.get(pos..).filter(|r| !r.is_empty())?;
    Some(split_pair(rest, pos))
}

fn split_pair(rest: &[u8], offset: usize) -> Result<(&str, &str, usize), TextError> {
    let nul = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or(TextError::Unterminated { offset })?;
    let (pair, _) = rest.split_at(nul);
    if pair.is_empty() {
        return Err(TextError::EmptyPair { offset });
    }
    let eq = pair
        .iter()
        .position(|&c| c == b'=')
        .ok_or(TextError::MissingEquals { offset })?;
    let (key, value) = pair.split_at(eq);
    let value = value.get(1..).unwrap_or_default();
    check_key(key, offset)?;
    let key = std::str::from_utf8(key).map_err(|_| TextError::NotUtf8 { offset })?;
    let value = std::str::from_utf8(value).map_err(|_| TextError::NotUtf8 { offset })?;
    let max = max_value_len(key);
    if value.len() > max {
        return Err(TextError::ValueTooLong {
            offset,
            len: value.len(),
            max,
        });
    }
    Ok((key, value, offset + nul + 1))
}

/// Validates a whole text data segment and returns an iterator over its
/// `(key, value)` pairs in order. Empty data has no pairs.
pub fn parse(data: &[u8]) -> Result<TextPairs<'_>, TextError> {
    let mut pos = 0;
    while let Some(pair) = pair_at(data, pos) {
        let (_, _, next) = pair?;
        pos = next;
    }
    Ok(TextPairs { data, pos: 0 })
}

/// The pairs of a validated text data segment; see [`parse`].
#[derive(Debug, Clone)]
pub struct TextPairs<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> TextPairs<'a> {
    /// The value of the first pair named `key`, if any.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.clone().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'a> Iterator for TextPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // The data was validated by `parse`, so every pair decodes.
        let (key, value, next) = pair_at(self.data, self.pos)?.ok()?;
        self.pos = next;
        Some((key, value))
    }
}

/// Appends `key=value\0` pairs to a caller's buffer, never past a length
/// bound (for example MaxRecvDataSegmentLength). A pair that does not fit
/// is not written at all.
#[derive(Debug)]
pub struct TextWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

impl<'a> TextWriter<'a> {
    /// A writer into `buf` that writes at most `limit` bytes.
    pub fn new(buf: &'a mut [u8], limit: usize) -> Self {
        let limit = limit.min(buf.len());
        TextWriter { buf, len: 0, limit }
    }

    /// Appends one pair, checking the key and value as [`parse`] would.
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TextError> {
        let offset = self.len;
        check_key(key.as_bytes(), offset)?;
        let max = max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                offset,
                len: value.len(),
                max,
            });
        }
        if value.as_bytes().contains(&0) {
            return Err(TextError::ValueContainsNul { offset });
        }
        // Key and value lengths are bounded above, so this cannot overflow.
        let needed = key.len() + value.len() + 2;
        let available = self.remaining();
        let end = offset + needed;
        let Some(dst) = self
            .buf
            .get_mut(offset..end)
            .filter(|_| needed <= available)
        else {
            return Err(TextError::BufferFull { needed, available });
        };
        let (k, rest) = dst.split_at_mut(key.len());
        k.copy_from_slice(key.as_bytes());
        if let Some((eq, rest)) = rest.split_first_mut() {
            *eq = b'=';
            let (v, nul) = rest.split_at_mut(value.len());
            v.copy_from_slice(value.as_bytes());
            nul.fill(0);
        }
        self.len = end;
        Ok(())
    }

    /// Appends a pair with a decimal value.
    pub fn push_u64(&mut self, key: &str, value: u64) -> Result<(), TextError> {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut v = value;
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let text = digits
            .get(start..)
            .and_then(|d| std::str::from_utf8(d).ok())
            .unwrap_or_default();
        self.push(key, text)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes left under the bound.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }
}
