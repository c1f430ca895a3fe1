//! Names and keys of the column families that hold the consumer's own data: tables, offsets and
//! the outbox (`docs/format.md` has the layout).

use crate::error::{Error, Result};

/// Consumer offsets: key `len(stream) as u8 ++ stream ++ partition (u32 BE)`, value u64 BE.
pub(crate) const OFFSETS_CF: &str = "offsets";
/// Outbox events: key the sequence number (u64 BE), value the payload.
pub(crate) const OUTBOX_CF: &str = "outbox";
/// The consumer's tables are column families `table.<name>`.
const TABLE_PREFIX: &str = "table.";
/// The longest table name, in bytes.
pub const MAX_TABLE_NAME: usize = 64;
/// The longest stream name, in bytes.
pub const MAX_STREAM_NAME: usize = 255;

/// The column family of table `name`, which must be 1..=64 ASCII letters, digits, `_` or `-`.
pub(crate) fn table_cf(name: &str) -> Result<String> {
    check_name("table", name)?;
    Ok(format!("{TABLE_PREFIX}{name}"))
}

/// Checks the name of a table or namespace (`what`): 1..=64 ASCII letters, digits, `_` or `-`.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        return Ok(());
    }
    Err(Error::InvalidName {
        what,
        name: name.to_owned(),
        detail: format!("need 1..={MAX_TABLE_NAME} ASCII letters, digits, '_' or '-'"),
    })
}

/// Whether a column family name is a table's.
pub(crate) fn is_table_cf(cf: &str) -> bool {
    cf.strip_prefix(TABLE_PREFIX)
        .is_some_and(|name| table_cf(name).is_ok())
}

/// The key of a consumer offset; `stream` must be 1..=255 bytes.
pub(crate) fn offset_key(stream: &str, partition: u32) -> Result<Vec<u8>> {
    let len = u8::try_from(stream.len())
        .ok()
        .filter(|&l| l > 0)
        .ok_or_else(|| Error::InvalidName {
            what: "stream",
            name: stream.to_owned(),
            detail: format!("need 1..={MAX_STREAM_NAME} bytes"),
        })?;
    let mut key = Vec::with_capacity(1 + stream.len() + 4);
    key.push(len);
    key.extend_from_slice(stream.as_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    Ok(key)
}

/// Reads a stored u64 (an offset, an outbox sequence number), `what` naming it in the error.
pub(crate) fn decode_u64(bytes: &[u8], what: impl FnOnce() -> String) -> Result<u64> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
        Error::Corruption {
            what: what(),
            detail: format!("{} bytes, expected 8", bytes.len()),
        }
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        assert_eq!(table_cf("orders_2024-v2").unwrap(), "table.orders_2024-v2");
        for bad in ["", "a.b", "spaced name", "ümlaut", &"x".repeat(65)] {
            assert!(
                matches!(table_cf(bad), Err(Error::InvalidName { what: "table", .. })),
                "{bad:?}"
            );
        }
        assert!(is_table_cf("table.orders"));
        assert!(!is_table_cf("table."));
        assert!(!is_table_cf("orders"));
    }

    #[test]
    fn offset_keys_separate_streams_and_partitions() {
        assert_eq!(offset_key("ab", 1).unwrap(), [2, b'a', b'b', 0, 0, 0, 1]);
        // Without the length prefix "ab"+partition and "a"+("b"...) could collide.
        assert_ne!(
            offset_key("a", 0x6200_0000).unwrap(),
            offset_key("ab", 0).unwrap()
        );
        assert!(offset_key("", 0).is_err());
        assert!(offset_key(&"s".repeat(256), 0).is_err());
        assert!(offset_key(&"s".repeat(255), 0).is_ok());
    }
}
