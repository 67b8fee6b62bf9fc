//! Read-only mappings of source files, for mirroring writes made through
//! the page cache: the mirror hands the kernel the written bytes straight
//! from the source's page cache (one pwrite to the destination) instead of
//! reading them back into a buffer first (a pread, then the pwrite).
//!
//! Only the kernel touches mapped bytes (in that pwrite), so a page it
//! cannot fault in - the file truncated by another process - is an EFAULT
//! the caller falls back from, never a SIGBUS in the application. No page is
//! read ahead (MADV_RANDOM), for the reason the copier reads without
//! readahead (see `Session::src_for`). A mapping belongs to one source
//! descriptor: a file that outgrows it, or whose descriptor changes, gets a
//! new one, and the old one is unmapped when its last user drops it. The
//! number and size of mappings are capped, so that a backup of many or huge
//! files never uses up the process's map count or address space; past the
//! caps mirrors read the bytes back instead.

use crate::sys::{self, OwnFd};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::io::Errno;
use rustix::mm::{self, Advice, MapFlags, ProtFlags};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;

/// Mappings alive at once (the kernel's default map count is 65530).
const MAX_MAPS: usize = 4096;
/// Address space they may take in all.
const MAX_BYTES: usize = 16 << 40;
/// Smallest mapping: a small file that grows is not remapped on every write.
const MIN_LEN: usize = 1 << 20;

static MAPS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

pub struct SourceMap {
    fd: Arc<OwnFd>,
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and only its address is shared; the
// kernel reads through it (pwrite), never this process's code.
unsafe impl Send for SourceMap {}
// SAFETY: as for Send.
unsafe impl Sync for SourceMap {}

/// Take `len` bytes of the caps; false (nothing taken) past them.
fn reserve(len: usize) -> bool {
    let maps = MAPS.fetch_add(1, SeqCst);
    let bytes = BYTES.fetch_add(len, SeqCst);
    if maps < MAX_MAPS && bytes.saturating_add(len) <= MAX_BYTES {
        return true;
    }
    release(len);
    false
}

fn release(len: usize) {
    MAPS.fetch_sub(1, SeqCst);
    BYTES.fetch_sub(len, SeqCst);
}

impl SourceMap {
    /// A mapping of the file open as `src` covering at least `[0, end)`,
    /// with room to grow; None past the caps or if it cannot be mapped.
    pub fn new(src: &Arc<OwnFd>, end: u64) -> Option<SourceMap> {
        let size = rustix::fs::fstat(src.as_fd()).ok()?.st_size.max(0) as u64;
        let len = usize::try_from(end.max(size).checked_add(1)?.checked_next_power_of_two()?)
            .ok()?
            .max(MIN_LEN);
        if !reserve(len) {
            return None;
        }
        // SAFETY: a new read-only shared mapping at an address the kernel
        // picks: no existing memory is affected.
        let ptr = match unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                src.as_fd(),
                0,
            )
        } {
            Ok(p) => p,
            Err(_) => {
                release(len);
                return None;
            }
        };
        for advice in [Advice::Random, Advice::LinuxDontFork, Advice::LinuxDontDump] {
            // SAFETY: advice on the mapping just made; a refusal changes
            // nothing but the advice.
            let _ = unsafe { mm::madvise(ptr, len, advice) };
        }
        Some(SourceMap {
            fd: src.clone(),
            ptr,
            len,
        })
    }

    /// Whether this maps the file open as `src` up to `end`.
    pub fn covers(&self, src: &Arc<OwnFd>, end: u64) -> bool {
        Arc::ptr_eq(&self.fd, src) && end <= self.len as u64
    }

    /// Write `[off, off + n)` of the source to `dest` at the same offset.
    /// EFAULT if part of it is no longer in the source.
    pub fn write_to(&self, dest: BorrowedFd<'_>, off: u64, n: usize) -> Result<(), Errno> {
        let end = off.checked_add(n as u64).ok_or(Errno::INVAL)?;
        if end > self.len as u64 {
            return Err(Errno::INVAL);
        }
        // SAFETY: [off, end) lies inside the mapping, which lives as long
        // as self. The slice is only passed to the kernel, which reads it
        // (and reports a page it cannot fault in as EFAULT); the caller
        // holds the range lock of these bytes, so no hook changes them
        // meanwhile.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.ptr.cast::<u8>().add(off as usize), n) };
        sys::pwrite_all(dest, bytes, off)
    }
}

impl Drop for SourceMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no reference into it outlives
        // self (write_to's slice lives only during its call).
        let _ = unsafe { mm::munmap(self.ptr, self.len) };
        release(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::FileExt;

    fn open(path: &std::path::Path, flags: OFlags) -> Arc<OwnFd> {
        Arc::new(
            sys::openat(
                rustix::fs::CWD,
                path,
                flags | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )
            .unwrap(),
        )
    }

    #[test]
    fn writes_the_source_bytes_and_faults_past_its_end() {
        let dir = std::env::temp_dir().join(format!("hb-source-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sp, dp) = (dir.join("src"), dir.join("dest"));
        let data: Vec<u8> = (0..20000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&sp, &data).unwrap();
        std::fs::write(&dp, vec![0u8; 20000]).unwrap();
        let src = open(&sp, OFlags::RDONLY);
        let dest = open(&dp, OFlags::WRONLY);
        let map = SourceMap::new(&src, 20000).unwrap();
        assert!(map.covers(&src, 20000) && !map.covers(&open(&sp, OFlags::RDONLY), 1));
        // A write made after the mapping is seen through it.
        let f = std::fs::OpenOptions::new().write(true).open(&sp).unwrap();
        f.write_all_at(b"fresh", 5000).unwrap();
        map.write_to(dest.as_fd(), 4000, 3000).unwrap();
        let got = std::fs::read(&dp).unwrap();
        let mut want = data.clone();
        want[5000..5005].copy_from_slice(b"fresh");
        assert_eq!(&got[4000..7000], &want[4000..7000]);
        assert!(got[..4000].iter().chain(&got[7000..]).all(|&b| b == 0));
        // Truncated under the mapping: an error, not a signal.
        f.set_len(0).unwrap();
        assert_eq!(map.write_to(dest.as_fd(), 8192, 4096), Err(Errno::FAULT));
        drop(map);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
