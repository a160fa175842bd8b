//! Unit tests of the header parser on hand-built blocks.

use super::*;
use strata_types::{EntryKind, Timestamp};

/// A ustar header block with the given name, typeflag and size; checksum set.
fn block(name: &[u8], typeflag: u8, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::new(typeflag));
    h.set_cksum();
    *h.as_bytes()
}

fn feed_all(p: &mut HeaderParser, mut bytes: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (n, parsed) = p.feed(bytes)?;
        bytes = &bytes[n..];
        if let Some(parsed) = parsed {
            if let Parsed::Header(h) = &parsed {
                p.payload(h.entry.size)?;
            }
            out.push(parsed);
        }
    }
    Ok(out)
}

#[test]
fn parses_a_file_and_the_end_marker_fed_byte_by_byte() {
    let mut stream = block(b"./etc/hosts", b'0', 3).to_vec();
    stream.extend_from_slice(&[b'x'; 3]); // payload: not fed to the parser
    stream.extend_from_slice(&[0; 509]);
    stream.extend_from_slice(&[0; 1024]);
    let mut p = HeaderParser::default();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < stream.len() {
        if p.payload_remaining() > 0 {
            let n = p.payload_remaining();
            p.payload(n).unwrap();
            i += n as usize;
            continue;
        }
        let (n, parsed) = p.feed(&stream[i..i + 1]).unwrap();
        i += n;
        out.extend(parsed);
    }
    assert_eq!(out.len(), 2);
    let Parsed::Header(h) = &out[0] else { panic!("expected a header") };
    assert_eq!(h.raw_name, b"./etc/hosts");
    assert_eq!(h.entry.path.as_bytes(), b"etc/hosts");
    assert_eq!((h.entry.kind, h.entry.size, h.entry.mode), (EntryKind::File, 3, 0o644));
    assert_eq!(h.entry.mtime, Timestamp::new(1_700_000_000, 0));
    assert_eq!(out[1], Parsed::End);
    assert!(p.at_end());
}

#[test]
fn bad_checksum_names_the_entry() {
    let mut b = block(b"victim", b'0', 0);
    b[0] = b'V';
    let err = HeaderParser::default().feed(&b).unwrap_err();
    assert!(matches!(err, ParseError::BadChecksum { offset: 0, ref name, .. } if name == "Victim"), "{err}");
}

#[test]
fn pax_overrides_name_size_and_xattrs() {
    let records = &[
        fields::pax_record("path", b"a/very/long/name/here"),
        fields::pax_record("size", b"70000000000"),
        fields::pax_record("mtime", b"12.000000500"),
    ]
    .concat();
    let mut stream = block(b"PaxHeaders/x", b'x', records.len() as u64).to_vec();
    stream.extend_from_slice(records);
    stream.resize(1024, 0);
    stream.extend_from_slice(&block(b"short", b'0', 5));
    let out = feed_all(&mut HeaderParser::default(), &stream).unwrap();
    let Parsed::Header(h) = &out[0] else { panic!() };
    assert_eq!(h.raw_name, b"a/very/long/name/here");
    assert_eq!(h.entry.size, 70_000_000_000);
    assert_eq!(h.entry.mtime, Timestamp::new(12, 500));
    assert_eq!(h.offset, 0);
}

#[test]
fn hostile_headers_are_rejected_with_their_reason() {
    let mut p = HeaderParser::new(Limits { max_extension: 1000 });
    let err = p.feed(&block(b"PaxHeaders/x", b'x', 1001)).unwrap_err();
    assert!(matches!(err, ParseError::ExtensionTooLarge { size: 1001, limit: 1000, .. }), "{err}");

    let err = HeaderParser::default().feed(&block(b"../../etc/passwd", b'0', 0)).unwrap_err();
    assert!(matches!(err, ParseError::BadName { .. }), "{err}");
    let err = HeaderParser::default().feed(&block(b"sparse", b'S', 0)).unwrap_err();
    assert!(matches!(err, ParseError::Sparse { .. }), "{err}");
    let err = HeaderParser::default().feed(&block(b"vol", b'V', 0)).unwrap_err();
    assert!(matches!(err, ParseError::UnsupportedType { typeflag: 'V', .. }), "{err}");
    let err = HeaderParser::default().feed(&block(b"dir/", b'5', 10)).unwrap_err();
    assert!(matches!(err, ParseError::UnexpectedData { size: 10, .. }), "{err}");

    let mut lone = vec![0u8; 512];
    lone.extend_from_slice(&block(b"after-zero", b'0', 0));
    let err = feed_all(&mut HeaderParser::default(), &lone).unwrap_err();
    assert!(matches!(err, ParseError::LoneZeroBlock { offset: 512 }), "{err}");
}

#[test]
fn feeding_headers_while_payload_is_due_is_a_protocol_error() {
    let mut p = HeaderParser::default();
    let (_, parsed) = p.feed(&block(b"f", b'0', 10)).unwrap();
    assert!(matches!(parsed, Some(Parsed::Header(_))));
    assert!(matches!(p.feed(&[0; 10]), Err(ParseError::Protocol(_))));
    assert!(matches!(p.payload(11), Err(ParseError::Protocol(_))));
    p.payload(10).unwrap();
    let (n, parsed) = p.feed(&[0; 502]).unwrap();
    assert_eq!((n, parsed), (502, None), "padding is consumed");
}

/// `data` as an extension header's payload block(s).
fn extension(name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
    let mut v = block(name, typeflag, data.len() as u64).to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().next_multiple_of(512), 0);
    v
}

#[test]
fn global_pax_headers_are_validated_and_ignored_like_go() {
    let mut stream = extension(b"pax_global_header", b'g', &fields::pax_record("path", b"global/ignored"));
    stream.extend_from_slice(&block(b"real", b'0', 0));
    let out = feed_all(&mut HeaderParser::default(), &stream).unwrap();
    let Parsed::Header(h) = &out[0] else { panic!() };
    assert_eq!((h.raw_name.as_slice(), h.offset), (&b"real"[..], 0));

    let broken = extension(b"pax_global_header", b'g', b"5 x\n");
    assert!(matches!(feed_all(&mut HeaderParser::default(), &broken), Err(ParseError::BadPaxRecord { .. })));
}

#[test]
fn gnu_long_name_and_link() {
    let long_name = format!("{}/name", "d".repeat(150));
    let mut stream = extension(b"././@LongLink", b'L', format!("{long_name}\0").as_bytes());
    stream.extend(extension(b"././@LongLink", b'K', b"../target\0"));
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..5].copy_from_slice(b"trunc");
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_cksum();
    stream.extend_from_slice(h.as_bytes());
    let out = feed_all(&mut HeaderParser::default(), &stream).unwrap();
    let Parsed::Header(h) = &out[0] else { panic!() };
    assert_eq!(h.raw_name, long_name.as_bytes());
    assert_eq!(h.entry.kind, EntryKind::Symlink);
    assert_eq!(h.entry.link_target.as_deref(), Some(&b"../target"[..]));

    let mut twice = extension(b"././@LongLink", b'L', b"a\0");
    twice.extend(extension(b"././@LongLink", b'L', b"b\0"));
    let err = feed_all(&mut HeaderParser::default(), &twice).unwrap_err();
    assert!(matches!(err, ParseError::RepeatedExtension { offset: 1024, typeflag: 'L' }), "{err}");
}

#[test]
fn v7_headers_and_trailing_slash_directories() {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..4].copy_from_slice(b"dir/");
    h.set_mode(0o40755);
    h.set_cksum();
    let (_, parsed) = HeaderParser::default().feed(h.as_bytes()).unwrap();
    let Some(Parsed::Header(h)) = parsed else { panic!() };
    assert_eq!((h.entry.kind, h.entry.mode, h.entry.path.as_bytes()), (EntryKind::Dir, 0o755, &b"dir"[..]));
}

#[test]
fn owner_minus_one_is_rejected_and_minus_two_is_not() {
    for (key, field) in [("uid", "uid"), ("gid", "gid")] {
        let mut stream = extension(b"PaxHeaders/f", b'x', &fields::pax_record(key, b"4294967295"));
        stream.extend_from_slice(&block(b"f", b'0', 0));
        let err = feed_all(&mut HeaderParser::default(), &stream).unwrap_err();
        assert!(matches!(&err, ParseError::UnsetOwner { field: f, name, .. } if *f == field && name == "f"), "{err}");
    }
    let mut stream = extension(b"PaxHeaders/f", b'x', &fields::pax_record("uid", b"4294967294"));
    stream.extend_from_slice(&block(b"f", b'0', 0));
    let out = feed_all(&mut HeaderParser::default(), &stream).unwrap();
    let Parsed::Header(h) = &out[0] else { panic!() };
    assert_eq!(h.entry.uid, 4294967294);
}
