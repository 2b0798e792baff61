//! Records the history: each event is timed and appended under one lock, so the order of
//! the lines is the real-time order (an invocation is recorded before its request is sent,
//! a completion after its answer arrived), and flushed at once so a crash loses nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::history::{write_event, Event, Type, F};

pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    file: BufWriter<File>,
    events: Vec<Event>,
    error: Option<String>,
}

impl Recorder {
    pub fn create(path: &Path, start: Instant) -> Result<Recorder, String> {
        let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Recorder { start, inner: Mutex::new(Inner { file: BufWriter::new(file), events: Vec::new(), error: None }) })
    }

    pub fn invoke(&self, process: u64, f: F, key: &str, value: Value, node: u64) {
        self.record(process, Type::Invoke, f, key, value, node, None);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn record(&self, process: u64, kind: Type, f: F, key: &str, value: Value, node: u64, error: Option<String>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let time = self.start.elapsed().as_nanos() as u64;
        let event = Event { process, kind, f, key: key.to_string(), value, time, node: Some(node), error };
        let written = write_event(&mut inner.file, &event).and_then(|_| inner.file.flush());
        if let Err(e) = written {
            inner.error.get_or_insert(format!("cannot write the history: {e}"));
        }
        inner.events.push(event);
    }

    /// Every event so far, and the first write error if there was one (a harness failure).
    pub fn events(&self) -> (Vec<Event>, Option<String>) {
        match self.inner.lock() {
            Ok(inner) => (inner.events.clone(), inner.error.clone()),
            Err(_) => (Vec::new(), Some("a client thread panicked while recording".into())),
        }
    }
}
