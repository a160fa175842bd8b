//! The TOC ("manifest"): a JSON document listing every tar entry and every chunk.
//!
//! Serialization follows containers/storage's Go structs (`omitempty` on everything but
//! `type` and `name`, RFC 3339 times, base64 xattr values). Deserialization follows its reader:
//! keys are matched case-insensitively and unknown keys are ignored; unlike it, a key given
//! twice (in any case) is an error, so no two parsers can read one TOC differently.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strata_types::{Blake3Digest, Sha256Digest, Timestamp, Xattrs};

use crate::time::{format_rfc3339, parse_rfc3339};

/// The only TOC version.
pub const TOC_VERSION: u64 = 1;
/// The JSON key of strata's per-chunk BLAKE3 digest (ignored by containers/storage).
pub const STRATA_BLAKE3_KEY: &str = "strataBlake3";

/// An entry's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TocType {
    Reg,
    Hardlink,
    Char,
    Block,
    Dir,
    Fifo,
    Symlink,
    /// A later chunk of the preceding `reg` entry.
    Chunk,
}

impl TocType {
    pub fn as_str(self) -> &'static str {
        match self {
            TocType::Reg => "reg",
            TocType::Hardlink => "hardlink",
            TocType::Char => "char",
            TocType::Block => "block",
            TocType::Dir => "dir",
            TocType::Fifo => "fifo",
            TocType::Symlink => "symlink",
            TocType::Chunk => "chunk",
        }
    }

    pub fn parse(s: &str) -> Option<TocType> {
        Some(match s {
            "reg" => TocType::Reg,
            "hardlink" => TocType::Hardlink,
            "char" => TocType::Char,
            "block" => TocType::Block,
            "dir" => TocType::Dir,
            "fifo" => TocType::Fifo,
            "symlink" => TocType::Symlink,
            "chunk" => TocType::Chunk,
            _ => return None,
        })
    }
}

/// A chunk's `chunkType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ChunkType {
    /// `""` (omitted): compressed data.
    #[default]
    Data,
    /// `"zeros"`: the chunk is all zero bytes; readers may create a hole instead of fetching.
    Zeros,
}

/// One TOC entry, field for field as containers/storage's `FileMetadata`.
/// Numbers are unsigned here: a negative size, offset or id is rejected while parsing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TocEntry {
    pub kind: Option<TocType>,
    /// The tar header's name exactly as written (e.g. `./etc/`), not normalized.
    pub name: String,
    pub link_name: String,
    /// The tar header's mode field (permission bits; some writers add type bits).
    pub mode: u64,
    pub size: u64,
    pub uid: u64,
    pub gid: u64,
    pub mod_time: Option<Timestamp>,
    pub access_time: Option<Timestamp>,
    pub change_time: Option<Timestamp>,
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Values are raw bytes (base64 in JSON).
    pub xattrs: Xattrs,
    /// sha256 of the whole file's content (regular files with data).
    pub digest: Option<Sha256Digest>,
    /// Blob offset of the file's (or this chunk's) first compressed frame.
    pub offset: u64,
    /// Blob offset just after the file's last compressed frame (`reg` entries only).
    pub end_offset: u64,
    pub chunk_size: u64,
    /// Offset of this chunk within the uncompressed file.
    pub chunk_offset: u64,
    pub chunk_digest: Option<Sha256Digest>,
    pub chunk_type: ChunkType,
    /// strata's extension: BLAKE3 of this chunk's uncompressed bytes.
    pub strata_blake3: Option<Blake3Digest>,
}

/// The whole TOC document.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Toc {
    pub version: u64,
    pub entries: Vec<TocEntry>,
    /// sha256 of the compressed tar-split; absent only in obsolete blobs.
    pub tar_split_digest: Option<Sha256Digest>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Serialize for TocEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let time = |t: Timestamp| format_rfc3339(t).map_err(S::Error::custom);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.kind.map(TocType::as_str).unwrap_or(""))?;
        m.serialize_entry("name", &self.name)?;
        if !self.link_name.is_empty() {
            m.serialize_entry("linkName", &self.link_name)?;
        }
        let nums = [("mode", self.mode), ("size", self.size), ("uid", self.uid), ("gid", self.gid)];
        for (k, v) in nums {
            if v != 0 {
                m.serialize_entry(k, &v)?;
            }
        }
        for (k, t) in [("modtime", self.mod_time), ("accesstime", self.access_time), ("changetime", self.change_time)] {
            if let Some(t) = t {
                m.serialize_entry(k, &time(t)?)?;
            }
        }
        for (k, v) in [("devMajor", self.dev_major), ("devMinor", self.dev_minor)] {
            if v != 0 {
                m.serialize_entry(k, &v)?;
            }
        }
        if !self.xattrs.is_empty() {
            let enc: BTreeMap<&str, String> = self.xattrs.iter().map(|(k, v)| (k.as_str(), b64().encode(v))).collect();
            m.serialize_entry("xattrs", &enc)?;
        }
        if let Some(d) = &self.digest {
            m.serialize_entry("digest", d)?;
        }
        let nums = [("offset", self.offset), ("endOffset", self.end_offset), ("chunkSize", self.chunk_size)];
        for (k, v) in nums {
            if v != 0 {
                m.serialize_entry(k, &v)?;
            }
        }
        if self.chunk_offset != 0 {
            m.serialize_entry("chunkOffset", &self.chunk_offset)?;
        }
        if let Some(d) = &self.chunk_digest {
            m.serialize_entry("chunkDigest", d)?;
        }
        if self.chunk_type == ChunkType::Zeros {
            m.serialize_entry("chunkType", "zeros")?;
        }
        if let Some(d) = &self.strata_blake3 {
            m.serialize_entry(STRATA_BLAKE3_KEY, d)?;
        }
        m.end()
    }
}

impl Serialize for Toc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("version", &self.version)?;
        m.serialize_entry("entries", &self.entries)?;
        if let Some(d) = &self.tar_split_digest {
            m.serialize_entry("tarSplitDigest", d)?;
        }
        m.end()
    }
}

/// Lowercases a key the way Go's `strings.ToLower` would for the purpose of matching our
/// ASCII field names: the two non-ASCII letters that lower to ASCII (KELVIN SIGN, and
/// LATIN CAPITAL I WITH DOT ABOVE) are mapped, so such keys cannot hide a field from us.
fn go_lower(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212a}' => 'k',
            '\u{130}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Remembers which fields were seen, to reject duplicates.
struct Seen(u32);

impl Seen {
    fn mark<E: de::Error>(&mut self, bit: u32, key: &str) -> Result<(), E> {
        if self.0 & (1 << bit) != 0 {
            return Err(E::custom(format!("TOC key {key:?} given twice")));
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

fn opt_digest<'de, A: MapAccess<'de>, D: std::str::FromStr>(map: &mut A, key: &str) -> Result<Option<D>, A::Error>
where
    D::Err: fmt::Display,
{
    let s: Option<std::borrow::Cow<'de, str>> = map.next_value()?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| de::Error::custom(format!("TOC {key}: {e}"))),
    }
}

fn opt_time<'de, A: MapAccess<'de>>(map: &mut A, key: &str) -> Result<Option<Timestamp>, A::Error> {
    let s: Option<std::borrow::Cow<'de, str>> = map.next_value()?;
    match s.as_deref() {
        None => Ok(None),
        Some(s) => parse_rfc3339(s).map(Some).map_err(|e| de::Error::custom(format!("TOC {key}: {e}"))),
    }
}

/// The numeric field a (lowercased) key names, and its bit in [`Seen`].
fn number_field<'a>(e: &'a mut TocEntry, key: &str) -> Option<(&'a mut u64, u32)> {
    Some(match key {
        "mode" => (&mut e.mode, 3),
        "size" => (&mut e.size, 4),
        "uid" => (&mut e.uid, 5),
        "gid" => (&mut e.gid, 6),
        "devmajor" => (&mut e.dev_major, 10),
        "devminor" => (&mut e.dev_minor, 11),
        "offset" => (&mut e.offset, 14),
        "endoffset" => (&mut e.end_offset, 15),
        "chunksize" => (&mut e.chunk_size, 16),
        "chunkoffset" => (&mut e.chunk_offset, 17),
        _ => return None,
    })
}

/// The time field a (lowercased) key names, and its bit in [`Seen`].
fn time_field<'a>(e: &'a mut TocEntry, key: &str) -> Option<(&'a mut Option<Timestamp>, u32)> {
    Some(match key {
        "modtime" => (&mut e.mod_time, 7),
        "accesstime" => (&mut e.access_time, 8),
        "changetime" => (&mut e.change_time, 9),
        _ => return None,
    })
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = TocEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOC entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TocEntry, A::Error> {
        let mut e = TocEntry::default();
        let mut seen = Seen(0);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let lower = go_lower(&key);
            let lower = lower.as_str();
            let bit = if let Some((field, bit)) = number_field(&mut e, lower) {
                *field = map.next_value::<Option<u64>>()?.unwrap_or(0);
                bit
            } else if let Some((field, bit)) = time_field(&mut e, lower) {
                *field = opt_time(&mut map, lower)?;
                bit
            } else {
                match lower {
                    "type" => {
                        let t: std::borrow::Cow<'de, str> = map.next_value()?;
                        let kind = TocType::parse(&t)
                            .ok_or_else(|| de::Error::custom(format!("unknown TOC entry type {t:?}")))?;
                        e.kind = Some(kind);
                        0
                    }
                    "name" => {
                        e.name = map.next_value::<Option<String>>()?.unwrap_or_default();
                        1
                    }
                    "linkname" => {
                        e.link_name = map.next_value::<Option<String>>()?.unwrap_or_default();
                        2
                    }
                    "xattrs" => {
                        let raw: Option<BTreeMap<String, String>> = map.next_value()?;
                        for (k, v) in raw.unwrap_or_default() {
                            let bytes = b64()
                                .decode(&v)
                                .map_err(|err| de::Error::custom(format!("TOC xattr {k:?} is not base64: {err}")))?;
                            e.xattrs.insert(k, bytes);
                        }
                        12
                    }
                    "digest" => {
                        e.digest = opt_digest(&mut map, "digest")?;
                        13
                    }
                    "chunkdigest" => {
                        e.chunk_digest = opt_digest(&mut map, "chunkDigest")?;
                        18
                    }
                    "chunktype" => {
                        let t: Option<std::borrow::Cow<'de, str>> = map.next_value()?;
                        e.chunk_type = match t.as_deref() {
                            None | Some("") => ChunkType::Data,
                            Some("zeros") => ChunkType::Zeros,
                            Some(other) => return Err(de::Error::custom(format!("unknown TOC chunkType {other:?}"))),
                        };
                        19
                    }
                    "stratablake3" => {
                        e.strata_blake3 = opt_digest(&mut map, STRATA_BLAKE3_KEY)?;
                        20
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                }
            };
            seen.mark(bit, &key)?;
        }
        if e.kind.is_none() {
            return Err(de::Error::custom(format!("TOC entry {:?} has no type", e.name)));
        }
        Ok(e)
    }
}

impl<'de> Deserialize<'de> for TocEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

/// Deserializes the `entries` array, refusing more than `max` entries before allocating them.
struct EntriesSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<TocEntry>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<TocEntry>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of TOC entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::new();
        while let Some(e) = seq.next_element::<TocEntry>()? {
            if v.len() == self.max {
                return Err(de::Error::custom(format!("TOC has more than {} entries", self.max)));
            }
            v.push(e);
        }
        Ok(v)
    }
}

struct TocSeed {
    max_entries: usize,
}

impl<'de> DeserializeSeed<'de> for TocSeed {
    type Value = Toc;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Toc, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TocSeed {
    type Value = Toc;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOC object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Toc, A::Error> {
        let mut toc = Toc::default();
        let mut seen = Seen(0);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let bit = match go_lower(&key).as_str() {
                "version" => {
                    toc.version = map.next_value()?;
                    0
                }
                "entries" => {
                    toc.entries = map.next_value_seed(EntriesSeed { max: self.max_entries })?;
                    1
                }
                "tarsplitdigest" => {
                    toc.tar_split_digest = opt_digest(&mut map, "tarSplitDigest")?;
                    2
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            seen.mark(bit, &key)?;
        }
        Ok(toc)
    }
}

impl Toc {
    /// Parses TOC JSON, accepting at most `max_entries` entries. Trailing data is an error.
    pub fn from_json(json: &[u8], max_entries: usize) -> Result<Toc, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let toc = TocSeed { max_entries }.deserialize(&mut de)?;
        de.end()?;
        Ok(toc)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKOPEO_ENTRIES: &str = r#"{"version":1,"entries":[
      {"type":"dir","name":"./","mode":493,"modtime":"2026-11-23T17:53:24.920729985Z","accesstime":"2026-11-23T17:52:49.984730217Z","changetime":"2026-11-23T17:53:24.920729985Z"},
      {"type":"reg","name":"./usr/share/doc/gzip/changelog.gz","mode":420,"size":36418,"modtime":"2022-04-07T16:57:58Z","digest":"sha256:b25941eb6d4bbfe61837d6dd5b867764483db28f378fb128f11746a9e5e56ea9","offset":137663,"endOffset":174109,"chunkSize":17456,"chunkDigest":"sha256:e9986f6eac6907f7d3c720c16beb736637f7a84756f84552b080cc0fc83694fb"},
      {"type":"chunk","name":"./usr/share/doc/gzip/changelog.gz","offset":155133,"chunkSize":18962,"chunkOffset":17456,"chunkDigest":"sha256:5c9ebee4318c90b203472020891964b63342149f162608eeab14b9c682beef2a","chunkType":"zeros"},
      {"type":"hardlink","name":"./usr/bin/gunzip","linkName":"./usr/bin/uncompress","mode":493,"xattrs":{"user.a":"aGVsbG8="}}
    ],"tarSplitDigest":"sha256:848d7af4e4b09498bc46567cd04d2f039748cb447e768e7d52847dbdf4cc91a1"}"#;

    #[test]
    fn parses_skopeo_toc_and_round_trips() {
        let toc = Toc::from_json(SKOPEO_ENTRIES.as_bytes(), 100).unwrap();
        assert_eq!(toc.version, 1);
        assert_eq!(toc.entries.len(), 4);
        let reg = &toc.entries[1];
        assert_eq!(
            (reg.kind, reg.size, reg.offset, reg.end_offset, reg.chunk_size),
            (Some(TocType::Reg), 36418, 137663, 174109, 17456)
        );
        assert_eq!(toc.entries[2].chunk_type, ChunkType::Zeros);
        assert_eq!(toc.entries[3].link_name, "./usr/bin/uncompress");
        assert_eq!(toc.entries[3].xattrs["user.a"], b"hello");
        assert_eq!(toc.entries[0].mod_time, Some(Timestamp::new(1795456404, 920729985)));
        let back = Toc::from_json(&toc.to_json().unwrap(), 100).unwrap();
        assert_eq!(back, toc);
        // The serialized form uses Go's key spellings and omits zero values.
        let v: serde_json::Value = serde_json::from_slice(&toc.to_json().unwrap()).unwrap();
        assert_eq!(v["entries"][3]["linkName"], "./usr/bin/uncompress");
        assert!(v["entries"][0].get("size").is_none() && v["entries"][0].get("digest").is_none());
        assert_eq!(v["entries"][1]["endOffset"], 174109);
    }

    #[test]
    fn keys_are_case_insensitive_unknown_keys_ignored_duplicates_rejected() {
        let t =
            Toc::from_json(br#"{"Version":1,"ENTRIES":[{"TYPE":"dir","Name":"a","future":{"x":[1]}}],"extra":1}"#, 9)
                .unwrap();
        assert_eq!(t.entries[0].name, "a");
        let dup = br#"{"version":1,"entries":[{"type":"reg","name":"a","NAME":"b"}]}"#;
        assert!(Toc::from_json(dup, 9).unwrap_err().to_string().contains("twice"));
        let kelvin = "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"lin\u{212a}name\":\"x\"}]}";
        assert_eq!(Toc::from_json(kelvin.as_bytes(), 9).unwrap().entries[0].link_name, "x");
        let dup_version = br#"{"version":1,"version":2,"entries":[]}"#;
        assert!(Toc::from_json(dup_version, 9).is_err());
    }

    #[test]
    fn rejects_hostile_values() {
        let cases: &[(&str, &str)] = &[
            (r#"{"version":1,"entries":[{"type":"reg","name":"a","size":-1}]}"#, "negative size"),
            (r#"{"version":1,"entries":[{"type":"sock","name":"a"}]}"#, "unknown type"),
            (r#"{"version":1,"entries":[{"name":"a"}]}"#, "missing type"),
            (r#"{"version":1,"entries":[{"type":"reg","name":"a","digest":"md5:x"}]}"#, "bad digest"),
            (r#"{"version":1,"entries":[{"type":"reg","name":"a","modtime":"yesterday"}]}"#, "bad time"),
            (r#"{"version":1,"entries":[{"type":"reg","name":"a","xattrs":{"k":"!!"}}]}"#, "bad base64"),
            (r#"{"version":1,"entries":[{"type":"reg","name":"a","chunkType":"holes"}]}"#, "bad chunk type"),
            (r#"{"version":1,"entries":[]} {"version":2}"#, "trailing document"),
            (r#"{"version":1,"entries":[{"type":"dir","name":"a"},{"type":"dir","name":"b"}]}"#, "too many entries"),
        ];
        for (json, why) in cases {
            assert!(Toc::from_json(json.as_bytes(), 1).is_err(), "{why} accepted");
        }
    }
}
