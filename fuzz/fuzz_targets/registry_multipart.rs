//! The registry client's `multipart/byteranges` and `Content-Range` parsers (through the
//! `strata_registry::fuzzing` hooks). Input: a content type line, `\n`, the body.
//!
//! Oracles: no panics, no hang, bounded memory (parts are refused above `max_part`
//! before they are read); every part's bytes have exactly the length of its range; a
//! parsed `Content-Range` is a non-empty range inside the complete length and spells back
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_registry::fuzzing::{boundary, content_range, multipart_parts};

fn check_content_range(value: &str) {
    let Ok((range, complete)) = content_range(value) else { return };
    if let Some(r) = &range {
        assert!(r.start < r.end, "empty range from {value:?}");
        assert!(complete.is_none_or(|c| r.end <= c), "range past the complete length in {value:?}");
    }
    let spelled = match (&range, complete) {
        (Some(r), Some(c)) => format!("bytes {}-{}/{c}", r.start, r.end - 1),
        (Some(r), None) => format!("bytes {}-{}/*", r.start, r.end - 1),
        (None, Some(c)) => format!("bytes */{c}"),
        (None, None) => "bytes */*".to_owned(),
    };
    assert_eq!(content_range(&spelled), Ok((range, complete)), "{value:?} spelled as {spelled:?}");
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    check_content_range(&head);
    let b = boundary(&head).unwrap_or_else(|| "B".to_owned());
    let max_part = 4096;
    if let Ok(parts) = multipart_parts(body, &b, max_part) {
        for (range, bytes) in &parts {
            assert_eq!(range.end - range.start, bytes.len() as u64);
            assert!(bytes.len() as u64 <= max_part);
        }
        assert!(parts.len() <= body.len(), "more parts than bytes");
    }
});
