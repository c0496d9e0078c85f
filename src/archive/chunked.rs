//! The archive file written in whole, aligned 2 MiB chunks.
//!
//! How an archive is written decides how the page cache holds it until the kernel evicts it.
//! File systems with large folios (ext4 and XFS on recent kernels) cache a write in folios no
//! larger than the write, and only a 2 MiB folio at a 2 MiB-aligned file offset can be mapped
//! with one huge-page entry, which the scans' mapping asks for (`index::cache`). Checked on
//! Linux 6.18, ext4: a file written in 2 MiB pieces was mapped huge, one written in 1 MiB
//! pieces (as a plain 1 MiB buffer writes) was not, until it was evicted and read back. With
//! whole, aligned chunks a freshly converted archive is scanned through huge pages at once.

use std::io::{self, Write};

/// The write size and alignment: the x86-64 and arm64 (4 KiB granule) huge-page size.
pub const CHUNK: usize = 2 << 20;

/// A buffered writer whose writes start and end on [`CHUNK`] boundaries of the file, except
/// where the data starts, ends or is flushed. It assumes it is the only writer of `inner`,
/// from offset 0.
pub(crate) struct ChunkedWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    start: u64,
}

impl<W: Write> ChunkedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        ChunkedWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
            start: 0,
        }
    }

    pub(crate) fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Writes what is buffered and returns the inner writer.
    pub(crate) fn into_inner(mut self) -> io::Result<W> {
        self.write_buffered()?;
        Ok(self.inner)
    }

    /// Bytes the buffer takes before it reaches the next chunk boundary.
    fn room(&self) -> usize {
        let end = self.start + self.buf.len() as u64;
        CHUNK - (end % CHUNK as u64) as usize
    }

    fn write_buffered(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..taken]);
        if self.room() == CHUNK {
            self.write_buffered()?;
        }
        Ok(taken)
    }

    /// Writes the partial chunk buffered so far; the writes after it fill up to the next
    /// boundary first, so they stay aligned.
    fn flush(&mut self) -> io::Result<()> {
        self.write_buffered()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write the chunked writer makes: its offset and length.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: Vec<(usize, usize)>,
    }

    impl Write for Recorder {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.writes.push((self.bytes.len(), data.len()));
            self.bytes.extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Pieces of every size (rows of 12 KiB, a header, single bytes, pieces larger than a
    /// chunk) and a flush in the middle: the bytes arrive whole and in order, and every write
    /// but the one at the flush and the last is a whole chunk at a chunk boundary.
    #[test]
    fn writes_whole_aligned_chunks_around_a_flush() {
        let mut state = 0x9e37_79b9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut writer = ChunkedWriter::new(Recorder::default());
        let mut want = Vec::new();
        let mut flushed_at = None;
        for piece in 0..900 {
            let len = match piece % 4 {
                0 => 12_288,
                1 => 4096,
                2 => 1 + next() as usize % 64,
                _ => next() as usize % (3 * CHUNK / 200),
            };
            let len = if piece == 450 { 3 * CHUNK + 5 } else { len };
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            writer.write_all(&data).unwrap();
            want.extend_from_slice(&data);
            if piece == 300 {
                writer.flush().unwrap();
                flushed_at = Some(want.len());
            }
        }
        let recorder = writer.into_inner().unwrap();
        assert_eq!(recorder.bytes, want);
        let flushed_at = flushed_at.unwrap();
        let last = recorder.writes.len() - 1;
        let mut whole = 0;
        for (n, &(offset, len)) in recorder.writes.iter().enumerate() {
            if n == last || offset + len == flushed_at {
                continue;
            }
            assert_eq!(
                (offset + len) % CHUNK,
                0,
                "write {n} at {offset} of {len} bytes ends between chunks"
            );
            if offset % CHUNK == 0 {
                assert_eq!(len, CHUNK, "write {n} at {offset}");
                whole += 1;
            }
        }
        assert!(whole >= want.len() / CHUNK - 2, "{whole} whole chunks");
    }
}
