//! Leaf module: key format, hashing and secret handling. Imports nothing of ours.

pub mod envelope;
pub mod jwt;
pub mod keyfmt;
pub mod mac;
pub mod pool;
pub mod secret;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a credential: the only form in which verify-only secrets are stored.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Constant-time equality, so comparing secrets leaks nothing through timing.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
