//! Deterministic blob contents: a seeded pseudo-random block repeated to any length, streamed
//! as an HTTP body without ever holding the whole blob in memory, and its sha256 digest.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};

/// Size of the repeated block. Blob sizes that are multiples of it hash and stream in
/// whole-block frames.
pub const BLOCK: usize = 1024 * 1024;

/// `len` pseudo-random bytes from `seed` (xorshift64*): incompressible, distinct per seed.
pub fn block(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// A blob made of `pattern` repeated until `size` bytes.
#[derive(Clone)]
pub struct Blob {
    pub pattern: Bytes,
    pub size: u64,
}

impl Blob {
    pub fn new(seed: u64, size: u64) -> Blob {
        let len = usize::try_from(size).unwrap_or(BLOCK).clamp(1, BLOCK);
        Blob {
            pattern: block(seed, len),
            size,
        }
    }

    /// `sha256:<hex>` over all `size` bytes (one pass over the pattern, repeated).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        let mut left = self.size;
        let len = self.pattern.len() as u64;
        while left > 0 {
            let n = left.min(len);
            hasher.update(&self.pattern[..n as usize]);
            left -= n;
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// Whether `bytes` are this blob's bytes from `offset` on: a byte-for-byte check of
    /// pulled content, several times cheaper than hashing it again.
    pub fn matches_at(&self, offset: u64, bytes: &[u8]) -> bool {
        let len = self.pattern.len() as u64;
        if offset + bytes.len() as u64 > self.size {
            return false;
        }
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let start = (at % len) as usize;
            let n = rest.len().min(self.pattern.len() - start);
            if rest[..n] != self.pattern[start..start + n] {
                return false;
            }
            rest = &rest[n..];
            at += n as u64;
        }
        true
    }

    /// The bytes `[start, end)` as a streaming body.
    pub fn body(&self, start: u64, end: u64) -> GenBody {
        GenBody {
            pattern: self.pattern.clone(),
            pos: start,
            end: end.min(self.size),
        }
    }
}

/// Streams a slice of a repeated pattern: every frame is a zero-copy slice of the pattern.
pub struct GenBody {
    pattern: Bytes,
    pos: u64,
    end: u64,
}

impl Body for GenBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let len = this.pattern.len() as u64;
        let start = this.pos % len;
        let n = (len - start).min(this.end - this.pos);
        this.pos += n;
        let frame = this.pattern.slice(start as usize..(start + n) as usize);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.pos))
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parse `1GiB`, `10MiB`, `4KiB`, `512`, `1G`, `10M`, `4k` (binary units) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 10MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    Ok(number << shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("ten").is_err());
    }

    #[tokio::test]
    async fn body_matches_digest() {
        let blob = Blob::new(7, 3 * BLOCK as u64 + 5);
        let mut all = Vec::new();
        let mut start = 0;
        // Uneven chunks, as a chunked upload would send them.
        for end in [100, BLOCK as u64 + 3, blob.size] {
            let bytes = blob.body(start, end).collect().await.unwrap().to_bytes();
            assert_eq!(bytes.len() as u64, end - start);
            all.extend_from_slice(&bytes);
            start = end;
        }
        assert_eq!(digest_of(&all), blob.digest());
        assert_ne!(Blob::new(8, 64).digest(), Blob::new(7, 64).digest());
    }

    #[tokio::test]
    async fn matches_only_its_own_bytes() {
        let blob = Blob::new(7, 2 * BLOCK as u64 + 9);
        let all = blob.body(0, blob.size).collect().await.unwrap().to_bytes();
        // Pieces that straddle the pattern's end, as network frames would.
        let mut at = 0;
        for piece in all.chunks(BLOCK - 3) {
            assert!(blob.matches_at(at as u64, piece));
            at += piece.len();
        }
        let mut flipped = all[BLOCK - 2..BLOCK + 2].to_vec();
        flipped[3] ^= 1;
        assert!(!blob.matches_at(BLOCK as u64 - 2, &flipped));
        assert!(!blob.matches_at(1, &all[..16]), "shifted by one byte");
        assert!(
            !blob.matches_at(blob.size - 4, &all[..8]),
            "runs past the end"
        );
        assert!(!Blob::new(8, blob.size).matches_at(0, &all[..64]));
    }
}
