//! tar-split records from hostile JSON lines, and regeneration from them. First byte:
//! bit 0 = regenerate with CRC verification (else zero-copy `file_from`).
//!
//! Files come from `strata_fuzz::content` (every name up to 1 MiB exists, with a fixed
//! content; seeds are built with the same rule so their CRCs match).
//!
//! Oracles: [`RecordReader`] and [`regenerate`] never panic; the sink sees the `TarOut`
//! protocol with the sizes the records announce; the reported counts match what the sink
//! received; and when the regenerated stream is a tar strata accepts, recording it again
//! gives records that parse back, regenerate the very same bytes from the stream's own
//! payloads, and record to the very same JSON.
#![no_main]

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_fuzz::content;
use strata_layer::parse::TarReader;
use strata_layer::tarsplit::{Record, RecordReader, TarSplitError, TarSplitRecorder, regenerate};
use strata_layer::{TarOut, Tee};

static FILE: OnceLock<File> = OnceLock::new();

/// Collects a regenerated stream, checking the call protocol.
#[derive(Default)]
struct Sink {
    stream: Vec<u8>,
    open: Option<(u64, u64)>,
    entries: u64,
    payload: u64,
}

impl TarOut for Sink {
    fn segment(&mut self, b: &[u8]) -> io::Result<()> {
        assert!(self.open.is_none(), "segment inside a payload");
        self.stream.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, _: &[u8], size: u64) -> io::Result<()> {
        assert!(self.open.is_none(), "file_begin inside a payload");
        self.open = Some((size, 0));
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
        let (size, done) = self.open.as_mut().expect("file_data outside a payload");
        *done += b.len() as u64;
        assert!(*done <= *size, "more payload than the record announced");
        self.stream.extend_from_slice(b);
        self.payload += b.len() as u64;
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        let (size, done) = self.open.take().expect("file_end outside a payload");
        assert_eq!(size, done, "payload shorter than the record announced");
        self.entries += 1;
        Ok(())
    }
}

fn regen(records: Vec<Result<Record, TarSplitError>>, verify: bool) -> Result<Sink, TarSplitError> {
    let file = FILE.get_or_init(|| content::pattern_file().expect("pattern file"));
    let mut sink = Sink::default();
    let stats = regenerate(records, |name, size| content::open(file, name, size), &mut sink, verify)?;
    assert!(sink.open.is_none(), "regenerate returned inside a payload");
    assert_eq!(stats.stream_bytes, sink.stream.len() as u64);
    assert_eq!(stats.file_bytes, sink.payload);
    assert_eq!(stats.entries, sink.entries);
    Ok(sink)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, json)) = data.split_first() else { return };
    let records: Vec<_> = RecordReader::with_max_record(json, 1 << 16).take(4096).collect();
    let Ok(sink) = regen(records, flags & 1 == 1) else { return };
    let tar = sink.stream;

    // Record the regenerated stream again (only if it is a tar strata accepts), keeping
    // each entry's payload, and rebuild it from those records and payloads.
    let tap = Tee(TarSplitRecorder::new(Vec::new()), Payloads::default());
    let mut reader = TarReader::with_tap(&tar[..], tap);
    loop {
        match reader.next_header() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let Tee(recorder, payloads) = reader.into_tap();
    let Ok(lines) = recorder.finish() else { return };
    let again: Vec<Record> =
        RecordReader::new(&lines[..]).collect::<Result<_, _>>().expect("strata's own tar-split parses");
    let store = payloads.into_file();
    let mut rerecorded = TarSplitRecorder::new(Vec::new());
    let mut rebuilt = Tee(&mut rerecorded, Sink::default());
    let open = |n: &[u8], _| Ok(store.1.get(n).map(|&off| (store.0.try_clone().unwrap(), off)));
    regenerate(again.into_iter().map(Ok), open, &mut rebuilt, true)
        .expect("records of an accepted tar regenerate from its own payloads");
    assert_eq!(rebuilt.1.stream, tar, "records of a regenerated stream rebuild different bytes");
    assert_eq!(rerecorded.finish().unwrap(), lines, "tar-split changed across decode, regenerate, record");
});

/// Payloads of a stream by entry name.
#[derive(Default)]
struct Payloads {
    files: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Payloads {
    /// One unlinked file holding every payload, and where each starts.
    fn into_file(self) -> (File, HashMap<Vec<u8>, u64>) {
        let mut f = content::scratch_file().expect("scratch file");
        let (mut at, mut index) = (0u64, HashMap::new());
        for (name, data) in self.files {
            f.write_all(&data).unwrap();
            index.insert(name, at);
            at += data.len() as u64;
        }
        (f, index)
    }
}

impl TarOut for Payloads {
    fn segment(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn file_begin(&mut self, name: &[u8], _: u64) -> io::Result<()> {
        self.files.push((name.to_vec(), Vec::new()));
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
        self.files.last_mut().unwrap().1.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}
