//! Sinks that write a layer tar stream somewhere.
//!
//! - [`FileTarOut`]: into a `File`. When the file is a regular file, payloads move with
//!   `copy_file_range` at explicit offsets: the kernel copies without a round trip through
//!   user space, and on XFS/btrfs, when source and destination offsets are both 4096-aligned
//!   (the differ's writer aligns file data so), it shares the extents (a reflink) instead of
//!   copying. Where copy_file_range cannot work (the output is a pipe or a terminal, the files
//!   are on different filesystems, or the filesystem refuses: EXDEV, EINVAL, ENOSYS,
//!   EOPNOTSUPP) it falls back to read/write.
//! - [`WriteTarOut`]: into any `Write` (a compressor, a hasher, a socket), reading payloads.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::TarOut;

/// Writes the stream to a `File`, moving payloads with copy_file_range where possible.
#[derive(Debug)]
pub struct FileTarOut {
    file: File,
    /// Offset of the next byte; `None` when the output is not seekable (pipe, terminal).
    pos: Option<u64>,
    written: u64,
    /// Cleared after copy_file_range failed in a way that will not change for this output.
    try_copy_range: bool,
    /// Payload bytes moved by copy_file_range (shared or copied in the kernel).
    pub bytes_copy_range: u64,
    /// Payload bytes moved by read/write.
    pub bytes_read_write: u64,
}

impl FileTarOut {
    /// Writes at the file's current offset (a regular file) or sequentially (anything else,
    /// and files opened with `O_APPEND`, where positioned writes would append anyway).
    pub fn new(mut file: File) -> io::Result<FileTarOut> {
        let md = file.metadata()?;
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
        let append = nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_APPEND);
        let pos = if md.is_file() && !append { Some(io::Seek::stream_position(&mut file)?) } else { None };
        Ok(FileTarOut {
            file,
            pos,
            written: 0,
            try_copy_range: pos.is_some(),
            bytes_copy_range: 0,
            bytes_read_write: 0,
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flushes nothing (writes are unbuffered) and returns the file, its offset at the end.
    pub fn into_inner(mut self) -> io::Result<File> {
        if let Some(pos) = self.pos {
            io::Seek::seek(&mut self.file, io::SeekFrom::Start(pos))?;
        }
        Ok(self.file)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.pos {
            Some(pos) => {
                self.file.write_all_at(bytes, *pos)?;
                *pos += bytes.len() as u64;
            }
            None => self.file.write_all(bytes)?,
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Moves up to `len` bytes with copy_file_range; returns how many moved before it had to
    /// stop (0 means: use read/write for the rest).
    fn copy_range(&mut self, src: &File, offset: u64, len: u64) -> io::Result<u64> {
        let Some(pos) = self.pos.as_mut() else { return Ok(0) };
        let mut done = 0u64;
        while done < len && self.try_copy_range {
            let mut off_in = (offset + done) as i64;
            let mut off_out = *pos as i64;
            let chunk = (len - done).min(1 << 30) as usize;
            match nix::fcntl::copy_file_range(src, Some(&mut off_in), &self.file, Some(&mut off_out), chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "file shrank while being written to the layer: wanted {len} bytes at {offset}, got {done}"
                        ),
                    ));
                }
                Ok(n) => {
                    done += n as u64;
                    *pos += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(
                    Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EBADF | Errno::ESPIPE,
                ) => {
                    self.try_copy_range = false;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.written += done;
        self.bytes_copy_range += done;
        Ok(done)
    }
}

impl TarOut for FileTarOut {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_bytes(bytes)
    }

    fn file_begin(&mut self, _name: &[u8], _size: u64) -> io::Result<()> {
        Ok(())
    }

    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes_read_write += bytes.len() as u64;
        self.write_bytes(bytes)
    }

    fn file_from(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let moved = self.copy_range(file, offset, len)?;
        if moved == len {
            return Ok(());
        }
        let (offset, len) = (offset + moved, len - moved);
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = file.read_at(&mut buf[..want], offset + done)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while being written to the layer: wanted {len} bytes at {offset}, got {done}"),
                ));
            }
            self.file_data(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the stream to any `Write`; payloads given as files are read.
#[derive(Debug)]
pub struct WriteTarOut<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> WriteTarOut<W> {
    pub fn new(inner: W) -> Self {
        WriteTarOut { inner, written: 0 }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> TarOut for WriteTarOut<W> {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn file_begin(&mut self, _name: &[u8], _size: u64) -> io::Result<()> {
        Ok(())
    }

    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.segment(bytes)
    }

    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-out-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn stream_into(out: &mut dyn TarOut, src: &File, n: u64) {
        out.segment(b"HEADER").unwrap();
        out.file_begin(b"f", n).unwrap();
        out.file_from(src, 3, n - 3).unwrap();
        out.file_data(b"xyz").unwrap();
        out.file_end().unwrap();
        out.segment(b"TRAILER").unwrap();
    }

    #[test]
    fn file_and_pipe_and_writer_sinks_produce_the_same_bytes() {
        let dir = scratch("same");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.join("src"), &data).unwrap();
        let src = File::open(dir.join("src")).unwrap();
        let n = data.len() as u64;
        let mut expected = b"HEADER".to_vec();
        expected.extend_from_slice(&data[3..]);
        expected.extend_from_slice(b"xyz");
        expected.extend_from_slice(b"TRAILER");

        // A regular file, starting at a non-zero offset.
        let mut f = File::options().read(true).write(true).create(true).truncate(true).open(dir.join("out")).unwrap();
        f.write_all(b"pre").unwrap();
        let mut out = FileTarOut::new(f).unwrap();
        stream_into(&mut out, &src, n);
        assert_eq!(out.bytes_written(), expected.len() as u64);
        assert_eq!(out.bytes_copy_range, n - 3, "same filesystem: copy_file_range moves the payload");
        let mut f = out.into_inner().unwrap();
        assert_eq!(f.stream_position().unwrap(), 3 + expected.len() as u64);
        let got = std::fs::read(dir.join("out")).unwrap();
        assert_eq!(&got[3..], &expected[..]);

        // A pipe: read/write fallback.
        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            rx.read_to_end(&mut v).unwrap();
            v
        });
        let mut out = FileTarOut::new(File::from(std::os::fd::OwnedFd::from(tx))).unwrap();
        stream_into(&mut out, &src, n);
        assert_eq!(out.bytes_copy_range, 0);
        drop(out);
        assert_eq!(reader.join().unwrap(), expected);

        let mut w = WriteTarOut::new(Vec::new());
        stream_into(&mut w, &src, n);
        assert_eq!(w.into_inner().unwrap(), expected);

        // A file opened for appending: sequential writes after what is there.
        let appending = File::options().append(true).open(dir.join("out")).unwrap();
        let mut out = FileTarOut::new(appending).unwrap();
        stream_into(&mut out, &src, n);
        let got = std::fs::read(dir.join("out")).unwrap();
        assert_eq!(&got[3 + expected.len()..], &expected[..]);
        let _ = f.flush();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_source_shorter_than_promised_is_an_error() {
        let dir = scratch("short");
        std::fs::write(dir.join("src"), b"abc").unwrap();
        let src = File::open(dir.join("src")).unwrap();
        let mut out = FileTarOut::new(File::create(dir.join("out")).unwrap()).unwrap();
        let err = out.file_from(&src, 0, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut w = WriteTarOut::new(Vec::new());
        assert_eq!(w.file_from(&src, 0, 10).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
