//! Temporary plain reporter until the renderers land.
use std::path::PathBuf;
use std::sync::Arc;

use super::{Event, Reporter};

#[derive(Debug, Clone, Copy)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
pub struct ReportOptions {
    pub json: bool,
    pub color: ColorChoice,
    pub quiet: bool,
    pub verbose: bool,
    pub log_file: Option<PathBuf>,
}
struct Stub {
    json: bool,
}
impl Reporter for Stub {
    fn event(&self, e: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(e).unwrap());
        } else {
            eprintln!("{e:?}");
        }
    }
}
pub fn reporter(o: &ReportOptions) -> Arc<dyn Reporter> {
    Arc::new(Stub { json: o.json })
}
