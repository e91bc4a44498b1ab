use std::io::Write;
use std::path::Path;

use crate::config::INIT_TEMPLATE as TEMPLATE;

/// Writes the starter file; never overwrites.
pub fn run(path: &Path) -> i32 {
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
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} already exists; hoist init never overwrites",
                path.display()
            );
            2
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            2
        }
    }
}
