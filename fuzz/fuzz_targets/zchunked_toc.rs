//! TOC JSON: parsing never panics; whatever parses serializes back to an equal TOC
//! (when its times are expressible), and structural validation never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_zstd_chunked::toc::Toc;
use strata_zstd_chunked::toc_check::check_entries;

fuzz_target!(|data: &[u8]| {
    let Ok(toc) = Toc::from_json(data, 4096) else { return };
    if let Ok(json) = toc.to_json() {
        let again = Toc::from_json(&json, 4096).expect("strata's own TOC JSON parses");
        assert_eq!(again, toc, "TOC changed across a JSON round trip");
    }
    let end = data.len() as u64 * 16;
    if let Ok(files) = check_entries(toc.entries, end) {
        for f in files {
            let mut next = 0;
            for c in &f.chunks {
                assert_eq!(c.file_offset, next);
                assert!(c.len > 0 && c.blob_range.start < c.blob_range.end && c.blob_range.end <= end);
                next += c.len;
            }
            assert!(f.chunks.is_empty() || next == f.meta.size);
        }
    }
});
