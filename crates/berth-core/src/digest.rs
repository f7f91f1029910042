//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and a streaming hasher whose state can be
//! saved and restored, so a chunked upload can continue in another request, process or node.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::SerializableState;

/// The digest algorithms berth accepts. The distribution spec allows registries to support
/// both; sha256 is the default everywhere a client does not say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded digest.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(
                other.chars().take(64).collect(),
            )),
        }
    }
}

/// A validated digest: a known algorithm and lowercase hex of the right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest must have the form <algorithm>:<hex>")]
    Malformed,
    #[error("unsupported digest algorithm {0:?}: berth supports sha256 and sha512")]
    UnsupportedAlgorithm(String),
    #[error("digest hex must be {expected} lowercase hex characters")]
    BadHex { expected: usize },
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a complete in-memory value (manifests; never whole blobs).
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if algorithm.is_empty() || hex.is_empty() {
            return Err(DigestError::Malformed);
        }
        let algorithm: Algorithm = match algorithm.parse() {
            Ok(algorithm) => algorithm,
            Err(_) => {
                let other = algorithm;
                // The spec's algorithm grammar: [a-z0-9]+([+._-][a-z0-9]+)*. Anything else is
                // not a digest at all rather than an unsupported one.
                let well_formed = other
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
                return Err(if well_formed {
                    DigestError::UnsupportedAlgorithm(other.to_owned())
                } else {
                    DigestError::Malformed
                });
            }
        };
        let expected = algorithm.hex_len();
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != expected || !lower_hex {
            return Err(DigestError::BadHex { expected });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for either algorithm.
#[derive(Clone)]
pub enum DigestHasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

#[derive(Debug, thiserror::Error)]
#[error("saved hash state is corrupt")]
pub struct CorruptHashState;

impl DigestHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => DigestHasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => DigestHasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            DigestHasher::Sha256(_) => Algorithm::Sha256,
            DigestHasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(bytes),
            DigestHasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            DigestHasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            DigestHasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }

    /// The hasher's state as bytes: one tag byte for the algorithm, then sha2's own state.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 208);
        match self {
            DigestHasher::Sha256(h) => {
                out.push(1);
                out.extend_from_slice(&h.serialize());
            }
            DigestHasher::Sha512(h) => {
                out.push(2);
                out.extend_from_slice(&h.serialize());
            }
        }
        out
    }

    pub fn restore(saved: &[u8]) -> Result<Self, CorruptHashState> {
        let (tag, state) = saved.split_first().ok_or(CorruptHashState)?;
        match tag {
            1 => {
                let state = state.try_into().map_err(|_| CorruptHashState)?;
                sha2::Sha256::deserialize(state)
                    .map(DigestHasher::Sha256)
                    .map_err(|_| CorruptHashState)
            }
            2 => {
                let state = state.try_into().map_err(|_| CorruptHashState)?;
                sha2::Sha512::deserialize(state)
                    .map(DigestHasher::Sha512)
                    .map_err(|_| CorruptHashState)
            }
            _ => Err(CorruptHashState),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str =
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = HELLO_SHA256.parse().expect("valid");
        assert_eq!(d.to_string(), HELLO_SHA256);
        assert_eq!(Digest::of(Algorithm::Sha256, b"hello"), d);
    }

    #[test]
    fn sha512_is_supported() {
        let d = Digest::of(Algorithm::Sha512, b"hello");
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string().parse::<Digest>().expect("round trip"), d);
    }

    #[test]
    fn rejects_bad_digests() {
        assert_eq!("sha256".parse::<Digest>(), Err(DigestError::Malformed));
        assert_eq!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestError::BadHex { expected: 64 })
        );
        let upper = HELLO_SHA256.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
        assert_eq!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("md5".into()))
        );
        assert_eq!("SHA256:abc".parse::<Digest>(), Err(DigestError::Malformed));
    }

    #[test]
    fn saved_state_continues_where_it_stopped() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut first = DigestHasher::new(algorithm);
            first.update(b"hello ");
            let mut resumed = DigestHasher::restore(&first.save()).expect("restores");
            resumed.update(b"world");
            assert_eq!(resumed.finish(), Digest::of(algorithm, b"hello world"));
        }
        assert!(DigestHasher::restore(&[9, 1, 2]).is_err());
        assert!(DigestHasher::restore(&[1, 1, 2]).is_err());
    }
}
