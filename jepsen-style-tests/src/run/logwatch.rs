//! Following a peer's log as it grows, to act the moment a line appears (the
//! snapshot-crash nemesis kills a peer right after `snapshot built`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the log is read while waiting.
const POLL: Duration = Duration::from_millis(5);

pub struct LogWatch {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogWatch {
    /// Watches what is written to `path` from now on.
    pub fn from_end(path: &Path) -> LogWatch {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        LogWatch { path: path.to_path_buf(), offset, partial: String::new() }
    }

    /// Waits for a new line containing `needle`; returns it. Fails after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.next_match(needle)? {
                return Ok(line);
            }
            if Instant::now() > deadline {
                return Err(format!("no `{needle}` in {} within {timeout:?}", self.path.display()));
            }
            std::thread::sleep(POLL);
        }
    }

    fn next_match(&mut self, needle: &str) -> Result<Option<String>, String> {
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset)).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if line.contains(needle) {
                return Ok(Some(line.trim_end().to_string()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sees_only_new_lines_even_when_written_in_pieces() {
        let path = std::env::temp_dir().join(format!("jepsen-logwatch-{}", std::process::id()));
        std::fs::write(&path, "old snapshot built\n").unwrap();
        let mut watch = LogWatch::from_end(&path);
        assert!(watch.wait_for("snapshot built", Duration::from_millis(20)).is_err(), "an old line");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "INFO other\nINFO snapshot bu").unwrap();
        assert!(watch.wait_for("snapshot built", Duration::from_millis(20)).is_err(), "half a line");
        writeln!(f, "ilt last_applied=7").unwrap();
        assert_eq!(
            watch.wait_for("snapshot built", Duration::from_secs(1)).unwrap(),
            "INFO snapshot built last_applied=7"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
