//! The store's per-file index records (`strata_store::records::FileRecord`) from hostile
//! bytes, as a corrupted index would hand them over.
//!
//! The module is compiled here from its source file (`#[path]`): it is pure (strata-types
//! and serde), but the store crate links RocksDB, which would add a 15-minute C++ build to
//! every fuzz build.
//!
//! Oracles: `decode` never panics; a decoded record encodes to bytes that decode to the
//! same record, and that encoding is stable; every strict prefix of a valid encoding is
//! rejected (records are stored without a length, so truncation must be detected).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/store/src/records.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use records::FileRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = FileRecord::decode(data) else { return };
    let enc = r.encode();
    let again = FileRecord::decode(&enc).expect("an encoded record decodes");
    assert_eq!(again, r, "record changed across encode and decode");
    assert_eq!(again.encode(), enc, "encoding is not stable");
    for cut in 0..enc.len() {
        assert!(FileRecord::decode(&enc[..cut]).is_err(), "a record truncated to {cut} bytes was accepted");
    }
});
