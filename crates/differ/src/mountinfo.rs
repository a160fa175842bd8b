//! Finding an overlay mount's layers in `/proc/self/mountinfo`.
//!
//! The kernel prints each mount as `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] -
//! FSTYPE SOURCE SUPEROPTS`. Fields escape space, tab, newline and backslash as octal
//! (`\040`, `\011`, `\012`, `\134`); in the super options overlayfs also escapes `,` and `=`.
//! After octal unescaping, a legacy `lowerdir=` value is a `:`-separated list (`::` before
//! data-only layers) in which `\` escapes the next character (`\:` and `\,` in paths);
//! `lowerdir+=`/`datadir+=` (Linux 6.8+) name one layer each, with `:` shown as `\072`.

use std::path::{Path, PathBuf};

use crate::DiffError;

/// The directories of an overlay mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayDirs {
    pub upper: PathBuf,
    /// Lower layers visible in the merged namespace, top-most first.
    pub lowers: Vec<PathBuf>,
    /// Data-only lower layers (`::` or `datadir+=`): only metacopy files read from them.
    pub data_lowers: Vec<PathBuf>,
    pub work: Option<PathBuf>,
    /// The remaining super options (e.g. `redirect_dir=on`, `index=on`, `userxattr`).
    pub options: Vec<String>,
}

/// Decodes the kernel's octal escapes (`\NNN`); other bytes are kept as they are.
pub fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (s[i + 1] - b'0') as u32 * 64 + (s[i + 2] - b'0') as u32 * 8 + (s[i + 3] - b'0') as u32;
            if v <= 255 {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn path_of(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Splits a legacy `lowerdir=` value (already octal-unescaped) into layers; a `\` escapes the
/// next byte. Returns `(lowers, data_lowers)`: layers after a `::` are data-only.
pub fn split_lowerdir(value: &[u8]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut lowers = Vec::new();
    let mut data = Vec::new();
    let mut cur = Vec::new();
    let mut in_data = false;
    let mut next_is_data = false;
    let mut i = 0;
    let mut push = |cur: &mut Vec<u8>, in_data: bool| {
        if !cur.is_empty() {
            let p = path_of(std::mem::take(cur));
            if in_data { data.push(p) } else { lowers.push(p) }
        }
    };
    while i < value.len() {
        match value[i] {
            b'\\' if i + 1 < value.len() => {
                cur.push(value[i + 1]);
                i += 2;
                continue;
            }
            b':' => {
                push(&mut cur, in_data);
                if value.get(i + 1) == Some(&b':') {
                    next_is_data = true;
                    i += 1;
                }
                in_data |= next_is_data;
            }
            c => cur.push(c),
        }
        i += 1;
    }
    push(&mut cur, in_data);
    (lowers, data)
}

/// Parses the super options of an overlay mount (as printed in mountinfo).
pub fn parse_overlay_options(superopts: &str) -> Result<OverlayDirs, DiffError> {
    let bad = |reason: &str| DiffError::MountInfo { reason: format!("{reason} in overlay options {superopts:?}") };
    let mut dirs = OverlayDirs {
        upper: PathBuf::new(),
        lowers: Vec::new(),
        data_lowers: Vec::new(),
        work: None,
        options: Vec::new(),
    };
    let mut has_upper = false;
    for opt in superopts.split(',') {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(unescape_octal(v.as_bytes()))),
            None => (opt, None),
        };
        match (key, value) {
            ("lowerdir", Some(v)) => {
                let (l, d) = split_lowerdir(&v);
                dirs.lowers.extend(l);
                dirs.data_lowers.extend(d);
            }
            ("lowerdir+", Some(v)) => dirs.lowers.push(path_of(v)),
            ("datadir+", Some(v)) => dirs.data_lowers.push(path_of(v)),
            ("upperdir", Some(v)) => {
                dirs.upper = path_of(v);
                has_upper = true;
            }
            ("workdir", Some(v)) => dirs.work = Some(path_of(v)),
            _ => dirs.options.push(opt.to_owned()),
        }
    }
    if !has_upper {
        return Err(bad("no upperdir (a read-only overlay has nothing to diff)"));
    }
    if dirs.lowers.is_empty() {
        return Err(bad("no lowerdir"));
    }
    Ok(dirs)
}

/// Finds the overlay mounted at `mountpoint` in a mountinfo text (the last mount there wins,
/// as it is the one visible) and returns its directories.
pub fn find_overlay(mountinfo: &str, mountpoint: &Path) -> Result<OverlayDirs, DiffError> {
    use std::os::unix::ffi::OsStrExt;
    let want = mountpoint.as_os_str().as_bytes();
    let mut found: Option<(String, String)> = None;
    for (n, line) in mountinfo.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = |r: &str| DiffError::MountInfo { reason: format!("line {}: {r}: {line:?}", n + 1) };
        let sep = fields.iter().position(|f| *f == "-").ok_or_else(|| bad("no '-' separator"))?;
        if sep < 6 || fields.len() < sep + 4 {
            return Err(bad("too few fields"));
        }
        if unescape_octal(fields[4].as_bytes()) == want {
            found = Some((fields[sep + 1].to_owned(), fields[sep + 3].to_owned()));
        }
    }
    match found {
        None => Err(DiffError::NotAMountpoint { path: mountpoint.to_path_buf() }),
        Some((fstype, _)) if fstype != "overlay" => {
            Err(DiffError::NotOverlay { path: mountpoint.to_path_buf(), fstype })
        }
        Some((_, opts)) => parse_overlay_options(&opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
46 27 0:39 / /tmp/mi/m\\040x rw,relatime - overlay overlay rw,lowerdir=/tmp/mi/l\\040a\\134:b\\134\\054c:/tmp/mi/l2,upperdir=/tmp/mi/u,workdir=/tmp/mi/w,uuid=on
47 27 0:40 / /run/c1 rw shared:5 master:2 - overlay overlay rw,lowerdir+=/l/a\\072b,lowerdir+=/l/two,datadir+=/d/x,upperdir=/u\\054p,workdir=/w,redirect_dir=on,userxattr
48 27 0:41 / /run/c2 rw - overlay overlay ro,lowerdir=/a:/b::/data1::/data2,upperdir=/u,workdir=/w
49 27 0:42 / /srv rw - xfs /dev/loop0 rw
";

    #[test]
    fn legacy_lowerdir_with_escaped_colon_comma_and_space() {
        let d = find_overlay(SAMPLE, Path::new("/tmp/mi/m x")).unwrap();
        assert_eq!(d.lowers, [PathBuf::from("/tmp/mi/l a:b,c"), PathBuf::from("/tmp/mi/l2")]);
        assert_eq!(d.upper, PathBuf::from("/tmp/mi/u"));
        assert_eq!(d.work, Some(PathBuf::from("/tmp/mi/w")));
        assert_eq!(d.options, ["rw", "uuid=on"]);
    }

    #[test]
    fn new_api_lowerdir_plus_and_datadir_plus() {
        let d = find_overlay(SAMPLE, Path::new("/run/c1")).unwrap();
        assert_eq!(d.lowers, [PathBuf::from("/l/a:b"), PathBuf::from("/l/two")]);
        assert_eq!(d.data_lowers, [PathBuf::from("/d/x")]);
        assert_eq!(d.upper, PathBuf::from("/u,p"));
        assert!(d.options.iter().any(|o| o == "userxattr"));
    }

    #[test]
    fn data_only_layers_after_double_colon() {
        let d = find_overlay(SAMPLE, Path::new("/run/c2")).unwrap();
        assert_eq!(d.lowers, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(d.data_lowers, [PathBuf::from("/data1"), PathBuf::from("/data2")]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(find_overlay(SAMPLE, Path::new("/srv")), Err(DiffError::NotOverlay { .. })));
        assert!(matches!(find_overlay(SAMPLE, Path::new("/nowhere")), Err(DiffError::NotAMountpoint { .. })));
        let ro = "50 27 0:43 / /ro rw - overlay overlay ro,lowerdir=/a:/b\n";
        assert!(matches!(find_overlay(ro, Path::new("/ro")), Err(DiffError::MountInfo { .. })));
        assert!(matches!(find_overlay("garbage line\n", Path::new("/")), Err(DiffError::MountInfo { .. })));
    }

    #[test]
    fn octal_unescape_keeps_non_escapes() {
        assert_eq!(unescape_octal(b"a\\040b\\134\\x\\12"), b"a b\\\\x\\12");
    }
}
