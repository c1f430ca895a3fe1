//! The value of a mark in a generation column family: the mark's time, and what a payload
//! fingerprint or a completed claim stores with it.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | mark time, ms since the Unix epoch, u64 big-endian |
//! | 8 | flags (absent in a plain mark): bit 0 a payload fingerprint follows, bit 1 a result |
//! | 9..25 | the payload's xxh3-128 fingerprint, big-endian (if bit 0) |
//! | rest | the stored result (if bit 1; may be empty) |

use crate::error::{Error, Result};
use bytes::Bytes;

/// The longest result a completed claim can store, in bytes.
pub const MAX_RESULT_LEN: usize = 64 * 1024;

const HAS_PAYLOAD: u8 = 1;
const HAS_RESULT: u8 = 2;

/// One mark's stored value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MarkValue {
    /// When the ID was marked (for a claim: when it was completed).
    pub at: u64,
    /// The fingerprint of the payload the ID was marked with, if one was given.
    pub payload: Option<u128>,
    /// The result a completed claim stored.
    pub result: Option<Bytes>,
}

impl MarkValue {
    /// A plain mark made at `at`.
    pub(crate) fn at(at: u64) -> Self {
        Self {
            at,
            ..Self::default()
        }
    }

    /// Appends the encoded value to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.at.to_be_bytes());
        if self.payload.is_none() && self.result.is_none() {
            return;
        }
        let flags = if self.payload.is_some() {
            HAS_PAYLOAD
        } else {
            0
        } | if self.result.is_some() { HAS_RESULT } else { 0 };
        out.push(flags);
        if let Some(payload) = self.payload {
            out.extend_from_slice(&payload.to_be_bytes());
        }
        if let Some(result) = &self.result {
            out.extend_from_slice(result);
        }
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Reads a stored value; `what` names it in the error.
    pub(crate) fn decode(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Self> {
        let corrupt = |detail: String| Error::Corruption {
            what: what(),
            detail,
        };
        let Some((at, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(corrupt(format!(
                "{} bytes, a mark has at least 8",
                bytes.len()
            )));
        };
        let at = u64::from_be_bytes(*at);
        let Some((&flags, mut rest)) = rest.split_first() else {
            return Ok(Self::at(at));
        };
        if flags == 0 || flags & !(HAS_PAYLOAD | HAS_RESULT) != 0 {
            return Err(corrupt(format!("unknown flags {flags:#04x}")));
        }
        let mut payload = None;
        if flags & HAS_PAYLOAD != 0 {
            let Some((fp, after)) = rest.split_first_chunk::<16>() else {
                return Err(corrupt(format!(
                    "{} bytes left for a 16-byte payload fingerprint",
                    rest.len()
                )));
            };
            payload = Some(u128::from_be_bytes(*fp));
            rest = after;
        }
        let result = if flags & HAS_RESULT != 0 {
            if rest.len() > MAX_RESULT_LEN {
                return Err(corrupt(format!(
                    "a {}-byte result, longer than {MAX_RESULT_LEN}",
                    rest.len()
                )));
            }
            Some(Bytes::copy_from_slice(rest))
        } else if rest.is_empty() {
            None
        } else {
            return Err(corrupt(format!("{} bytes after the mark", rest.len())));
        };
        Ok(Self {
            at,
            payload,
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [
            MarkValue::at(7),
            MarkValue {
                at: 1,
                payload: Some(u128::MAX - 3),
                result: None,
            },
            MarkValue {
                at: 2,
                payload: None,
                result: Some(Bytes::from_static(b"")),
            },
            MarkValue {
                at: 3,
                payload: Some(9),
                result: Some(Bytes::from_static(b"{\"status\": 201}")),
            },
        ];
        for v in values {
            assert_eq!(MarkValue::decode(&v.encode(), String::new).unwrap(), v);
        }
        assert_eq!(
            MarkValue::at(7).encode().len(),
            8,
            "a plain mark stays 8 bytes"
        );
    }

    #[test]
    fn damage_is_reported() {
        let full = MarkValue {
            at: 3,
            payload: Some(9),
            result: Some(Bytes::from_static(b"r")),
        }
        .encode();
        for bad in [
            &full[..7],                          // short time
            &full[..20],                         // cut payload
            &[0, 0, 0, 0, 0, 0, 0, 1, 0][..],    // no flags set
            &[0, 0, 0, 0, 0, 0, 0, 1, 4][..],    // unknown flag
            &[0, 0, 0, 0, 0, 0, 0, 1, 1, 0][..], // payload cut
        ] {
            assert!(
                matches!(
                    MarkValue::decode(bad, || "m".into()),
                    Err(Error::Corruption { .. })
                ),
                "{bad:?}"
            );
        }
        let mut trailing = MarkValue {
            at: 1,
            payload: Some(2),
            result: None,
        }
        .encode();
        trailing.push(0);
        assert!(MarkValue::decode(&trailing, String::new).is_err());
    }
}
