//! Byte ranges of a blob, many per request (`Range: bytes=a-b,c-d,...`), several requests
//! in flight. Every answer registries give is handled:
//! - 206 `multipart/byteranges`: parts are parsed as they arrive;
//! - 206 with one `Content-Range` (one range asked, or the server merged them);
//! - 200 with the whole blob (the server ignored `Range`): the wanted ranges are sliced out
//!   while streaming, keeping only the ranges in progress in memory, and reading stops after
//!   the last one; the worker that sees this also takes over every batch still queued, since
//!   more requests would only stream the blob again;
//! - 400, 416 or 431 for a request of several ranges (too many ranges, or a header too long):
//!   the batch is split in two and the client's ranges-per-request limit is lowered.
//!
//! A 206 answer is checked part by part against its request, from each part's
//! `Content-Range` before its bytes are read (see [`Answer`]): a part must lie inside the
//! span of the request, start where a requested range starts and end where one ends, hold
//! at least one requested range, and not repeat; an answer has at most one part per range
//! asked, and its parts at most the requested bytes plus [`MERGE_ALLOWANCE`] (ranges a
//! server merged, with the gaps between them). So what one answer makes the client read
//! and hold is bounded by the request, whatever sizes the server claims; a single-range
//! body longer than its `Content-Range` is an error. Requested ranges an answer left out
//! are asked for again (each answer must deliver at least one, so this ends).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufReader, Read};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Condvar, Mutex};

use strata_types::Sha256Digest;

use crate::auth::Scope;
use crate::client::{Call, Client, Response, Target, header};
use crate::error::{RegistryError, Result};
use crate::multipart::{self, Multipart, MultipartError};
use crate::range_plan::{SliceError, buffer_for, range_header, slice_stream, split_batches};

/// Bytes outside the requested ranges that the parts of one 206 answer may carry, when a
/// server merges ranges into one part across the gaps between them. RFC 9110 §14.2 lets
/// it do so for gaps "smaller than the overhead of sending multiple parts" (some 100
/// bytes); 1 MiB is far more generous, and keeps what one answer costs at the requested
/// bytes plus 1 MiB.
const MERGE_ALLOWANCE: u64 = 1 << 20;

/// What a ranged fetch did (how the server answered), for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeStats {
    pub requests: u64,
    pub multipart_responses: u64,
    pub single_range_responses: u64,
    pub whole_blob_responses: u64,
    /// Requests refused with 400/416/431 and retried as two smaller ones.
    pub refused_requests: u64,
    /// The most ranges one successful request carried.
    pub max_ranges_in_request: usize,
}

/// Ranged reads of one blob through a client: the shape the zstd:chunked reader wants.
#[derive(Clone, Debug)]
pub struct BlobRanges {
    client: Client,
    repo: String,
    digest: Sha256Digest,
}

impl BlobRanges {
    /// One range, one request.
    pub fn read_range(&mut self, range: Range<u64>) -> io::Result<Vec<u8>> {
        let mut v = self.read_ranges(std::slice::from_ref(&range)).map_err(io::Error::other)?;
        Ok(v.pop().unwrap_or_default())
    }

    /// Many ranges, batched and parallel; results in the order asked.
    pub fn read_ranges(&mut self, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        self.client.fetch_ranges(&self.repo, &self.digest, ranges)
    }
}

type Delivery = Result<(Range<u64>, Vec<u8>)>;

impl Client {
    /// A handle for ranged reads of one blob.
    pub fn blob_ranges(&self, repo: &str, digest: &Sha256Digest) -> BlobRanges {
        BlobRanges { client: self.clone(), repo: repo.to_owned(), digest: *digest }
    }

    /// Fetches `ranges` (half-open, non-empty, any order; duplicates fetched once) and
    /// returns their bytes in the order given.
    pub fn fetch_ranges(&self, repo: &str, digest: &Sha256Digest, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        let mut got: HashMap<(u64, u64), Vec<u8>> = HashMap::with_capacity(ranges.len());
        self.get_ranges(repo, digest, ranges, |r, data| {
            got.insert((r.start, r.end), data);
            Ok::<(), RegistryError>(())
        })?;
        Ok(ranges.iter().map(|r| got.get(&(r.start, r.end)).cloned().unwrap_or_default()).collect())
    }

    /// Fetches `ranges` and calls `on_range` once per distinct range, on the calling thread,
    /// in arrival order. Requests run on up to `max_parallel_requests` threads with up to
    /// the ranges-per-request limit each. An error from `on_range` stops the fetch.
    ///
    /// The bytes are what the registry sent for those offsets: callers verify them (chunk
    /// digests), since a range cannot be checked against the blob digest.
    pub fn get_ranges<E: From<RegistryError>>(
        &self,
        repo: &str,
        digest: &Sha256Digest,
        ranges: &[Range<u64>],
        mut on_range: impl FnMut(Range<u64>, Vec<u8>) -> std::result::Result<(), E>,
    ) -> std::result::Result<RangeStats, E> {
        if let Some(r) = ranges.iter().find(|r| r.start >= r.end) {
            return Err(E::from(RegistryError::InvalidRange {
                digest: *digest,
                range: r.clone(),
                reason: "it is empty".into(),
            }));
        }
        let mut wanted = ranges.to_vec();
        wanted.sort_by_key(|r| (r.start, r.end));
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(RangeStats::default());
        }
        let parallel = self.shared.options.max_parallel_requests.max(1);
        let batches = split_batches(wanted, self.max_ranges_per_request(), parallel);
        let workers = parallel.min(batches.len());
        let job = Job { client: self, repo, digest, queue: WorkQueue::new(batches), stats: Mutex::default() };
        let (tx, rx) = sync_channel::<Delivery>(workers * 4);
        let mut first_error: Option<E> = None;
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                let job = &job;
                s.spawn(move || job.work(&tx));
            }
            drop(tx);
            // Keep receiving after an error so that no worker stays blocked on a full channel.
            for msg in rx {
                if first_error.is_some() {
                    continue;
                }
                let result = match msg {
                    Ok((r, data)) => on_range(r, data),
                    Err(e) => Err(E::from(e)),
                };
                if let Err(e) = result {
                    job.queue.stop();
                    first_error = Some(e);
                }
            }
        });
        match first_error {
            Some(e) => Err(e),
            None => Ok(job.stats.into_inner().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

/// Batches waiting for a worker; ends when nothing is queued and nothing is in progress
/// (a batch in progress may still put work back).
struct WorkQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    batches: VecDeque<Vec<Range<u64>>>,
    active: usize,
    stopped: bool,
}

impl WorkQueue {
    fn new(batches: Vec<Vec<Range<u64>>>) -> Self {
        WorkQueue {
            state: Mutex::new(QueueState { batches: batches.into(), active: 0, stopped: false }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self) -> Option<Vec<Range<u64>>> {
        let mut q = self.lock();
        loop {
            if q.stopped {
                return None;
            }
            if let Some(b) = q.batches.pop_front() {
                q.active += 1;
                return Some(b);
            }
            if q.active == 0 {
                return None;
            }
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self, requeue: Vec<Vec<Range<u64>>>) {
        let mut q = self.lock();
        q.active -= 1;
        for b in requeue.into_iter().rev() {
            q.batches.push_front(b);
        }
        self.changed.notify_all();
    }

    /// Takes every queued batch (for a worker that is streaming the whole blob anyway).
    fn steal_all(&self) -> Vec<Range<u64>> {
        self.lock().batches.drain(..).flatten().collect()
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }
}

struct Job<'a> {
    client: &'a Client,
    repo: &'a str,
    digest: &'a Sha256Digest,
    queue: WorkQueue,
    stats: Mutex<RangeStats>,
}

/// Where a batch's bytes go: to the caller, once per requested range.
struct Sink<'a> {
    pending: Vec<Range<u64>>,
    delivered: Vec<bool>,
    tx: &'a SyncSender<Delivery>,
    queue: &'a WorkQueue,
}

impl Sink<'_> {
    fn new<'a>(mut pending: Vec<Range<u64>>, tx: &'a SyncSender<Delivery>, queue: &'a WorkQueue) -> Sink<'a> {
        pending.sort_by_key(|r| (r.start, r.end));
        pending.dedup();
        Sink { delivered: vec![false; pending.len()], pending, tx, queue }
    }

    fn send(&self, range: Range<u64>, data: Vec<u8>) -> std::result::Result<(), Stopped> {
        if self.queue.stopped() {
            return Err(Stopped);
        }
        self.tx.send(Ok((range, data))).map_err(|_| Stopped)
    }

    /// Delivers every pending range inside `part` (checked by [`Answer`]); returns how many
    /// were new (a range nested in another one arrives with the bigger range's part, before
    /// its own).
    fn part(&mut self, part: &Range<u64>, data: &[u8]) -> std::result::Result<usize, Stopped> {
        let first = self.pending.partition_point(|r| r.start < part.start);
        let mut new = 0;
        for i in first..self.pending.len() {
            let r = &self.pending[i];
            if r.start >= part.end {
                break;
            }
            if r.end > part.end || self.delivered[i] {
                continue;
            }
            let slice = data[(r.start - part.start) as usize..(r.end - part.start) as usize].to_vec();
            self.send(r.clone(), slice)?;
            self.delivered[i] = true;
            new += 1;
        }
        Ok(new)
    }

    fn leftovers(&self) -> Vec<Range<u64>> {
        self.pending.iter().zip(&self.delivered).filter(|(_, d)| !**d).map(|(r, _)| r.clone()).collect()
    }
}

/// The consumer went away (an error elsewhere): stop quietly.
struct Stopped;

/// What the parts of one 206 answer may still be, given its request. Each part is checked
/// from its `Content-Range` before any of its bytes is read.
struct Answer {
    /// The ranges asked for, sorted by (start, end) and deduplicated.
    asked: Vec<Range<u64>>,
    /// Their ends, sorted.
    ends: Vec<u64>,
    /// From the first start to the last end.
    span: Range<u64>,
    /// Bytes in the ranges asked for.
    requested: u64,
    /// Bytes the parts may still carry.
    budget: u64,
    /// Parts received, by (start, end).
    seen: HashSet<(u64, u64)>,
}

impl Answer {
    fn new(asked: &[Range<u64>]) -> Answer {
        let asked = asked.to_vec();
        let mut ends: Vec<u64> = asked.iter().map(|r| r.end).collect();
        ends.sort_unstable();
        let span = asked.first().map_or(0, |r| r.start)..ends.last().copied().unwrap_or(0);
        let requested = asked.iter().map(|r| r.end - r.start).fold(0u64, u64::saturating_add);
        let budget = requested.saturating_add(MERGE_ALLOWANCE);
        Answer { asked, ends, span, requested, budget, seen: HashSet::new() }
    }

    /// Whether the answer may hold `part` (`what` names it in the reason: "part" or
    /// "Content-Range"); counts it against the answer's limits when it may.
    fn check(&mut self, what: &str, part: &Range<u64>) -> std::result::Result<(), String> {
        let name = format!("{what} bytes {}-{}", part.start, part.end - 1);
        if part.start < self.span.start || part.end > self.span.end {
            return Err(format!(
                "{name} lies outside what was asked (bytes {}-{})",
                self.span.start,
                self.span.end.saturating_sub(1)
            ));
        }
        let first = self.asked.partition_point(|r| r.start < part.start);
        let holds = self.asked[first..].iter().take_while(|r| r.start < part.end).any(|r| r.end <= part.end);
        if !holds {
            return Err(format!("{name} holds none of the requested ranges"));
        }
        // A server may merge ranges, never cut into one: parts begin and end with ranges.
        if self.asked.get(first).is_none_or(|r| r.start != part.start) {
            return Err(format!("{name} does not start where a requested range does"));
        }
        if self.ends.binary_search(&part.end).is_err() {
            return Err(format!("{name} does not end where a requested range does"));
        }
        if !self.seen.insert((part.start, part.end)) {
            return Err(format!("{name} was already sent in this answer"));
        }
        if self.seen.len() > self.asked.len() {
            return Err(format!("{name}: more parts than the {} ranges requested", self.asked.len()));
        }
        let len = part.end - part.start;
        if len > self.budget {
            return Err(format!(
                "{name} is larger than what was requested ({} bytes in {} ranges, plus at most \
                 {MERGE_ALLOWANCE} bytes of gaps where a server merges ranges)",
                self.requested,
                self.asked.len()
            ));
        }
        self.budget -= len;
        Ok(())
    }
}

/// Batches to queue again, or the error that ends the fetch (`None`: stopped quietly).
type Fetched = std::result::Result<Vec<Vec<Range<u64>>>, Option<RegistryError>>;

impl Job<'_> {
    fn work(&self, tx: &SyncSender<Delivery>) {
        while let Some(batch) = self.queue.next() {
            match self.fetch(batch, tx) {
                Ok(requeue) => self.queue.done(requeue),
                Err(e) => {
                    self.queue.stop();
                    self.queue.done(Vec::new());
                    if let Some(e) = e {
                        let _ = tx.send(Err(e));
                    }
                    return;
                }
            }
        }
    }

    fn invalid(&self, url: &str, reason: String) -> Option<RegistryError> {
        Some(RegistryError::InvalidResponse { url: url.to_owned(), reason: format!("blob {}: {reason}", self.digest) })
    }

    /// One request for `batch`; returns batches to queue again. `Err(None)` = stopped.
    fn fetch(&self, mut batch: Vec<Range<u64>>, tx: &SyncSender<Delivery>) -> Fetched {
        let limit = self.client.max_ranges_per_request();
        let (spec, fits) = range_header(&batch, limit);
        let mut requeue: Vec<Vec<Range<u64>>> = Vec::new();
        if fits < batch.len() {
            requeue = batch.split_off(fits).chunks(fits).map(<[_]>::to_vec).collect();
        }
        let url = self.client.url(&format!("{}/blobs/{}", self.repo, self.digest));
        let call = Call::new("GET", url.clone(), Some(Scope::pull(self.repo))).header("range", spec);
        self.stats(|s| s.requests += 1);
        let resp = self.client.send(call).map_err(Some)?;
        let mut sink = Sink::new(batch, tx, &self.queue);
        match resp.status().as_u16() {
            206 => {
                self.read_partial(&url, resp, &mut sink)?;
                self.stats(|s| s.max_ranges_in_request = s.max_ranges_in_request.max(sink.pending.len()));
                let left = sink.leftovers();
                if !left.is_empty() {
                    requeue.push(left);
                }
                Ok(requeue)
            }
            200 => {
                self.stats(|s| {
                    s.whole_blob_responses += 1;
                    s.max_ranges_in_request = s.max_ranges_in_request.max(sink.pending.len());
                });
                // Serve every range still waiting from this one stream.
                let mut all = sink.pending;
                all.extend(requeue.into_iter().flatten());
                all.extend(self.queue.steal_all());
                let sink = Sink::new(all, tx, &self.queue);
                let body = self.client.body_reader(resp);
                slice_stream(body, &sink.pending, |r, data| sink.send(r, data)).map_err(|e| match e {
                    SliceError::Io(e) => Some(self.io(e)),
                    SliceError::Short { at, range } => self.invalid(
                        &url,
                        format!("whole-blob answer ends at {at}, before range {}..{}", range.start, range.end),
                    ),
                    SliceError::Sink(Stopped) => None,
                })?;
                Ok(Vec::new())
            }
            400 | 416 | 431 if sink.pending.len() > 1 => {
                // Too many ranges (or too long a header) for this server: split in two and
                // remember the lower limit for the rest.
                self.stats(|s| s.refused_requests += 1);
                let mut first = sink.pending;
                let second = first.split_off(first.len() / 2);
                self.client.shared.ranges_limit.fetch_min(first.len().max(1), Ordering::Relaxed);
                requeue.splice(0..0, [first, second]);
                Ok(requeue)
            }
            416 => {
                let content_range = header(&resp, "content-range");
                let blob_size = content_range.and_then(|v| multipart::content_range(&v).ok()).and_then(|(_, s)| s);
                let range = sink.pending[0].clone();
                Err(Some(RegistryError::RangeNotSatisfiable { digest: *self.digest, range, blob_size }))
            }
            _ => {
                let target = Target::Blob { repo: self.repo, digest: self.digest };
                Err(Some(self.client.status_error("GET", &url, resp, target)))
            }
        }
    }

    /// A 206 answer: multipart, or one `Content-Range`. Delivers what it holds.
    fn read_partial(
        &self,
        url: &str,
        resp: Response,
        sink: &mut Sink<'_>,
    ) -> std::result::Result<(), Option<RegistryError>> {
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let content_range = header(&resp, "content-range");
        let content_length = header(&resp, "content-length");
        let mut answer = Answer::new(&sink.pending);
        let mut body = BufReader::with_capacity(64 << 10, self.client.body_reader(resp));
        let mut delivered = 0;
        if let Some(boundary) = multipart::boundary(&content_type) {
            self.stats(|s| s.multipart_responses += 1);
            let mut parts = Multipart::new(&mut body, &boundary);
            loop {
                match parts.next_part_checked(|r| answer.check("part", r)) {
                    Ok(Some((range, data))) => delivered += self.deliver(sink, &range, &data)?,
                    Ok(None) => break,
                    Err(MultipartError::Io(e)) => return Err(Some(self.io(e))),
                    Err(MultipartError::Refused(m)) => return Err(self.invalid(url, m)),
                    Err(MultipartError::Format(m)) => {
                        return Err(self.invalid(url, format!("bad multipart answer: {m}")));
                    }
                }
            }
        } else {
            self.stats(|s| s.single_range_responses += 1);
            let cr = content_range.ok_or_else(|| self.invalid(url, "206 answer without Content-Range".into()))?;
            let (range, _) = multipart::content_range(&cr).map_err(|m| self.invalid(url, m))?;
            let range = range.ok_or_else(|| self.invalid(url, format!("206 answer with Content-Range {cr:?}")))?;
            answer.check("Content-Range", &range).map_err(|m| self.invalid(url, m))?;
            let (len, last) = (range.end - range.start, range.end - 1);
            if let Some(cl) = content_length
                && cl.trim().parse::<u64>().ok() != Some(len)
            {
                let reason = format!("Content-Length {cl} does not match Content-Range bytes {}-{last}", range.start);
                return Err(self.invalid(url, reason));
            }
            let mut data = buffer_for(len);
            (&mut body).take(len).read_to_end(&mut data).map_err(|e| Some(self.io(e)))?;
            if data.len() as u64 != len {
                return Err(self.invalid(url, format!("body ends inside bytes {}-{last}", range.start)));
            }
            // Whatever follows is not what was asked for: an error, not something to read
            // to its end (which may never come).
            if matches!(body.read(&mut [0u8; 1]), Ok(n) if n > 0) {
                let reason = format!("the 206 answer is longer than its Content-Range bytes {}-{last}", range.start);
                return Err(self.invalid(url, reason));
            }
            delivered += self.deliver(sink, &range, &data)?;
        }
        if delivered == 0 {
            return Err(self.invalid(url, "206 answer without any of the requested ranges".into()));
        }
        Ok(())
    }

    /// Hands the requested ranges inside a checked part to the caller; how many were new.
    fn deliver(
        &self,
        sink: &mut Sink<'_>,
        part: &Range<u64>,
        data: &[u8],
    ) -> std::result::Result<usize, Option<RegistryError>> {
        sink.part(part, data).map_err(|_| None)
    }

    fn io(&self, source: io::Error) -> RegistryError {
        RegistryError::Io { what: format!("ranges of blob {} from {}", self.digest, self.repo), source }
    }

    fn stats(&self, f: impl FnOnce(&mut RangeStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
