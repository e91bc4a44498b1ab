//! Writes hoist's man pages into a directory, one per command: `hoist.1`,
//! `hoist-deploy.1`, `hoist-rollback.1`, … They are made from the clap
//! definitions `hoist --help` prints, so the two never disagree.
//!
//! ```sh
//! cargo run --example man -- target/man
//! MANPAGER=cat man -l target/man/hoist-deploy.1
//! ```
//!
//! `examples/package.sh` runs it for the release archives and the .deb.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/man"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    clap_mangen::generate_to(hoist::command(), &dir)?;
    let mut pages: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| n.to_string_lossy().ends_with(".1"))
        .collect();
    pages.sort();
    for page in pages {
        println!("{}", dir.join(page).display());
    }
    Ok(())
}
