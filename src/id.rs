//! Message IDs and their 128-bit fingerprints.
//!
//! The store never keeps an ID itself, only the xxh3-128 fingerprint of (namespace, ID).
//! Two different IDs collide with probability about `n² / 2^129` for `n` IDs in a window:
//! below 10⁻¹⁸ for a billion IDs. A collision makes the second ID a false duplicate.

#![allow(
    clippy::cast_possible_truncation,
    reason = "fingerprints are split into words and hashes on purpose"
)]

use crate::error::{Error, Result};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128, xxh3_128_with_seed};

/// The longest ID the store accepts, in bytes.
pub const MAX_ID_LEN: usize = 4096;

/// A deterministic 16-byte ID for a message that carries none: the xxh3-128 hash of its payload.
///
/// Two deliveries of the same payload get the same ID; two different payloads collide with
/// probability about `n² / 2^129`.
///
/// ```
/// let a = dedupstore::fingerprint(b"{\"order\": 42}");
/// assert_eq!(a, dedupstore::fingerprint(b"{\"order\": 42}"));
/// assert_ne!(a, dedupstore::fingerprint(b"{\"order\": 43}"));
/// ```
#[must_use]
pub fn fingerprint(payload: &[u8]) -> [u8; 16] {
    xxh3_128(payload).to_be_bytes()
}

/// The fingerprint a mark or claim keeps of its message's payload, to tell a redelivery from
/// another message reusing the ID.
pub(crate) fn payload_fingerprint(payload: &[u8]) -> u128 {
    xxh3_128(payload)
}

/// The fingerprint of one (namespace, ID) pair: what the store remembers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Fingerprint(u128);

/// Length of a fingerprint's on-disk key.
pub(crate) const KEY_LEN: usize = 16;

impl Fingerprint {
    /// Validates `id` and fingerprints it under the namespace whose seed is `namespace_seed`.
    pub(crate) fn of(namespace_seed: u64, id: &[u8], position: Option<usize>) -> Result<Self> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(Error::InvalidId {
                position,
                len: id.len(),
            });
        }
        Ok(Self(xxh3_128_with_seed(id, namespace_seed)))
    }

    /// The on-disk key: big-endian bytes.
    pub(crate) fn key(self) -> [u8; KEY_LEN] {
        self.0.to_be_bytes()
    }

    /// The fingerprint as four words, the hot tier's compact form.
    pub(crate) fn words(self) -> [u32; 4] {
        let v = self.0;
        [
            (v >> 96) as u32,
            (v >> 64) as u32,
            (v >> 32) as u32,
            v as u32,
        ]
    }

    /// Bits that place the fingerprint in a hot-tier index (the high half).
    pub(crate) fn probe_hash(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// Bits that choose the stripe (the low half, independent of [`Self::probe_hash`]).
    pub(crate) fn stripe_hash(self) -> u64 {
        self.0 as u64
    }

    /// Bits that place the fingerprint in a generation's filter (both halves folded together).
    pub(crate) fn filter_hash(self) -> u64 {
        (self.0 >> 64) as u64 ^ self.0 as u64
    }

    /// A non-zero 8-bit tag for the index bucket, from bits used by neither hash above.
    pub(crate) fn tag(self) -> u8 {
        // `% 255 + 1` maps into 1..=255: zero marks an empty bucket.
        ((self.0 as u64 >> 32) % 255 + 1) as u8
    }

    /// The inverse of [`Self::words`].
    pub(crate) fn from_words(w: [u32; 4]) -> Self {
        Self(
            (u128::from(w[0]) << 96)
                | (u128::from(w[1]) << 64)
                | (u128::from(w[2]) << 32)
                | u128::from(w[3]),
        )
    }

    #[cfg(test)]
    pub(crate) fn from_raw(v: u128) -> Self {
        Self(v)
    }
}

/// The seed that separates one namespace's fingerprints from another's.
pub(crate) fn namespace_seed(namespace: &[u8]) -> u64 {
    xxh3_64(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_bad_length_are_rejected() {
        assert!(matches!(
            Fingerprint::of(0, b"", None),
            Err(Error::InvalidId { len: 0, .. })
        ));
        assert!(matches!(
            Fingerprint::of(0, &[7; MAX_ID_LEN + 1], Some(3)),
            Err(Error::InvalidId {
                len: 4097,
                position: Some(3)
            })
        ));
        assert!(Fingerprint::of(0, &[7; MAX_ID_LEN], None).is_ok());
        assert!(Fingerprint::of(0, b"x", None).is_ok());
    }

    #[test]
    fn namespaces_separate_ids() {
        let a = Fingerprint::of(namespace_seed(b"orders"), b"42", None).unwrap();
        let b = Fingerprint::of(namespace_seed(b"refunds"), b"42", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            a,
            Fingerprint::of(namespace_seed(b"orders"), b"42", None).unwrap()
        );
    }

    #[test]
    fn words_and_key_carry_all_bits() {
        let f = Fingerprint::from_raw(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        assert_eq!(
            f.words(),
            [0x0011_2233, 0x4455_6677, 0x8899_aabb, 0xccdd_eeff]
        );
        assert_eq!(Fingerprint::from_words(f.words()), f);
        assert_eq!(f.key()[0], 0x00);
        assert_eq!(f.key()[15], 0xff);
        assert!(f.tag() >= 1);
    }
}
