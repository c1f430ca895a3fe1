//! The `meta` record: format version and the settings a store was last opened with.
//!
//! Layout (48 bytes, integers little-endian), stored under key `meta` in column family `meta`:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `DDUPSTOR` |
//! | 8..12 | format version |
//! | 12..20 | window in milliseconds |
//! | 20..24 | slots |
//! | 24..32 | namespace seed (xxh3-64 of the namespace) |
//! | 32..40 | creation time, milliseconds since the Unix epoch |
//! | 40..48 | xxh3-64 of bytes 0..40 |

use crate::error::{Error, Result};
use xxhash_rust::xxh3::xxh3_64;

/// The on-disk format this version writes. Version 2 added values to marks (a payload
/// fingerprint, a claim's result; `persist::mark`), version 3 namespaces (their records and
/// generations; `persist::namespaces`), version 4 producer sequences (column family
/// `producers`; `persist::producers`). A store of an older version is read as it is and
/// upgraded at open by rewriting this record, after which older versions refuse it.
pub(crate) const FORMAT_VERSION: u32 = 4;
/// The oldest format this version reads.
const OLDEST_READABLE: u32 = 1;
const MAGIC: &[u8; 8] = b"DDUPSTOR";
const LEN: usize = 48;
const BODY: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The format version the record was written by.
    pub version: u32,
    pub window_ms: u64,
    pub slots: u32,
    pub namespace_seed: u64,
    pub created_ms: u64,
}

impl Meta {
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..20].copy_from_slice(&self.window_ms.to_le_bytes());
        out[20..24].copy_from_slice(&self.slots.to_le_bytes());
        out[24..32].copy_from_slice(&self.namespace_seed.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_ms.to_le_bytes());
        let sum = xxh3_64(&out[..BODY]);
        out[BODY..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Reads a record. A record of another format version is [`Error::IncompatibleFormat`]
    /// (`path` names the store); anything unreadable is [`Error::Corruption`].
    pub(crate) fn decode(bytes: &[u8], path: &std::path::Path) -> Result<Self> {
        let corrupt = |detail: String| Error::Corruption {
            what: format!("meta record of {}", path.display()),
            detail,
        };
        if bytes.len() < 12 || &bytes[0..8] != MAGIC {
            return Err(corrupt(format!(
                "{} bytes that do not start with the magic {MAGIC:?}",
                bytes.len()
            )));
        }
        let version = u32::from_le_bytes(field(bytes, 8));
        if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&version) {
            return Err(Error::IncompatibleFormat {
                path: path.to_owned(),
                found: format!("dedupstore format {version}"),
                expected: format!("dedupstore format {OLDEST_READABLE}..={FORMAT_VERSION}"),
            });
        }
        if bytes.len() != LEN {
            return Err(corrupt(format!("{} bytes, expected {LEN}", bytes.len())));
        }
        let sum = u64::from_le_bytes(field(bytes, BODY));
        if sum != xxh3_64(&bytes[..BODY]) {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(Self {
            version,
            window_ms: u64::from_le_bytes(field(bytes, 12)),
            slots: u32::from_le_bytes(field(bytes, 20)),
            namespace_seed: u64::from_le_bytes(field(bytes, 24)),
            created_ms: u64::from_le_bytes(field(bytes, 32)),
        })
    }
}

/// `N` bytes of `bytes` from `at`; the caller has checked the length.
pub(super) fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const META: Meta = Meta {
        version: FORMAT_VERSION,
        window_ms: 86_400_000,
        slots: 128,
        namespace_seed: 0xfeed,
        created_ms: 1_700_000_000_000,
    };

    #[test]
    fn round_trips() {
        assert_eq!(Meta::decode(&META.encode(), Path::new("x")).unwrap(), META);
        let older = Meta {
            version: OLDEST_READABLE,
            ..META
        };
        assert_eq!(
            Meta::decode(&older.encode(), Path::new("x")).unwrap(),
            older
        );
    }

    #[test]
    fn damage_is_reported_not_trusted() {
        let p = Path::new("x");
        let good = META.encode();
        let mut flipped = good;
        flipped[13] ^= 1;
        assert!(matches!(
            Meta::decode(&flipped, p),
            Err(Error::Corruption { .. })
        ));
        assert!(matches!(
            Meta::decode(&good[..47], p),
            Err(Error::Corruption { .. })
        ));
        assert!(matches!(
            Meta::decode(b"garbage", p),
            Err(Error::Corruption { .. })
        ));
        assert!(matches!(
            Meta::decode(&[], p),
            Err(Error::Corruption { .. })
        ));
        let mut future = good;
        future[8] = 5;
        match Meta::decode(&future, p) {
            Err(Error::IncompatibleFormat {
                found, expected, ..
            }) => {
                assert_eq!(found, "dedupstore format 5");
                assert_eq!(expected, "dedupstore format 1..=4");
            }
            other => panic!("{other:?}"),
        }
    }
}
