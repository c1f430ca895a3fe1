//! `dedupstore checkpoint` and `dedupstore restore`: a closed store to a checkpoint destination
//! and back, with progress bars.

use super::bytes_bar;
use dedupstore::checkpoint::{self, Checkpoints, MANIFEST_FILE, Manifest, Transfer};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The store's directory (the store must not be open).
    dir: PathBuf,
    /// The destination: a local or mounted directory, created if missing.
    dest: PathBuf,
    /// A `/`-separated path inside the destination, such as `orders/7`.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Keep only this many checkpoints under the prefix, removing older ones and the files
    /// no kept checkpoint holds.
    #[arg(long)]
    keep: Option<usize>,
    /// Print what was published as JSON instead of prose.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A destination directory (the newest checkpoint under `--prefix` is restored), or one
    /// checkpoint's directory (holding `dedupstore.checkpoint.json`).
    src: PathBuf,
    /// The store's directory to create (it must not exist, or be empty).
    dir: PathBuf,
    /// A `/`-separated path inside the destination, such as `orders/7`.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Restore this checkpoint rather than the newest (a name `checkpoint` printed).
    #[arg(long)]
    name: Option<String>,
    /// Print the restored checkpoint's manifest as JSON instead of prose.
    #[arg(long)]
    json: bool,
}

pub fn checkpoint(args: &CheckpointArgs) -> Result<ExitCode, Box<dyn Error>> {
    let destination = Checkpoints::local(&args.dest)?.at(&args.prefix)?;
    let staging = staging_dir(&args.dir)?;
    let copying = bytes_bar(0, "copying");
    let manifest = checkpoint::from_closed(&args.dir, &staging, |t| advance(&copying, t));
    copying.finish_and_clear();
    let manifest = manifest?;
    let uploading = bytes_bar(manifest.bytes(), "publishing");
    let published = destination.publish(&staging, |t| advance(&uploading, t));
    uploading.finish_and_clear();
    let removed = std::fs::remove_dir_all(&staging);
    let published = published?;
    removed.map_err(|e| format!("removing {}: {e}", staging.display()))?;
    let pruned = args.keep.map(|keep| destination.prune(keep)).transpose()?;
    if args.json {
        let summary = serde_json::json!({
            "name": published.name,
            "uploaded_files": published.uploaded_files,
            "uploaded_bytes": published.uploaded_bytes,
            "reused_files": published.reused_files,
            "pruned_checkpoints": pruned.map(|p| p.checkpoints),
            "manifest": published.manifest,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "checkpoint {} published to {}",
            published.name,
            args.dest.display()
        );
        describe(&published.manifest);
        println!(
            "  sent {} files ({} bytes); {} files were there already",
            published.uploaded_files, published.uploaded_bytes, published.reused_files
        );
        if let Some(p) = pruned {
            println!(
                "  pruned {} older checkpoints and {} files ({} bytes)",
                p.checkpoints, p.files, p.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: &RestoreArgs) -> Result<ExitCode, Box<dyn Error>> {
    let (source, manifest) = if args.src.join(MANIFEST_FILE).exists() {
        let manifest = checkpoint::restore(&args.src, &args.dir)?;
        (args.src.display().to_string(), manifest)
    } else {
        let destination = Checkpoints::local(&args.src)?.at(&args.prefix)?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => match destination.list()?.pop() {
                Some(name) => name,
                None => {
                    return Err(format!(
                        "no checkpoint under {} (prefix {:?})",
                        args.src.display(),
                        args.prefix
                    )
                    .into());
                }
            },
        };
        let total = destination.manifest(&name)?.bytes();
        let bar = bytes_bar(total, "restoring");
        let restored = destination.restore(&name, &args.dir, |t| advance(&bar, t));
        bar.finish_and_clear();
        (format!("checkpoint {name}"), restored?)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        println!("restored {source} into {}", args.dir.display());
        describe(&manifest);
    }
    Ok(ExitCode::SUCCESS)
}

fn advance(bar: &indicatif::ProgressBar, t: Transfer) {
    bar.set_length(t.total);
    bar.set_position(t.bytes);
}

/// A staging directory beside the store (on its file system), for the checkpoint to publish.
fn staging_dir(store: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let name = store
        .file_name()
        .ok_or_else(|| format!("{} names no directory", store.display()))?;
    let parent = store.parent().unwrap_or(Path::new("."));
    Ok(parent.join(format!(
        ".{}.checkpoint-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn describe(m: &Manifest) {
    println!(
        "  {} marks, {} files, {} bytes; window {} ms; taken at {} ms",
        m.marks,
        m.files.len(),
        m.bytes(),
        m.window_ms,
        m.taken_ms
    );
    for o in &m.offsets {
        println!("  offset {}/{}: {}", o.stream, o.partition, o.offset);
    }
    println!(
        "  outbox: next sequence {}, {} events pending",
        m.outbox.next_seq, m.outbox.pending
    );
}
