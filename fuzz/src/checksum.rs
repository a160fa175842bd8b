//! Header checksum repair for raw tar inputs.

use strata_layer::parse::{BLOCK_SIZE, HeaderParser, ParseError, Parsed};

/// Parses `tar` and, each time a header block has a bad checksum, rewrites its checksum
/// field and starts over (at most `max_fixes` times). Leaves everything else alone: the
/// parser still sees the fuzzer's bytes, only the checksum gate is opened.
pub fn fix_checksums(tar: &mut [u8], max_fixes: usize) {
    for _ in 0..max_fixes {
        match first_error(tar) {
            Some(ParseError::BadChecksum { offset, .. }) => {
                let start = offset as usize;
                let Some(block) = tar.get_mut(start..start + BLOCK_SIZE) else { return };
                set_checksum(block);
            }
            _ => return,
        }
    }
}

/// Writes the checksum field of a header block (`%06o\0 `, as GNU tar does).
pub fn set_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{:06o}\0 ", sum & 0o777777).as_bytes());
}

fn first_error(mut rest: &[u8]) -> Option<ParseError> {
    let mut p = HeaderParser::default();
    while !rest.is_empty() {
        let due = p.payload_remaining();
        if due > 0 {
            let n = due.min(rest.len() as u64);
            p.payload(n).ok()?;
            rest = &rest[n as usize..];
            continue;
        }
        match p.feed(rest) {
            Ok((used, parsed)) => {
                rest = &rest[used..];
                if parsed == Some(Parsed::End) {
                    return None;
                }
            }
            Err(e) => return Some(e),
        }
    }
    None
}
