//! What the runs at size share: their IDs, counts with suffixes, and what the process and the
//! store's directory hold.

use super::clients::Result;
use std::path::Path;

/// The ID of message `n`: 36 bytes, as the criterion benches' IDs.
pub fn id(n: u64) -> String {
    format!(
        "order-{n:012}-{:016x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// IDs that are never marked: numbers far above any run's.
pub const NEVER_MARKED: u64 = 1 << 40;

/// Parses a count such as `200000`, `200K`, `50M` or `1G` (thousands, millions, billions).
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let (digits, scale) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1_000),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1_000_000),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    digits
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a count such as 200000, 200K, 50M or 1G"))
}

/// Bytes of the files in `dir` (a store's directory is flat).
pub fn disk_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// This process' resident memory in bytes (`VmRSS` of /proc/self/status), if the system
/// reports it.
pub fn resident_bytes() -> Option<u64> {
    proc_field("/proc/self/status", "VmRSS:").map(|kib| kib * 1024)
}

/// Bytes this process has caused to be written to storage (`write_bytes` of /proc/self/io):
/// the write-ahead log, flushes and compactions together. `None` where the system does not
/// account for it.
pub fn written_bytes() -> Option<u64> {
    proc_field("/proc/self/io", "write_bytes:")
}

fn proc_field(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_count("200000"), Ok(200_000));
        assert_eq!(parse_count("200K"), Ok(200_000));
        assert_eq!(parse_count("50M"), Ok(50_000_000));
        assert_eq!(parse_count("1g"), Ok(1_000_000_000));
        assert_eq!(parse_count("10_000"), Ok(10_000));
        for bad in ["", "M", "0", "-5", "1.5M", "99999999999G", "12Q"] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
    }
}
