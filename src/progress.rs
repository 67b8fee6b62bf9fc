//! How far a backup's copy has got: bytes and files found by the walk and
//! copied so far, for the poll callback and the log. Counters only; the
//! copier moves them, the thread that polls reads them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Progress {
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    files_total: AtomicU64,
    files_done: AtomicU64,
}

impl Progress {
    /// The walk found a file of `size` bytes to copy.
    pub fn found(&self, size: u64) {
        self.files_total.fetch_add(1, Relaxed);
        self.bytes_total.fetch_add(size, Relaxed);
    }

    /// `bytes` more were copied.
    pub fn copied(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Relaxed);
    }

    /// A file is completely copied.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Relaxed);
    }

    /// Bytes copied, and bytes to copy.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_done.load(Relaxed),
            self.bytes_total.load(Relaxed),
        )
    }

    /// Progress as the poll callback shows it: the fraction of the bytes
    /// copied, and a sentence.
    pub fn report(&self) -> (f32, String) {
        let (done, total) = self.bytes();
        let done = done.min(total);
        let frac = if total == 0 {
            0.0
        } else {
            done as f64 / total as f64
        };
        let text = format!(
            "{} of {} bytes copied ({:.0}%), {} of {} files",
            done,
            total,
            frac * 100.0,
            self.files_done.load(Relaxed),
            self.files_total.load(Relaxed)
        );
        (frac as f32, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bytes_and_files_copied() {
        let p = Progress::default();
        assert_eq!(p.report().0, 0.0);
        p.found(300);
        p.found(100);
        p.copied(100);
        p.file_done();
        let (frac, text) = p.report();
        assert_eq!(frac, 0.25);
        assert_eq!(text, "100 of 400 bytes copied (25%), 1 of 2 files");
        // Bytes written past what the walk saw never show more than all.
        p.copied(1000);
        assert_eq!(p.report().0, 1.0);
    }
}
