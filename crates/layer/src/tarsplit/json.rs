//! The JSON of one tar-split record, byte for byte as Go's `encoding/json` writes
//! vbatts/tar-split's `storage.Entry` (field order type, name, name_raw, size, payload,
//! position; `omitempty` on name, name_raw and size; `[]byte` as padded standard base64,
//! `nil` as `null`; HTML-safe string escaping), and its lenient decoding.

use base64::Engine as _;

use super::Record;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Appends the record's JSON line (with the trailing newline).
pub(super) fn encode(record: &Record, position: u64, out: &mut Vec<u8>) {
    match record {
        Record::Segment(bytes) => {
            out.extend_from_slice(b"{\"type\":2,\"payload\":\"");
            out.extend_from_slice(B64.encode(bytes).as_bytes());
            out.extend_from_slice(b"\",");
        }
        Record::File { name, size, crc64 } => {
            out.extend_from_slice(b"{\"type\":1,");
            match std::str::from_utf8(name) {
                Ok("") => {}
                Ok(s) => {
                    out.extend_from_slice(b"\"name\":");
                    go_string(s, out);
                    out.push(b',');
                }
                Err(_) => {
                    out.extend_from_slice(b"\"name_raw\":\"");
                    out.extend_from_slice(B64.encode(name).as_bytes());
                    out.extend_from_slice(b"\",");
                }
            }
            if *size != 0 {
                out.extend_from_slice(format!("\"size\":{size},").as_bytes());
            }
            match crc64 {
                Some(c) => {
                    out.extend_from_slice(b"\"payload\":\"");
                    out.extend_from_slice(B64.encode(c.to_be_bytes()).as_bytes());
                    out.extend_from_slice(b"\",");
                }
                None => out.extend_from_slice(b"\"payload\":null,"),
            }
        }
    }
    out.extend_from_slice(format!("\"position\":{position}}}\n").as_bytes());
}

/// A JSON string as Go escapes it with HTML escaping on (the `json.Encoder` default).
fn go_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[derive(serde::Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    payload: Option<String>,
}

/// Decodes one JSON record; the error is a reason for the caller to wrap.
pub(super) fn decode(line: &[u8]) -> Result<Record, String> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| format!("not a tar-split record: {e}"))?;
    let payload = match &raw.payload {
        Some(p) => Some(B64.decode(p).map_err(|e| format!("payload is not base64: {e}"))?),
        None => None,
    };
    match raw.kind {
        1 => {
            let name = match raw.name_raw.as_deref() {
                Some(r) if !r.is_empty() => B64.decode(r).map_err(|e| format!("name_raw is not base64: {e}"))?,
                _ => raw.name.unwrap_or_default().into_bytes(),
            };
            let size = raw.size.unwrap_or(0);
            let size = u64::try_from(size).map_err(|_| format!("file size {size} is negative"))?;
            let crc64 = match (size, payload) {
                (0, _) => None,
                (_, Some(p)) if p.len() == 8 => Some(u64::from_be_bytes(p.try_into().expect("8 bytes"))),
                (_, p) => {
                    return Err(format!(
                        "file {:?} of {size} bytes has a {}-byte checksum, not 8",
                        String::from_utf8_lossy(&name),
                        p.map_or(0, |p| p.len())
                    ));
                }
            };
            Ok(Record::File { name, size, crc64 })
        }
        2 => payload.map(Record::Segment).ok_or_else(|| "segment without payload".to_owned()),
        t => Err(format!("unknown record type {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go() {
        let mut out = Vec::new();
        encode(&Record::Segment(b"ab".to_vec()), 0, &mut out);
        encode(&Record::File { name: b"a<b>&\"c\"\n".to_vec(), size: 0, crc64: None }, 1, &mut out);
        encode(&Record::File { name: b"f".to_vec(), size: 3, crc64: Some(0x0102030405060708) }, 2, &mut out);
        encode(&Record::File { name: b"\xff".to_vec(), size: 0, crc64: None }, 3, &mut out);
        let text = String::from_utf8(out).unwrap();
        let expected = concat!(
            "{\"type\":2,\"payload\":\"YWI=\",\"position\":0}\n",
            "{\"type\":1,\"name\":\"a\\u003cb\\u003e\\u0026\\\"c\\\"\\n\",\"payload\":null,\"position\":1}\n",
            "{\"type\":1,\"name\":\"f\",\"size\":3,\"payload\":\"AQIDBAUGBwg=\",\"position\":2}\n",
            "{\"type\":1,\"name_raw\":\"/w==\",\"payload\":null,\"position\":3}\n",
        );
        assert_eq!(text, expected);
        let back: Vec<Record> = text.lines().map(|l| decode(l.as_bytes()).unwrap()).collect();
        assert_eq!(back[1], Record::File { name: b"a<b>&\"c\"\n".to_vec(), size: 0, crc64: None });
        assert_eq!(back[2], Record::File { name: b"f".to_vec(), size: 3, crc64: Some(0x0102030405060708) });
        assert_eq!(back[3], Record::File { name: b"\xff".to_vec(), size: 0, crc64: None });
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(decode(b"{\"type\":3,\"payload\":null,\"position\":0}").is_err());
        assert!(decode(b"{\"type\":2,\"payload\":null,\"position\":0}").is_err());
        assert!(decode(b"{\"type\":1,\"name\":\"x\",\"size\":-1,\"payload\":null}").is_err());
        assert!(decode(b"{\"type\":1,\"name\":\"x\",\"size\":5,\"payload\":\"AQI=\"}").is_err());
        assert!(decode(b"{\"type\":2,\"payload\":\"!!\"}").is_err());
        assert!(decode(b"not json").is_err());
    }
}
