//! Progress reporting for long operations. The CLI draws bars; library users and tests pass
//! [`NoProgress`].

/// Receives progress of long work. Implementations must be cheap: `inc` is called often.
pub trait Progress: Sync {
    /// A new phase begins; `total` in bytes when known.
    fn start(&self, what: &str, total: Option<u64>);
    fn inc(&self, bytes: u64);
    fn message(&self, msg: &str);
    fn finish(&self);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn inc(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn finish(&self) {}
}
