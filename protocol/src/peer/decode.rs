//! The frame decoder: a state machine fed bytes as they arrive.

use super::{Frame, Header, PeerError, HEADER_LEN};

/// Most bytes reserved ahead for a body: the rest grows with what
/// arrives, so a peer claiming a large body costs nothing until it sends.
const RESERVE_AHEAD: usize = 64 << 10;

/// Decodes a byte stream into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    header: [u8; HEADER_LEN],
    have: usize,
    parsed: Option<Header>,
    body: Vec<u8>,
}

impl Decoder {
    /// A decoder at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from `input`: returns how many it consumed and the
    /// frame they completed, if any (then call again with the rest). An
    /// error is final: the stream is not a peer link, or the peer broke
    /// the protocol.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<(u32, Frame)>), PeerError> {
        let mut used = 0;
        let header = match self.parsed {
            Some(h) => h,
            None => {
                let want = HEADER_LEN - self.have;
                let n = want.min(input.len());
                let (src, _) = input.split_at(n);
                if let Some(dst) = self.header.get_mut(self.have..self.have + n) {
                    dst.copy_from_slice(src);
                }
                self.have += n;
                used += n;
                if self.have < HEADER_LEN {
                    return Ok((used, None));
                }
                let h = Header::parse(&self.header)?;
                self.parsed = Some(h);
                self.body = Vec::with_capacity((h.len as usize).min(RESERVE_AHEAD));
                h
            }
        };
        let rest = input.get(used..).unwrap_or(&[]);
        let want = header.len as usize - self.body.len();
        let n = want.min(rest.len());
        self.body.extend_from_slice(rest.get(..n).unwrap_or(&[]));
        used += n;
        if self.body.len() < header.len as usize {
            return Ok((used, None));
        }
        let body = std::mem::take(&mut self.body);
        self.parsed = None;
        self.have = 0;
        let frame = Frame::parse(&header, &body)?;
        Ok((used, Some((header.tag, frame))))
    }

    /// Every frame `input` completes, in order (for tests and the fuzzer);
    /// stops at the first error.
    pub fn push_all(&mut self, mut input: &[u8]) -> Result<Vec<(u32, Frame)>, PeerError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, f) = self.push(input)?;
            out.extend(f);
            input = input.get(n..).unwrap_or(&[]);
        }
        Ok(out)
    }

    /// Whether the decoder is between frames (nothing partial buffered).
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.parsed.is_none()
    }
}
