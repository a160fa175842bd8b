//! Content digests. `Display` and `FromStr` use the OCI form `algorithm:hex`.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::Digest as _;

/// Why a digest string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {input:?} does not start with {expected:?}")]
    WrongAlgorithm { input: String, expected: &'static str },
    #[error("digest {input:?} is not 64 lowercase hex digits")]
    BadHex { input: String },
}

fn parse_hex32(hex_part: &str, input: &str) -> Result<[u8; 32], DigestError> {
    let bad = || DigestError::BadHex { input: input.to_owned() };
    if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
    Ok(out)
}

macro_rules! digest_type {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The algorithm prefix used in the `algorithm:hex` form.
            pub const ALGORITHM: &'static str = $prefix;

            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex without the algorithm prefix (used for file names).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses bare lowercase hex (no prefix).
            pub fn from_hex(hex_part: &str) -> Result<Self, DigestError> {
                parse_hex32(hex_part, hex_part).map(Self)
            }

            /// Builds a digest from a 32-byte slice; `None` when the length is wrong.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(bytes).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:{}", $prefix, self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = DigestError;
            fn from_str(s: &str) -> Result<Self, DigestError> {
                let hex_part = s
                    .strip_prefix(concat!($prefix, ":"))
                    .ok_or_else(|| DigestError::WrongAlgorithm { input: s.to_owned(), expected: $prefix })?;
                parse_hex32(hex_part, s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_type!(Sha256Digest, "sha256", "A SHA-256 digest: OCI blob digests, DiffIDs, zstd:chunked TOC digests.");
digest_type!(Blake3Digest, "blake3", "A BLAKE3 digest: strata's own chunk and file digests.");

impl Sha256Digest {
    pub fn of(data: &[u8]) -> Self {
        Self(sha2::Sha256::digest(data).into())
    }
}

impl Blake3Digest {
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

/// A `Write` sink that SHA-256 hashes everything written to it, counting bytes.
#[derive(Default, Clone)]
pub struct Sha256Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256Hasher").field("len", &self.len).finish()
    }
}

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finalize(self) -> Sha256Digest {
        Sha256Digest(self.inner.finalize().into())
    }
}

impl Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Write` sink that BLAKE3 hashes everything written to it.
#[derive(Default, Clone, Debug)]
pub struct Blake3Hasher {
    inner: blake3::Hasher,
}

impl Blake3Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }
    pub fn finalize(&self) -> Blake3Digest {
        Blake3Digest(*self.inner.finalize().as_bytes())
    }
}

impl Write for Blake3Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_round_trips_and_matches_known_vector() {
        let d = Sha256Digest::of(b"abc");
        let s = d.to_string();
        assert_eq!(s, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.parse::<Sha256Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_wrong_algorithm_uppercase_and_short_hex() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(matches!(format!("blake3:{hex}").parse::<Sha256Digest>(), Err(DigestError::WrongAlgorithm { .. })));
        assert!(matches!(
            format!("sha256:{}", hex.to_uppercase()).parse::<Sha256Digest>(),
            Err(DigestError::BadHex { .. })
        ));
        assert!(matches!("sha256:abcd".parse::<Sha256Digest>(), Err(DigestError::BadHex { .. })));
    }

    #[test]
    fn hashers_agree_with_one_shot() {
        let mut h = Sha256Hasher::new();
        h.write_all(b"a").unwrap();
        h.write_all(b"bc").unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.finalize(), Sha256Digest::of(b"abc"));
        let mut b = Blake3Hasher::new();
        b.write_all(b"ab").unwrap();
        b.write_all(b"c").unwrap();
        assert_eq!(b.finalize(), Blake3Digest::of(b"abc"));
    }
}
