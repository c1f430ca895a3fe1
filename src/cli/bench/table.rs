//! The bench's table on standard output, and its JSON.

use super::{CompareArgs, Row, Target};
use serde_json::{Value, json};

pub(super) fn print(rows: &[Row]) {
    println!(
        "{:<36} {:>12} {:>9} {:>9} {:>9}   {:>12} {:>9} {:>9} {:>9}",
        "row",
        "stream/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "replay/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs"
    );
    for row in rows {
        let (s, r) = (&row.stream, &row.replay);
        println!(
            "{:<36} {:>12.0} {:>9.1} {:>9.1} {:>9.1}   {:>12.0} {:>9.1} {:>9.1} {:>9.1}",
            row.name,
            s.ops_per_sec,
            s.latency.p50_us,
            s.latency.p99_us,
            s.latency.p999_us,
            r.ops_per_sec,
            r.latency.p50_us,
            r.latency.p99_us,
            r.latency.p999_us,
        );
    }
    let redis: Vec<&Row> = rows.iter().filter(|r| r.target == Target::Redis).collect();
    let phases = [
        ("stream", stream_rate as fn(&Row) -> f64),
        ("replay", replay_rate),
    ];
    for (phase, pick) in phases.into_iter().filter(|_| !redis.is_empty()) {
        println!();
        print!("{:<36}", format!("{phase}: ratio to"));
        for r in &redis {
            print!(" {:>15}", short(r));
        }
        println!();
        for row in rows.iter().filter(|r| r.target != Target::Redis) {
            print!("{:<36}", row.name);
            for r in &redis {
                if r.threads == row.threads {
                    print!(" {:>14.2}x", pick(row) / pick(r));
                } else {
                    print!(" {:>15}", "-");
                }
            }
            println!();
        }
    }
    let raw: Vec<&Row> = rows
        .iter()
        .filter(|r| r.target == Target::Rocksdb)
        .collect();
    if !raw.is_empty() {
        println!();
        println!(
            "{:<36} {:>15} {:>15}",
            "dedupstore over raw RocksDB", "stream", "replay"
        );
        for row in rows.iter().filter(|r| r.target == Target::Dedupstore) {
            let floor = raw.iter().find(|r| {
                r.threads == row.threads && r.api == row.api && r.durability == row.durability
            });
            if let Some(floor) = floor {
                println!(
                    "{:<36} {:>14.2}x {:>14.2}x",
                    row.name,
                    stream_rate(row) / stream_rate(floor),
                    replay_rate(row) / replay_rate(floor),
                );
            }
        }
    }
}

fn stream_rate(row: &Row) -> f64 {
    row.stream.ops_per_sec
}

fn replay_rate(row: &Row) -> f64 {
    row.replay.ops_per_sec
}

/// A Redis row's column heading: persistence, depth and threads.
fn short(row: &Row) -> String {
    format!("{}/{} x{}", row.durability, row.depth, row.threads)
}

/// Every row, each with its ratios (stream and replay) to every Redis row with as many threads.
pub(super) fn json(rows: &[Row], seed: u64, args: &CompareArgs) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut value = json!(row);
            let ratios: serde_json::Map<String, Value> = rows
                .iter()
                .filter(|r| r.target == Target::Redis && r.threads == row.threads)
                .map(|r| {
                    let ratio = json!({
                        "stream": stream_rate(row) / stream_rate(r),
                        "replay": replay_rate(row) / replay_rate(r),
                    });
                    (r.name.clone(), ratio)
                })
                .collect();
            value["vs_redis"] = Value::Object(ratios);
            value
        })
        .collect();
    json!({
        "workload": {
            "messages": args.stream.messages,
            "redeliver_percent": args.stream.redeliver_percent,
            "seed": seed,
            "depth": args.depth,
            "window_secs": args.window,
            "seconds_per_phase": args.seconds,
        },
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "rows": rows,
    })
}
