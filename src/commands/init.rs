//! `hoist init`: a commented deploy.toml to start from.

use std::io::Write;
use std::path::Path;

use crate::config::INIT_TEMPLATE as TEMPLATE;
use crate::exit::Exit;

/// Writes the starter file; never overwrites.
pub(crate) fn run(path: &Path) -> Exit {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    match file.and_then(|mut f| f.write_all(TEMPLATE.as_bytes())) {
        Ok(()) => {
            eprintln!(
                "wrote {}: edit [app], [hosts] and [artifact], then run `hoist plan`",
                path.display()
            );
            Exit::Ok
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} already exists; hoist init never overwrites",
                path.display()
            );
            Exit::Usage
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            Exit::Usage
        }
    }
}
