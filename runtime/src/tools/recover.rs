//! `riptide recover FILE [--out FILE]`: finish an MCAP recording cut short by a crash, so that Foxglove and the
//! `mcap` tools (which need the summary and footer a crash leaves out) open it. Everything up to the first
//! unusable record is kept: every chunk the recorder had handed to the OS.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use riptide_msgs::mcap::recover;

/// Arguments of `riptide recover`.
#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// The cut (or finished) MCAP file to read.
    pub file: PathBuf,
    /// Where to write the finished copy (default: `<stem>.recovered.mcap` next to FILE). Never FILE itself.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Write the finished copy and print one line: messages kept, bytes dropped and why the input stopped.
pub fn run(args: &RecoverArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.file));
    if out == args.file {
        bail!("{}: refusing to overwrite the input; pass another --out", out.display());
    }
    let input_bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("{}", args.file.display()))?
        .len();
    // `recover` also refuses an `out` that is the input under another name (a link, `./`).
    let report = recover(&args.file, &out)?;
    let (dropped, why) = match &report.truncation {
        Some(t) => (
            input_bytes.saturating_sub(t.offset),
            format!(" from byte {} on ({})", t.offset, t.reason),
        ),
        None => (0, " (input was complete)".to_string()),
    };
    println!(
        "{}: kept {} messages on {} channels and {} metadata records, dropped {dropped} bytes{why}",
        out.display(),
        report.messages,
        report.channels,
        report.metadata,
    );
    Ok(())
}

/// `<dir>/<stem>.recovered.mcap` for `<dir>/<stem>.mcap`.
fn default_out(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "recording".into(), |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.recovered.mcap"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_out_sits_next_to_the_input() {
        assert_eq!(
            default_out(Path::new("/data/ep_3.mcap")),
            PathBuf::from("/data/ep_3.recovered.mcap")
        );
        assert_eq!(default_out(Path::new("ep")), PathBuf::from("ep.recovered.mcap"));
    }
}
