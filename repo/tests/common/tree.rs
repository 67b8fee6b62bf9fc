//! Directory trees to push, and comparing restored trees with them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Pseudo-random but deterministic bytes (compress poorly, like data pages).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small datadir-like tree: nested directories, an empty file, a file of
/// exactly N chunks, files with zero pages and noise pages.
pub fn make(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("db1/sub")).unwrap();
    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("small.txt"), format!("small file {seed}\n")).unwrap();
    std::fs::write(root.join("db1/exact.ibd"), noise(seed + 1, 4 * 65536)).unwrap();
    let mut big = noise(seed + 2, 3_000_000);
    big[1_000_000..1_500_000].fill(0);
    std::fs::write(root.join("db1/big.ibd"), &big).unwrap();
    std::fs::write(root.join("db1/sub/t.MYD"), noise(seed + 3, 100_001)).unwrap();
    std::fs::write(root.join("ibdata1"), noise(7, 2_000_000)).unwrap();
    std::fs::set_permissions(
        root.join("small.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
}

/// Panic unless the two trees hold the same paths, modes and bytes.
pub fn assert_same(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(
        la.iter().map(|x| &x.0).collect::<Vec<_>>(),
        lb.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "paths differ between {} and {}",
        a.display(),
        b.display()
    );
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x.1, y.1, "mode of {} differs", x.0);
        assert!(x.2 == y.2, "content of {} differs", x.0);
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if m.is_dir() {
            out.push((rel, m.permissions().mode() & 0o7777, vec![]));
            walk(root, &p, out);
        } else {
            out.push((
                rel,
                m.permissions().mode() & 0o7777,
                std::fs::read(&p).unwrap(),
            ));
        }
    }
}
