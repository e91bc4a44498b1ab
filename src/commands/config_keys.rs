//! `hoist config`: every resolved key of the file and where it came from,
//! without connecting anywhere.

use serde_json::json;

use crate::config::{self, Source};
use crate::exit::Exit;
use crate::report::{Event, Level, Reporter, Row, Summary};

pub(super) fn run(source: &Source, reporter: &dyn Reporter) -> Exit {
    let exit = match config::keys(source) {
        Ok(rows) => {
            if let Some(env) = &source.env {
                reporter.event(&Event::Message {
                    level: Level::Info,
                    host: None,
                    text: format!("environment {env}: its [env.{env}] table laid over the file"),
                });
            }
            for row in rows {
                reporter.event(&Event::Row(Row {
                    table: "config",
                    cells: vec![
                        ("key", json!(row.key)),
                        ("value", json!(row.value)),
                        ("source", json!(row.source)),
                    ],
                    marked: false,
                }));
            }
            Exit::Ok
        }
        Err(e) => {
            reporter.event(&Event::Message {
                level: Level::Error,
                host: None,
                text: e.to_string(),
            });
            Exit::Usage
        }
    };
    reporter.event(&Event::Summary(Summary::without_hosts(
        "config",
        exit.code(),
    )));
    reporter.finish();
    exit
}
