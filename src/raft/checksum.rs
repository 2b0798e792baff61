//! The state in a snapshot file, with a checksum: the bincode form of the [`State`], then
//! [`MAGIC`] and the SHA-256 of everything before it.
//!
//! Reading verifies the checksum and bounds decoding by the file's length, so a corrupt or
//! truncated file gives one clear error (pointing at the recovery steps) instead of a wrong
//! state, a panic, or a huge allocation from a garbled length. A file written before
//! checksums existed (the state alone) still loads; the trailer is read past by the
//! decoders of earlier versions.

use std::io::{self, BufReader, Read, Write};

use bincode::Options;
use sha2::{Digest, Sha256};

use crate::state::State;

/// Marks the checksum trailer.
pub const MAGIC: &[u8; 8] = b"SBSNAP01";
const TRAILER: usize = MAGIC.len() + 32;

/// What a corrupt snapshot file tells the operator.
pub const RECOVERY: &str =
    "the peer cannot start from it; see 'Recovering a peer that lost its disk' in docs/operations.md";

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().allow_trailing_bytes().with_limit(limit)
}

fn corrupt(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the snapshot file is corrupt ({what}); {RECOVERY}"))
}

/// Hashes what passes through.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes `state` and its checksum to `out`.
pub fn write_state(out: impl Write, state: &State) -> io::Result<()> {
    let mut hashing = Hashing { inner: out, hash: Sha256::new() };
    bincode::serialize_into(&mut hashing, state).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let digest = hashing.hash.finalize();
    let mut out = hashing.inner;
    out.write_all(MAGIC)?;
    out.write_all(&digest)?;
    out.flush()
}

/// Reads a state written by [`write_state`] (or, without a trailer, by an earlier version)
/// from `file`, `len` bytes long, verifying the checksum.
pub fn read_state(file: impl Read, len: u64) -> io::Result<State> {
    let mut hashing = Hashing { inner: BufReader::with_capacity(1 << 20, file), hash: Sha256::new() };
    let state: State =
        options(len).deserialize_from(&mut hashing).map_err(|e| corrupt(format!("cannot decode: {e}")))?;
    let digest = hashing.hash.finalize();
    let mut rest = Vec::with_capacity(TRAILER);
    hashing.inner.take(TRAILER as u64 + 1).read_to_end(&mut rest)?;
    match rest.len() {
        0 => {
            tracing::info!("the snapshot file has no checksum (written by an earlier version); loaded as it is");
            Ok(state)
        }
        TRAILER if rest.starts_with(MAGIC) && rest[MAGIC.len()..] == digest[..] => Ok(state),
        TRAILER if rest.starts_with(MAGIC) => Err(corrupt("checksum mismatch")),
        n => Err(corrupt(format!("{n} unexpected bytes after the state"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, RegionSpec};

    fn state() -> State {
        let mut s = State::default();
        for (i, name) in ["eu", "sea", "us"].iter().enumerate() {
            let spec = RegionSpec { cidrs: vec!["10.0.0.0/8".parse().unwrap()], fallback: vec![] };
            s.apply(i as u64 + 1, &Command::PutRegion { name: name.to_string(), spec, cas: None }).unwrap();
        }
        s
    }

    #[test]
    fn a_state_round_trips_and_every_corruption_is_caught() {
        let s = state();
        let mut bytes = Vec::new();
        write_state(&mut bytes, &s).unwrap();
        assert_eq!(read_state(&bytes[..], bytes.len() as u64).unwrap(), s);
        // Earlier versions' files: the state alone.
        let legacy = bincode::serialize(&s).unwrap();
        assert_eq!(read_state(&legacy[..], legacy.len() as u64).unwrap(), s);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let read = read_state(&bad[..], bad.len() as u64);
            assert!(read.is_err(), "a flipped bit at {i} of {} went unnoticed", bytes.len());
            assert!(read.unwrap_err().to_string().contains("docs/operations.md"));
        }
        for cut in [1, TRAILER - 1, TRAILER + 1, bytes.len() / 2] {
            let short = &bytes[..bytes.len() - cut];
            assert!(read_state(short, short.len() as u64).is_err(), "cut by {cut}");
        }
        // Without its whole trailer the file reads as an earlier version's: the state in
        // it is whole, so it loads.
        let bare = &bytes[..bytes.len() - TRAILER];
        assert_eq!(read_state(bare, bare.len() as u64).unwrap(), s);
    }

    #[test]
    fn a_garbled_length_is_refused_without_a_huge_allocation() {
        // A string length of 2^62 where the first region's name starts.
        let mut bytes = Vec::new();
        write_state(&mut bytes, &state()).unwrap();
        bytes[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let err = read_state(&bytes[..], bytes.len() as u64).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
