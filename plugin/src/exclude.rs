//! `tokudb_backup_exclude`: POSIX extended regular expressions, matched with
//! the C library's regcomp/regexec so existing patterns keep their meaning.

use std::ffi::{c_char, CString};

/// A compiled pattern.
pub struct Exclude {
    re: Box<libc::regex_t>,
}

// SAFETY: glibc's regexec only reads the compiled pattern (it takes an
// internal lock for its shared scratch state), so one compiled regex_t may be
// used from several threads at once; regfree happens only in Drop (&mut self).
unsafe impl Sync for Exclude {}
// SAFETY: the regex_t is heap-allocated and owned; moving the owner is fine.
unsafe impl Send for Exclude {}

impl Exclude {
    pub fn new(pattern: &str) -> Result<Exclude, String> {
        let c = CString::new(pattern).map_err(|_| "pattern contains a NUL byte".to_string())?;
        // SAFETY: regex_t is plain data, zero is a valid initial state for regcomp.
        let mut re: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: re points at writable regex_t storage, c is NUL-terminated.
        let rc =
            unsafe { libc::regcomp(&mut *re, c.as_ptr(), libc::REG_EXTENDED | libc::REG_NOSUB) };
        if rc != 0 {
            let mut buf = [0 as c_char; 256];
            // SAFETY: regerror writes at most buf.len() bytes, NUL-terminated.
            unsafe { libc::regerror(rc, &*re, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: regerror NUL-terminated buf (it was zeroed, too).
            let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            // A failed regcomp frees what it allocated; do not regfree.
            std::mem::forget(re);
            return Err(msg.to_string_lossy().into_owned());
        }
        Ok(Exclude { re })
    }

    pub fn matches(&self, path: &str) -> bool {
        let Ok(c) = CString::new(path) else {
            return false;
        };
        // SAFETY: re was compiled by regcomp; REG_NOSUB means no match array.
        unsafe { libc::regexec(&*self.re, c.as_ptr(), 0, std::ptr::null_mut(), 0) == 0 }
    }
}

impl Drop for Exclude {
    fn drop(&mut self) {
        // SAFETY: compiled successfully in new() and freed only here.
        unsafe { libc::regfree(&mut *self.re) };
    }
}

#[cfg(test)]
mod tests {
    use super::Exclude;

    #[test]
    fn percona_style_patterns_keep_their_meaning() {
        let e = Exclude::new(r"/lost\+found($|/)").unwrap();
        assert!(e.matches("/var/lib/mysql/lost+found"));
        assert!(e.matches("/var/lib/mysql/lost+found/x"));
        assert!(!e.matches("/var/lib/mysql/lost+foundx"));
        // ERE: alternation and intervals without backslashes.
        let e = Exclude::new(r"/(t1|t2)\.ibd$").unwrap();
        assert!(e.matches("/d/db/t1.ibd") && e.matches("/d/db/t2.ibd"));
        assert!(!e.matches("/d/db/t3.ibd"));
        let e = Exclude::new(r"x{2}").unwrap();
        assert!(e.matches("/axxb") && !e.matches("/axb"));
    }

    #[test]
    fn invalid_pattern_is_reported() {
        let err = Exclude::new("(").err().expect("must fail");
        assert!(!err.is_empty());
    }
}
