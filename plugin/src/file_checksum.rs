//! The checksum of a file in the manifest: xxh3-128 of its bytes. One copy
//! of this code serves the plugin, which writes the manifest, and
//! tokubackup, which verifies it (cli/src/manifest.rs includes this file),
//! so both always hash the same way.

use std::io::Read;
use std::path::Path;

/// The name the manifest gives it (`checksum_algorithm`).
pub const ALGORITHM: &str = "xxh3-128";

/// Size and xxh3-128 of the bytes of `p`, read with `buf`.
pub fn hash_file(p: &Path, buf: &mut [u8]) -> std::io::Result<(u64, u128)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => return Ok((size, h.digest128())),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
}
