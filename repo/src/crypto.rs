//! Keys and sealed objects. Every object but `config` is sealed: zstd, then
//! XChaCha20-Poly1305 with a random nonce and the object's role and name as
//! associated data, so an object moved to another name fails to open too.
//! Chunk ids are keyed BLAKE3 hashes: they reveal nothing about the data to
//! anyone without the key (an unkeyed hash would confirm guessed contents).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

const NONCE: usize = 24;
const VERSION: u8 = 1;
/// Payload kinds behind the version byte.
const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Fast: database pages compress well already at the lowest levels.
const ZSTD_LEVEL: i32 = 1;

/// Argon2id cost for turning the key file into the master key.
pub(crate) const KDF_MEMORY_KIB: u32 = 64 * 1024;
pub(crate) const KDF_ITERATIONS: u32 = 3;

/// The keys derived from the key file and the repository's salt.
pub(crate) struct Keys {
    id: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl Keys {
    pub(crate) fn derive(
        secret: &[u8],
        salt: &[u8],
        memory_kib: u32,
        iterations: u32,
    ) -> Result<Keys> {
        let params = argon2::Params::new(memory_kib, iterations, 1, Some(32))
            .map_err(|e| Error::Refused(format!("key derivation parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut master = [0u8; 32];
        argon
            .hash_password_into(secret, salt, &mut master)
            .map_err(|e| Error::Refused(format!("key derivation: {e}")))?;
        let id = blake3::derive_key("tokubackup-repo 2026 chunk id", &master);
        let enc = blake3::derive_key("tokubackup-repo 2026 encryption", &master);
        Ok(Keys {
            id,
            cipher: XChaCha20Poly1305::new(&enc.into()),
        })
    }

    /// The name of a chunk with this content.
    pub(crate) fn chunk_id(&self, data: &[u8]) -> String {
        blake3::keyed_hash(&self.id, data).to_hex().to_string()
    }

    /// Compress (when it pays) and encrypt `data`, bound to `name`.
    pub(crate) fn seal(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let packed = zstd::bulk::compress(data, ZSTD_LEVEL)
            .ok()
            .filter(|z| z.len() < data.len());
        let mut plain = Vec::with_capacity(1 + packed.as_ref().map_or(data.len(), Vec::len));
        match packed {
            Some(z) => {
                plain.push(ZSTD);
                plain.extend_from_slice(&z);
            }
            None => {
                plain.push(RAW);
                plain.extend_from_slice(data);
            }
        }
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the system's random source failed");
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Inverse of `seal`; `None` when the object is not what was sealed under `name`.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 1 + NONCE || sealed[0] != VERSION {
            return None;
        }
        let (nonce, body) = sealed[1..].split_at(NONCE);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        match plain.split_first()? {
            (&RAW, data) => Some(data.to_vec()),
            (&ZSTD, z) => zstd::stream::decode_all(z).ok(),
            _ => None,
        }
    }

    /// Open a chunk and check that its content hashes to its name.
    pub(crate) fn open_chunk(&self, id: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let data = self.open(&chunk_name(id), sealed)?;
        (self.chunk_id(&data) == id).then_some(data)
    }
}

/// The associated data a chunk is sealed under.
pub(crate) fn chunk_name(id: &str) -> String {
    format!("chunk {id}")
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the system's random source failed");
    hex(&b)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> Keys {
        Keys::derive(secret, b"0123456789abcdef", 64, 1).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = keys(b"secret");
        let data = vec![7u8; 100_000];
        let s = k.seal("a", &data);
        assert!(s.len() < 1000, "compressible data is compressed");
        assert_eq!(k.open("a", &s).unwrap(), data);
        assert!(k.open("b", &s).is_none(), "moved object fails");
        assert!(keys(b"other").open("a", &s).is_none(), "other key fails");
        let mut t = s.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(k.open("a", &t).is_none(), "changed object fails");
    }

    #[test]
    fn chunk_ids_are_keyed() {
        assert_ne!(keys(b"x").chunk_id(b"page"), keys(b"y").chunk_id(b"page"));
        assert_ne!(
            keys(b"x").chunk_id(b"page"),
            blake3::hash(b"page").to_hex().to_string()
        );
    }
}
