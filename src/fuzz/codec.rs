//! The `codec` target: arbitrary bytes into every decoder of what the store reads back from
//! disk. The first byte picks the decoder.

use crate::error::Error;
use crate::persist::generations::Generation;
use crate::persist::layout::{decode_u64, is_table_cf, table_cf};
use crate::persist::meta::Meta;
use crate::persist::{MarkValue, ProducerRecord};
use std::path::Path;

/// Decodes `data[1..]` as the stored value `data[0]` picks. A decoder must return a value that
/// encodes back to the same bytes, or `Error::Corruption` (`IncompatibleFormat` for a meta
/// record of another format version); a panic anywhere is a finding.
pub fn codec(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        // The meta record.
        0 => match Meta::decode(bytes, Path::new("fuzz")) {
            Ok(meta) => assert_eq!(meta.encode().as_slice(), bytes),
            Err(Error::Corruption { .. } | Error::IncompatibleFormat { .. }) => {}
            Err(other) => panic!("meta record: {other:?}"),
        },
        // Column family names, as RocksDB lists them at open.
        1 => {
            let name = String::from_utf8_lossy(bytes);
            match Generation::parse(&name) {
                Some(Ok(g)) => {
                    assert_eq!(g.name, name, "a generation's name is canonical");
                    assert!(g.start < g.end);
                    assert!(!is_table_cf(&name));
                }
                Some(Err(detail)) => assert!(detail.contains("malformed")),
                None => {}
            }
            if let Some(table) = name.strip_prefix("table.") {
                assert_eq!(is_table_cf(&name), table_cf(table).is_ok());
            }
        }
        // A mark's value: its time, payload fingerprint and stored result.
        4 => match MarkValue::decode(bytes, || "fuzz".into()) {
            Ok(mark) => assert_eq!(mark.encode(), bytes),
            Err(Error::Corruption { what, .. }) => assert_eq!(what, "fuzz"),
            Err(other) => panic!("mark value: {other:?}"),
        },
        // A producer's record: its high-water mark and last accept time.
        5 => match ProducerRecord::decode(b"fuzz", bytes) {
            Ok(record) => assert_eq!(record.encode().as_slice(), bytes),
            Err(Error::Corruption { what, .. }) => assert!(what.contains("\"fuzz\"")),
            Err(other) => panic!("producer record: {other:?}"),
        },
        // Offsets, outbox keys, the outbox sequence, the clock high-water mark: all
        // are u64 big-endian.
        _ => match decode_u64(bytes, || "fuzz".into()) {
            Ok(v) => assert_eq!(v.to_be_bytes().as_slice(), bytes),
            Err(Error::Corruption { what, .. }) => assert_eq!(what, "fuzz"),
            Err(other) => panic!("u64: {other:?}"),
        },
    }
}
