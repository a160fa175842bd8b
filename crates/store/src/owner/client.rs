//! A worker's connection to the store's owner.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::server::via_fd;
use super::wire::{Answer, Tx, TxOk};
use crate::StoreError;

/// Why a transaction did not complete over the socket.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The request never reached an owner (no owner, or it was stopping): it was not
    /// applied, and can be sent again (to the next owner).
    NotDelivered,
    /// The request was sent and the owner went away before answering (it was killed): the
    /// transaction may or may not have been applied.
    Lost(io::Error),
}

/// A connection to the owner's socket.
#[derive(Debug)]
pub(crate) struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    /// Connects to the owner of the store at `root`; an error when none serves it.
    pub(crate) fn connect(root: &Path) -> io::Result<Connection> {
        let dir = File::open(root)?;
        let stream = UnixStream::connect(via_fd(&dir, "owner.sock"))?;
        let writer = stream.try_clone()?;
        Ok(Connection { reader: BufReader::new(stream), writer })
    }

    /// Runs `tx` in the owner.
    pub(crate) fn call(&mut self, tx: &Tx) -> Result<Result<TxOk, StoreError>, CallError> {
        let mut line = serde_json::to_vec(tx).expect("transactions serialize");
        line.push(b'\n');
        // A write fails (EPIPE) once the owner shut its read side: not delivered.
        self.writer.write_all(&line).and_then(|()| self.writer.flush()).map_err(|_| CallError::NotDelivered)?;
        let mut answer = Vec::new();
        match self.reader.read_until(b'\n', &mut answer) {
            Ok(n) if n > 0 && answer.last() == Some(&b'\n') => {}
            Ok(_) => return Err(CallError::Lost(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))),
            Err(e) => return Err(CallError::Lost(e)),
        }
        let answer: Answer = serde_json::from_slice(&answer)
            .map_err(|e| CallError::Lost(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        Ok(match answer {
            Answer::Ok(ok) => Ok(ok),
            Answer::Err(e) => Err(e.into()),
        })
    }
}
