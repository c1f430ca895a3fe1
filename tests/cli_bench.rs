//! `dedupstore bench`, the real binary: the side-by-side rows (Redis' among them when
//! `redis-server` is installed, a clear line when it is not) answer every delivery, find each
//! message new once and every replayed delivery a duplicate; `bench growth` measures each size
//! and draws them; `bench restart` answers correctly after the reopen and times it; `bench
//! windows` keeps the disk flat as windows pass; bad options are refused with a message and a
//! non-zero exit.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dedupstore"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_row_answers_the_stream_and_finds_its_replay_all_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.json");
    let out = bench(&[
        "--messages",
        "3000",
        "--seed",
        "7",
        "--seconds",
        "20",
        "--durability",
        "buffered",
        "--depth",
        "16",
        "--threads",
        "1,2",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&file);
    let rows = report["rows"].as_array().unwrap();
    let redis = rows.iter().any(|r| r["target"] == "redis");
    if !redis {
        assert!(stdout.contains("no Redis rows: "), "{stdout}");
    }
    // single, batch and transactions for each of dedupstore and RocksDB, four Redis rows (two
    // persistences, single and pipelined), for each thread count.
    assert_eq!(rows.len(), 2 * (6 + if redis { 4 } else { 0 }), "{stdout}");
    let messages = rows[0]["stream"]["new"].as_u64().unwrap();
    assert!((2_000..3_000).contains(&messages), "{messages}");
    for row in rows {
        let name = row["name"].as_str().unwrap();
        assert!(stdout.contains(name), "{name} missing from the table");
        assert_eq!(row["stream"]["ops"], 3000, "{name}");
        assert_eq!(row["stream"]["new"], messages, "{name}");
        assert_eq!(row["replay"]["ops"], 3000, "{name}");
        assert_eq!(row["replay"]["new"], 0, "{name}");
        assert!(
            row["stream"]["ops_per_sec"].as_f64().unwrap() > 0.0,
            "{name}"
        );
        assert!(
            row["stream"]["latency"]["p99_us"].as_f64().unwrap() > 0.0,
            "{name}"
        );
        if row["target"] != "redis" && redis {
            assert!(!row["vs_redis"].as_object().unwrap().is_empty(), "{name}");
        }
    }
    // Each row's directory is removed after it, and the scratch directory at the end.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the JSON is left: {left:?}");
}

#[test]
fn growth_measures_each_size() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("growth.json");
    let out = bench(&[
        "growth",
        "--sizes",
        "5K,20K",
        "--sample",
        "2K",
        "--probes",
        "1K",
        "--batch",
        "100",
        "--memory-budget",
        "13M",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let points = json(&file)["points"].as_array().unwrap().clone();
    assert_eq!(points.len(), 2);
    for (point, ids) in points.iter().zip([5_000, 20_000]) {
        assert_eq!(point["ids"], ids);
        for figure in [
            "fresh_per_sec",
            "duplicates_hot_per_sec",
            "misses_per_sec",
            "disk_bytes_per_id",
        ] {
            assert!(point[figure].as_f64().unwrap() > 0.0, "{figure} at {ids}");
        }
    }
}

/// The font `--plot` uses where Debian, Arch and Fedora install it.
fn font_installed() -> bool {
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn growth_draws_its_plot_or_says_which_font_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("growth.png");
    let out = bench(&[
        "growth",
        "--sizes",
        "2K,8K",
        "--sample",
        "1K",
        "--probes",
        "500",
        "--batch",
        "100",
        "--memory-budget",
        "13M",
        "--dir",
        dir.path().to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if font_installed() {
        assert!(out.status.success(), "{stderr}");
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert!(
            bytes.len() > 10_000,
            "an empty picture: {} bytes",
            bytes.len()
        );
    } else {
        assert!(!out.status.success());
        assert!(stderr.contains("fonts-dejavu-core"), "{stderr}");
    }
}

#[test]
fn restart_answers_correctly_after_the_reopen_and_times_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restart.json");
    let out = bench(&[
        "restart",
        "--ids",
        "20K",
        "--batch",
        "100",
        "--seconds",
        "1",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&file);
    assert_eq!(report["ids"], 20_000);
    let open = report["open_secs"].as_f64().unwrap();
    let first = report["first_answer_secs"].as_f64().unwrap();
    assert!(
        open > 0.0 && first >= open,
        "open {open}, first answer {first}"
    );
    for phase in ["before", "after"] {
        let seconds = report[phase].as_array().unwrap();
        assert_eq!(seconds.len(), 1, "{phase}");
        assert!(seconds[0].as_f64().unwrap() > 0.0, "{phase}: {stdout}");
    }
    assert!(stdout.contains("first correct answer"), "{stdout}");
}

#[test]
fn windows_keep_the_disk_flat_as_they_pass() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("windows.json");
    let out = bench(&[
        "windows",
        "--windows",
        "4",
        "--ids-per-window",
        "50K",
        "--window",
        "600",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ends = json(&file)["ends"].as_array().unwrap().clone();
    assert_eq!(ends.len(), 4);
    let disk = |i: usize| ends[i]["disk_bytes"].as_u64().unwrap();
    // Four windows of marks kept would take about four times the first window's disk; dropped
    // generations keep it near one window's.
    assert!(disk(3) < disk(0) * 3 / 2, "{ends:?}");
    for end in &ends {
        // A window's generations, the one filling and one not yet dropped.
        assert!(end["generations"].as_u64().unwrap() <= 10, "{end}");
    }
}

#[test]
fn bad_options_are_refused_with_a_message() {
    for (args, says) in [
        (&["--threads", "0"][..], "--threads"),
        (&["--seconds=-1"][..], "--seconds"),
        (&["--depth", "0"][..], "--depth"),
        (&["--messages", "10"][..], "--messages"),
        (&["growth", "--sizes", "10M,1M"][..], "ascending"),
        (&["growth", "--sizes", "1.5M"][..], "not a count"),
        (&["restart", "--ids", "1"][..], "at least 2"),
        (&["restart", "--seconds", "0"][..], "--seconds"),
        (&["windows", "--windows", "0"][..], "--windows"),
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
