//! The owner's socket: `ROOT/owner.sock`, one thread per connected worker process.
//!
//! Protocol: a request is one JSON line ([`Tx`]), its answer one JSON line ([`Answer`]).
//! Every request the owner reads is answered. To stop, the owner removes the socket's name
//! (new workers find no owner and take the lock once it is free), shuts the read side of
//! every connection (a worker's later writes fail with `EPIPE`: not delivered, so it retries
//! elsewhere), answers what it had already received, and closes.
//!
//! The socket is bound and connected through `/proc/self/fd/<root fd>/owner.sock`, so the
//! store root's length never exceeds the 108 bytes of a unix socket address. It is created
//! under a temporary name, made 0600 and renamed into place (atomic); only processes of the
//! owner's user (or root) are served.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::Owner;
use super::wire::{Answer, Tx, WireError};
use crate::StoreError;
use crate::error::IoContext;

/// Longest request line accepted (a publish of many layers stays far below).
const MAX_REQUEST: u64 = 64 << 20;

/// `dir/name` as a short path through the open directory `dir_fd` (socket addresses are
/// limited to 108 bytes).
pub(crate) fn via_fd(dir_fd: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd()))
}

/// The connections being served: a handle to shut each down, and its thread.
type Conns = Arc<Mutex<Vec<(UnixStream, JoinHandle<()>)>>>;

/// The running socket server of an owner; stopped (gracefully) on drop.
#[derive(Debug)]
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    /// Written to on stop: wakes the accept loop at once.
    wake: UnixStream,
    socket: PathBuf,
    /// The socket file's inode, so only our own name is removed.
    ino: u64,
    accept: Option<JoinHandle<()>>,
    conns: Conns,
}

impl Server {
    pub(crate) fn start(owner: Arc<Owner>) -> Result<Server, StoreError> {
        let root = owner.paths.root().to_path_buf();
        let dir = File::open(&root).at(&root)?;
        let name = "owner.sock";
        let tmp = format!("{name}.{}", std::process::id());
        let _ = std::fs::remove_file(via_fd(&dir, &tmp));
        let listener = UnixListener::bind(via_fd(&dir, &tmp)).at(root.join(&tmp))?;
        std::fs::set_permissions(via_fd(&dir, &tmp), std::fs::Permissions::from_mode(0o600)).at(root.join(&tmp))?;
        std::fs::rename(via_fd(&dir, &tmp), via_fd(&dir, name)).at(root.join(name))?;
        let socket = root.join(name);
        let ino = std::fs::metadata(&socket).at(&socket)?.ino();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Conns = Arc::default();
        let (wake, woken) = UnixStream::pair().map_err(|e| StoreError::io(&socket, e))?;
        let accept = {
            let (stop, conns) = (Arc::clone(&stop), Arc::clone(&conns));
            std::thread::Builder::new()
                .name("strata-owner".into())
                .spawn(move || accept_loop(listener, woken, owner, stop, conns))
                .map_err(|e| StoreError::io(&socket, e))?
        };
        Ok(Server { stop, wake, socket, ino, accept: Some(accept), conns })
    }
}

fn accept_loop(listener: UnixListener, woken: UnixStream, owner: Arc<Owner>, stop: Arc<AtomicBool>, conns: Conns) {
    let me = nix::unistd::geteuid();
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        // The listener, and the wake-up socket the stopping owner writes to.
        let mut fds = [
            nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&listener), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&woken), nix::poll::PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(0) | Err(_) => continue,
            Ok(_) => {}
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => continue,
        };
        if conn.set_nonblocking(false).is_err() {
            continue;
        }
        // Same user or root only (the socket is 0600 in a 0700 directory anyway).
        let peer = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials);
        if !peer.is_ok_and(|c| c.uid() == me.as_raw() || c.uid() == 0) {
            continue;
        }
        let Ok(handle) = conn.try_clone() else { continue };
        let owner = Arc::clone(&owner);
        let Ok(t) = std::thread::Builder::new().name("strata-owner-conn".into()).spawn(move || serve(conn, &owner))
        else {
            continue;
        };
        let mut list = conns.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, t)| !t.is_finished());
        list.push((handle, t));
    }
}

/// Answers the requests of one worker until it hangs up (or the owner stops).
fn serve(conn: UnixStream, owner: &Owner) {
    let Ok(write_half) = conn.try_clone() else { return };
    let mut out = std::io::BufWriter::new(write_half);
    let mut lines = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut lines, MAX_REQUEST).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            return; // cut off (the worker died mid-write) or oversized
        }
        let answer = match serde_json::from_slice::<Tx>(&line) {
            Ok(tx) => match owner.apply(tx) {
                Ok(ok) => Answer::Ok(ok),
                Err(e) => Answer::Err(WireError::from(&e)),
            },
            Err(e) => Answer::Err(WireError::Other(format!("the store's owner cannot read a request: {e}"))),
        };
        let mut bytes = serde_json::to_vec(&answer).expect("answers serialize");
        bytes.push(b'\n');
        if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Our name only: a later owner may have bound its own socket there meanwhile.
        if std::fs::metadata(&self.socket).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.socket);
        }
        let _ = (&self.wake).write_all(b"x");
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for (c, _) in &conns {
            let _ = c.shutdown(Shutdown::Read);
        }
        for (_, t) in conns {
            let _ = t.join();
        }
    }
}
