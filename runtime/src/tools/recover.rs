//! `riptide recover FILE [--out FILE]`: finish an MCAP recording cut by a crash (no summary, no
//! footer) so Foxglove and the `mcap` tools open it; every message that reached the disk is kept.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `riptide recover`: its arguments.
#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// The cut recording.
    pub file: PathBuf,
    /// Where to write the finished file (default: `<stem>.recovered.mcap` next to it).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Write the finished copy and say what it kept.
pub fn run(args: &RecoverArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        args.file.with_file_name(format!("{stem}.recovered.mcap"))
    });
    let r = riptide_msgs::mcap::recover(&args.file, &out)
        .with_context(|| format!("recovering {} into {}", args.file.display(), out.display()))?;
    let cut = match &r.truncation {
        Some(t) => format!("the input was cut ({t:?})"),
        None => "the input was complete".into(),
    };
    println!(
        "{} messages on {} channels, {} metadata records → {} ({cut})",
        r.messages,
        r.channels,
        r.metadata,
        out.display()
    );
    Ok(())
}
