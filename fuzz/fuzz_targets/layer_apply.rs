//! Extraction of hostile layers into a sandbox (see `strata_fuzz::sandbox`: a private tmpfs
//! when run as root). First byte: bit 0 = overlay whiteout mode (else OCI, onto a small
//! lower tree with symlinks that point out of the root), bit 1 = raw tar (else a
//! [`Spec`]), bit 2 = reject devices, bit 3 = repair checksums of a raw tar.
//!
//! Oracles: nothing outside the extraction root changes (a sentinel directory next to it,
//! reachable through `lnk -> ../sentinel` and an absolute symlink, is compared before and
//! after, metadata, link counts and xattrs included); errors are errors, never panics; a
//! successful extraction consumed exactly the whole stream.
#![no_main]

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_fuzz::checksum::fix_checksums;
use strata_fuzz::input::Bytes;
use strata_fuzz::sandbox::Sandbox;
use strata_fuzz::tarspec::Spec;
use strata_layer::apply::{ApplyOptions, CopyContent, DevicePolicy, WhiteoutMode, apply};
use strata_layer::tarsplit::DiffIdOut;

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// What the OCI-mode layer lands on: directories, files, and symlinks leading out.
fn lower(sb: &Sandbox) {
    let r = &sb.root;
    for d in ["a", "dir", "etc", "a/b"] {
        fs::create_dir(r.join(d)).unwrap();
    }
    for f in ["f", "a/f", "dir/f", "etc/passwd"] {
        fs::write(r.join(f), b"lower").unwrap();
    }
    symlink("../sentinel", r.join("lnk")).unwrap();
    symlink(sb.sentinel(), r.join("abs")).unwrap();
    symlink("..", r.join("up")).unwrap();
    symlink("../sentinel/file", r.join("dir/c")).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let sb = SANDBOX.get_or_init(Sandbox::new);
    let mut tar = if flags & 2 != 0 { rest.to_vec() } else { Spec::from_bytes(&mut Bytes(rest)).to_tar() };
    if flags & 10 == 10 {
        fix_checksums(&mut tar, 32);
    }
    let mode = if flags & 1 != 0 { WhiteoutMode::Overlay } else { WhiteoutMode::Oci };
    let mut opts = ApplyOptions::new(mode);
    if flags & 4 != 0 {
        opts.devices = DevicePolicy::Reject;
    }
    sb.reset();
    if mode == WhiteoutMode::Oci {
        lower(sb);
    }
    let mut tap = DiffIdOut::new();
    let result = apply(&sb.root, &tar[..], &opts, &mut CopyContent, Some(&mut tap), &mut |_| Ok(()));
    sb.check();
    if let Ok(stats) = result {
        assert_eq!(stats.stream_bytes, tar.len() as u64, "an accepted layer was not consumed to its end");
        assert_eq!(tap.len(), tar.len() as u64, "the tap did not receive the whole stream");
    }
});
