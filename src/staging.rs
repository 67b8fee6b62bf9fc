//! Staging areas: where a mirror gets the bytes the kernel wrote. An
//! application may change a buffer while a write from it is in flight -
//! InnoDB keeps appending redo records to the log block it is writing - so
//! the application's buffer after the real call is not what was written.
//!
//! A write through the page cache is read back from the source file after
//! the real call (the range lock keeps those bytes as written; see
//! `capture::write`). O_DIRECT bytes are not in the page cache: they are
//! staged, i.e. copied into the area before the real call, which then
//! writes the copy.
//! The copy is made with process_vm_readv on the process itself, which
//! reports a bad address as an error where a plain copy would crash; a
//! write that cannot be staged (a bad address, too large, no memory) is
//! made from the application's buffer and mirrored by copying the written
//! range from the source file.
//!
//! Each gate slot (one thread at a time) has its own area, owned by the
//! session and freed with it.
//!
//! The same copy reads whatever else a hook needs from the application's
//! memory before the real call has validated it (an iovec array, an offset
//! behind a pointer): a bad address is then the kernel's EFAULT for the
//! application, never a crash of the process.

use crate::gate::NSLOTS;
use std::alloc::{alloc, dealloc, Layout};
use std::cell::UnsafeCell;

/// Writes larger than this are not staged.
pub const MAX_STAGED: usize = 64 << 20;
/// Staged bytes keep their address modulo this, so that a write meant for
/// O_DIRECT meets the same alignment rules as the application's buffer.
const ALIGN: usize = 4096;
/// Most iovecs a call may have (IOV_MAX, the kernel's UIO_MAXIOV).
pub const MAX_IOV: usize = 1024;

/// The bytes a write call hands the kernel.
#[derive(Clone, Copy)]
pub enum Bytes {
    Buf(*const u8, usize),
    Iov(*const libc::iovec, libc::c_int),
    /// copy_file_range, sendfile: `len` bytes from another file.
    FromSource(usize),
}

impl Bytes {
    /// How many bytes the call asks to write, found without touching the
    /// application's memory (the iovec array is copied: the real call has
    /// not validated it yet); None when the real call is sure to fail.
    pub fn len(&self) -> Option<usize> {
        match *self {
            Bytes::Buf(_, n) | Bytes::FromSource(n) => Some(n),
            Bytes::Iov(iov, cnt) => iov_total(iov, cnt),
        }
    }

    /// The buffer to hand the real call: the staged one, else `orig`.
    pub fn buf_or(self, orig: *const libc::c_void) -> *const libc::c_void {
        match self {
            Bytes::Buf(p, _) => p.cast(),
            _ => orig,
        }
    }

    /// The iovec array to hand the real call: the staged one, else `orig`.
    pub fn iov_or(self, orig: *const libc::iovec) -> *const libc::iovec {
        match self {
            Bytes::Iov(v, _) => v,
            _ => orig,
        }
    }
}

struct Area {
    ptr: *mut u8,
    cap: usize,
    /// A staged write's iovecs: the application's array as copied, and
    /// the one describing the staged bytes (kept to be reused).
    remote: Vec<libc::iovec>,
    iov: Vec<libc::iovec>,
}

impl Drop for Area {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated in `reserve` with exactly this layout.
            unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(self.cap, ALIGN)) };
        }
    }
}

impl Area {
    /// At least `need` bytes of buffer; false if memory is short.
    fn reserve(&mut self, need: usize) -> bool {
        if need <= self.cap {
            return true;
        }
        let cap = need.next_power_of_two().max(64 << 10);
        let Ok(layout) = Layout::from_size_align(cap, ALIGN) else {
            return false;
        };
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return false;
        }
        if !self.ptr.is_null() {
            // SAFETY: allocated here before with this layout.
            unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(self.cap, ALIGN)) };
        }
        self.ptr = p;
        self.cap = cap;
        true
    }
}

pub struct Staging {
    areas: Box<[UnsafeCell<Area>]>,
}

// SAFETY: an area is only touched through `stage` by the thread that owns
// its gate slot, while that thread is inside a hook; a slot has one owner
// at a time, so no area is ever used by two threads at once.
unsafe impl Sync for Staging {}
// SAFETY: the areas are heap buffers owned by the Staging with no tie to
// a thread; moving the Staging moves the ownership of all of them.
unsafe impl Send for Staging {}

impl Default for Staging {
    fn default() -> Staging {
        Staging {
            areas: (0..NSLOTS)
                .map(|_| {
                    UnsafeCell::new(Area {
                        ptr: core::ptr::null_mut(),
                        cap: 0,
                        remote: Vec::new(),
                        iov: Vec::new(),
                    })
                })
                .collect(),
        }
    }
}

/// Where a segment starting at `base` goes in the staging area, after
/// `pos` bytes are used: the next position with the same address modulo
/// ALIGN (the area itself is ALIGN-aligned).
fn place(pos: usize, base: usize) -> usize {
    pos + ((base % ALIGN) + ALIGN - pos % ALIGN) % ALIGN
}

fn one(base: *mut u8, len: usize) -> [libc::iovec; 1] {
    [libc::iovec {
        iov_base: base.cast(),
        iov_len: len,
    }]
}

/// Copy `local` from this process's memory as described by `remote`;
/// true if every byte was copied.
fn read_own_memory(local: &[libc::iovec], remote: &[libc::iovec], total: usize) -> bool {
    let mut done = 0usize;
    // process_vm_readv takes at most IOV_MAX iovecs per side, which the
    // callers respect; a short copy only happens at a bad address.
    // SAFETY: `local` describes writable memory of ours, `remote` memory
    // of this process; the kernel checks every address and fails with
    // EFAULT instead of faulting.
    let n = unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n > 0 {
        done = n as usize;
    }
    done == total
}

/// Copy `out.len()` values from the application's memory at `p`; false at
/// a bad address.
///
/// # Safety
/// Every bit pattern must be a valid `T` (plain C data: iovec, integers).
unsafe fn read_app<T: Copy>(p: *const T, out: &mut [T]) -> bool {
    let n = core::mem::size_of_val(out);
    n == 0 || read_own_memory(&one(out.as_mut_ptr().cast(), n), &one(p as *mut u8, n), n)
}

/// The value behind a pointer the application passed (copy_file_range's
/// offset), or None if it cannot be read.
pub fn read_app_value(p: *const i64) -> Option<i64> {
    let mut v = [0i64];
    // SAFETY: any bit pattern is an i64.
    unsafe { read_app(p, &mut v) }.then_some(v[0])
}

/// A NUL-terminated path from the application's memory, copied without
/// trusting the pointer: None if it is null, cannot be read, or has no NUL
/// within PATH_MAX bytes (the real call then fails: EFAULT, ENAMETOOLONG).
pub fn read_app_path(p: *const libc::c_char) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    const PAGE: usize = 4096;
    const PATH_MAX: usize = libc::PATH_MAX as usize;
    if p.is_null() {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    while out.len() < PATH_MAX {
        // Never past the end of a page: the next one may be unmapped even
        // where the string ends before it.
        let at = (p as usize).wrapping_add(out.len());
        let n = (PAGE - at % PAGE).min(PATH_MAX - out.len());
        let start = out.len();
        out.resize(start + n, 0);
        // SAFETY: any bit pattern is a u8.
        if !unsafe { read_app(at as *const u8, &mut out[start..]) } {
            return None;
        }
        if let Some(nul) = out[start..].iter().position(|&b| b == 0) {
            out.truncate(start + nul);
            return Some(std::ffi::OsString::from_vec(out).into());
        }
    }
    None
}

/// The application's iovec array, copied: Err(EINVAL) for a count the
/// kernel refuses, Err(EFAULT) for an array it cannot read, as the real call
/// would fail.
pub fn read_iovecs(iov: *const libc::iovec, cnt: usize) -> Result<Vec<libc::iovec>, i32> {
    if cnt > MAX_IOV {
        return Err(libc::EINVAL);
    }
    let empty = one(core::ptr::null_mut(), 0)[0];
    let mut v = vec![empty; cnt];
    // SAFETY: any bit pattern is an iovec (a pointer and a length).
    if unsafe { read_app(iov, &mut v) } {
        Ok(v)
    } else {
        Err(libc::EFAULT)
    }
}

/// The bytes an iovec array describes (lengths added, saturating), read
/// without allocating; None where the real call is sure to fail: a count
/// below 0 or above IOV_MAX, or an array that cannot be read.
pub fn iov_total(iov: *const libc::iovec, cnt: libc::c_int) -> Option<usize> {
    const CHUNK: usize = 64;
    let cnt = usize::try_from(cnt).ok().filter(|&c| c <= MAX_IOV)?;
    let empty = one(core::ptr::null_mut(), 0)[0];
    let mut buf = [empty; CHUNK];
    let mut total = 0usize;
    for start in (0..cnt).step_by(CHUNK) {
        let part = &mut buf[..CHUNK.min(cnt - start)];
        // SAFETY: any bit pattern is an iovec; `iov + start` stays within
        // (or one past) the array the application described.
        if !unsafe { read_app(iov.wrapping_add(start), part) } {
            return None;
        }
        total = part.iter().fold(total, |a, v| a.saturating_add(v.iov_len));
    }
    Some(total)
}

impl Staging {
    /// A copy of `bytes` in the calling thread's staging area, or None if
    /// it cannot be staged.
    ///
    /// # Safety
    /// `slot` is the calling thread's gate slot and the thread stays inside
    /// its hook while it uses the result; `bytes` is what the application
    /// passed to the call.
    pub unsafe fn stage(&self, slot: usize, bytes: Bytes) -> Option<Bytes> {
        let area = self.areas.get(slot)?;
        // SAFETY: the caller holds gate slot `slot` (this function's
        // contract) and only a slot's holder touches its area, so this is
        // the one reference to it.
        let area = unsafe { &mut *area.get() };
        match bytes {
            Bytes::Buf(p, n) => {
                if n == 0 || n > MAX_STAGED || p.is_null() {
                    return None;
                }
                let at = place(0, p as usize);
                if !area.reserve(at + n) {
                    return None;
                }
                // SAFETY: reserve made at + n bytes available.
                let dst = unsafe { area.ptr.add(at) };
                read_own_memory(&one(dst, n), &one(p as *mut u8, n), n)
                    .then_some(Bytes::Buf(dst, n))
            }
            Bytes::Iov(iov, cnt) => {
                if iov.is_null() || cnt <= 0 || cnt as usize > MAX_IOV {
                    return None;
                }
                // The iovec array itself is copied first: the application's
                // array could be as changeable as its buffers.
                let empty = one(core::ptr::null_mut(), 0)[0];
                area.remote.clear();
                area.remote.resize(cnt as usize, empty);
                let arr_len = cnt as usize * core::mem::size_of::<libc::iovec>();
                let arr = one(area.remote.as_mut_ptr().cast(), arr_len);
                if !read_own_memory(&arr, &one(iov as *mut u8, arr_len), arr_len) {
                    return None;
                }
                let mut need = 0usize;
                for v in &area.remote {
                    need = place(need, v.iov_base as usize).checked_add(v.iov_len)?;
                }
                let total: usize = area.remote.iter().map(|v| v.iov_len).sum();
                if total == 0 || need > MAX_STAGED || !area.reserve(need) {
                    return None;
                }
                let mut pos = 0usize;
                area.iov.clear();
                for v in &area.remote {
                    pos = place(pos, v.iov_base as usize);
                    // SAFETY: reserve made `need` bytes available, and the
                    // segments are laid out within it as computed above.
                    let at = unsafe { area.ptr.add(pos) };
                    area.iov.push(one(at, v.iov_len)[0]);
                    pos += v.iov_len;
                }
                read_own_memory(&area.iov, &area.remote, total)
                    .then_some(Bytes::Iov(area.iov.as_ptr(), cnt))
            }
            Bytes::FromSource(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_bytes_keep_alignment_and_content() {
        let st = Staging::default();
        let mut src = vec![0u8; 3 * ALIGN];
        for (i, b) in src.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let p = src[100..].as_ptr();
        // SAFETY: slot 0 is not used by any hook in this unit test.
        let Some(Bytes::Buf(q, n)) = (unsafe { st.stage(0, Bytes::Buf(p, 5000)) }) else {
            panic!("not staged");
        };
        assert_eq!(n, 5000);
        assert_eq!(q as usize % ALIGN, p as usize % ALIGN);
        // SAFETY: the staged copy holds n bytes.
        let staged = unsafe { core::slice::from_raw_parts(q, n) };
        assert_eq!(staged, &src[100..5100]);
        // The copy does not follow later changes of the application's buffer.
        src[100] ^= 0xff;
        // SAFETY: the staged copy holds n >= 1 bytes.
        assert_ne!(unsafe { *q }, src[100]);
    }

    #[test]
    fn staged_iovecs_keep_each_segment() {
        let st = Staging::default();
        let a = [1u8; 10];
        let b = vec![2u8; 7000];
        let iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut _,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b[3..].as_ptr() as *mut _,
                iov_len: 6000,
            },
        ];
        // SAFETY: slot 1 is not used by any hook in this unit test.
        let Some(Bytes::Iov(v, 2)) = (unsafe { st.stage(1, Bytes::Iov(iov.as_ptr(), 2)) }) else {
            panic!("not staged");
        };
        // SAFETY: the staged array has 2 entries describing staged bytes.
        let v = unsafe { core::slice::from_raw_parts(v, 2) };
        for (s, o) in v.iter().zip(&iov) {
            assert_eq!(s.iov_len, o.iov_len);
            assert_eq!(s.iov_base as usize % ALIGN, o.iov_base as usize % ALIGN);
            // SAFETY: both describe iov_len readable bytes.
            unsafe {
                assert_eq!(
                    core::slice::from_raw_parts(s.iov_base as *const u8, s.iov_len),
                    core::slice::from_raw_parts(o.iov_base as *const u8, o.iov_len)
                );
            }
        }
    }

    #[test]
    fn application_memory_is_read_without_faulting() {
        let bad = 16 as *const libc::iovec;
        assert_eq!(iov_total(bad, 2), None);
        assert_eq!(iov_total(bad, 0), Some(0));
        assert_eq!(iov_total(bad, -1), None);
        let iov = vec![
            libc::iovec {
                iov_base: 16 as *mut _,
                iov_len: 3
            };
            200
        ];
        assert_eq!(iov_total(iov.as_ptr(), 200), Some(600));
        assert_eq!(iov_total(iov.as_ptr(), 1025), None);
        assert_eq!(read_iovecs(bad, 1).err(), Some(libc::EFAULT));
        assert_eq!(read_iovecs(iov.as_ptr(), 1025).err(), Some(libc::EINVAL));
        assert_eq!(read_iovecs(iov.as_ptr(), 2).map(|v| v.len()), Ok(2));
        assert_eq!(read_app_value(16 as *const i64), None);
        assert_eq!(read_app_path(16 as *const libc::c_char), None);
        assert_eq!(
            read_app_path(c"/a/b".as_ptr()),
            Some(std::path::PathBuf::from("/a/b"))
        );
        let long = vec![b'x'; 5000];
        assert_eq!(read_app_path(long.as_ptr().cast()), None);
        assert_eq!(read_app_value(&-5i64), Some(-5));
    }

    #[test]
    fn bad_addresses_are_not_staged() {
        let st = Staging::default();
        // SAFETY: slot 2 is unused; the address is never dereferenced by us.
        let r = unsafe { st.stage(2, Bytes::Buf(16 as *const u8, 4096)) };
        assert!(r.is_none());
    }
}
