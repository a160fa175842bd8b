//! Normalized relative paths.
//!
//! Every name that comes from outside (tar headers, TOC entries, CLI arguments) becomes a
//! [`RelPath`] before it is used, so the checks against escaping a root live in one place.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a name is not acceptable as a path inside a layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelPathError {
    #[error("path {0:?} is absolute")]
    Absolute(String),
    #[error("path {0:?} contains a '..' component")]
    DotDot(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} is longer than 4096 bytes")]
    TooLong(String),
}

/// A relative path with no empty, `.` or `..` components, no leading or trailing `/`.
/// The empty path is the root directory itself.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// The root directory (empty path).
    pub const fn root() -> Self {
        RelPath(Vec::new())
    }

    /// Normalizes a name as found in a tar header or TOC: `./` prefixes, `.` components,
    /// repeated and trailing slashes are dropped. Absolute names and `..` are rejected,
    /// never silently rewritten.
    pub fn new(name: impl AsRef<[u8]>) -> Result<Self, RelPathError> {
        let name = name.as_ref();
        let show = || String::from_utf8_lossy(name).into_owned();
        if name.len() > 4096 {
            return Err(RelPathError::TooLong(show()));
        }
        if name.contains(&0) {
            return Err(RelPathError::Nul(show()));
        }
        if name.first() == Some(&b'/') {
            return Err(RelPathError::Absolute(show()));
        }
        let mut out = Vec::with_capacity(name.len());
        for comp in name.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => continue,
                b".." => return Err(RelPathError::DotDot(show())),
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        Ok(RelPath(out))
    }

    /// Builds from a `Path` relative to some root (as produced by walking a directory).
    pub fn from_path(p: &Path) -> Result<Self, RelPathError> {
        Self::new(p.as_os_str().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The path for use with `*at` syscalls relative to a root fd: `.` for the root.
    pub fn as_at_path(&self) -> &Path {
        if self.0.is_empty() { Path::new(".") } else { self.as_path() }
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// Last component; `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        })
    }

    /// Parent directory; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(self.0[..i].to_vec()),
            None => RelPath::root(),
        })
    }

    /// Every proper ancestor from the top down, excluding the root and `self`.
    pub fn ancestors(&self) -> Vec<RelPath> {
        let mut out = Vec::new();
        let mut cur = self.parent();
        while let Some(p) = cur {
            if p.is_root() {
                break;
            }
            cur = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }

    /// Appends one component. The component must not contain `/` and must not be `.`/`..`.
    pub fn join(&self, component: &[u8]) -> Result<RelPath, RelPathError> {
        let show = || String::from_utf8_lossy(component).into_owned();
        if component.contains(&b'/') || component.is_empty() || component == b"." {
            return Self::new([self.0.as_slice(), b"/", component].concat());
        }
        if component == b".." {
            return Err(RelPathError::DotDot(show()));
        }
        if component.contains(&0) {
            return Err(RelPathError::Nul(show()));
        }
        let mut v = self.0.clone();
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(component);
        Ok(RelPath(v))
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || (self.0.starts_with(&other.0) && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }

    /// Depth-first order: a directory sorts immediately before everything below it, siblings
    /// by bytes. This is the order strata writes layers in.
    pub fn cmp_tree(&self, other: &RelPath) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `Ord` is the depth-first tree order of [`RelPath::cmp_tree`].
impl Ord for RelPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_tree(other)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str(".") } else { f.write_str(&String::from_utf8_lossy(&self.0)) }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_tar_style_names() {
        assert_eq!(RelPath::new("./a//b/./c/").unwrap().as_bytes(), b"a/b/c");
        assert!(RelPath::new("./").unwrap().is_root());
        assert!(RelPath::new(".").unwrap().is_root());
    }

    #[test]
    fn rejects_escapes() {
        assert!(matches!(RelPath::new("/etc/passwd"), Err(RelPathError::Absolute(_))));
        assert!(matches!(RelPath::new("a/../../b"), Err(RelPathError::DotDot(_))));
        assert!(matches!(RelPath::new(".."), Err(RelPathError::DotDot(_))));
        assert!(matches!(RelPath::new(b"a\0b"), Err(RelPathError::Nul(_))));
        assert!(RelPath::root().join(b"..").is_err());
        assert!(RelPath::root().join(b"a/../..").is_err());
    }

    #[test]
    fn parents_names_and_ancestors() {
        let p = RelPath::new("a/b/c").unwrap();
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(p.parent().unwrap().as_bytes(), b"a/b");
        let anc: Vec<_> = p.ancestors().iter().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["a", "a/b"]);
        assert!(p.starts_with(&RelPath::new("a/b").unwrap()));
        assert!(!RelPath::new("a/bc").unwrap().starts_with(&RelPath::new("a/b").unwrap()));
    }

    #[test]
    fn tree_order_puts_subtrees_right_after_their_directory() {
        let mut v: Vec<RelPath> = ["a.b", "a/b", "a", "a/b/c", "b"].iter().map(|s| RelPath::new(s).unwrap()).collect();
        v.sort();
        let s: Vec<_> = v.iter().map(|p| p.to_string()).collect();
        assert_eq!(s, ["a", "a/b", "a/b/c", "a.b", "b"]);
    }
}
