//! `artifact.url` on a hostile or odd server (issue 23, item 17): a URL is
//! fetched as written, and a download never takes more than the host can
//! spare, even when the body has no length.

use crate::support::archive::{sha256, tar_gz};
use crate::support::endless::Endless;
use crate::support::fleet::Fleet;
use crate::support::http::Http;
use crate::support::project::{ndjson, printed};

#[test]
fn a_url_with_brackets_and_braces_is_fetched_as_written() {
    let archive = tar_gz(&[("README", b"pulled literally")]);
    let path = "/builds/{v1,v2}/app[1].tar.gz";
    let http = Http::serve(&[(path, archive.clone())]);
    let f = Fleet::ssh(1)
        .toml("[strategy]\ncanary = 0")
        .artifact_table(&format!(
            "url = \"{}\"\nsha256 = \"{}\"",
            http.url(path),
            sha256(&archive)
        ))
        .write();
    f.hoist(&["check"]).assert().success();
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert_eq!(f.read_current("web1", "README"), "pulled literally");
    let asked: Vec<String> = http.requests();
    assert!(
        asked.iter().all(|r| r.ends_with(path)),
        "only the URL as written: {asked:?}"
    );
}

#[test]
fn an_endless_body_stops_at_max_size_and_leaves_nothing_behind() {
    let server = Endless::serve();
    let f = Fleet::ssh(1)
        .toml("[strategy]\ncanary = 0")
        .artifact_table(&format!(
            "url = \"{}\"\nsha256 = \"{}\"\nmax_size = \"2MiB\"",
            server.url("/app.tar.gz"),
            "a".repeat(64)
        ))
        .write();
    let out = f.hoist(&["deploy", "--yes", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let failed: Vec<_> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "host_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", printed(&out));
    let said = failed[0].to_string();
    assert!(said.contains("larger than 2097152 bytes"), "{said}");
    assert!(
        server.sent() < 64 * 1024 * 1024,
        "the download was cut short, not read on: {} bytes",
        server.sent()
    );
    let tmp = f.deploy_path("web1").join(".hoist/tmp");
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in .hoist/tmp: {left:?}");
    assert!(f.releases("web1").is_empty(), "nothing unpacked");
}

#[test]
fn max_size_goes_with_url_only() {
    let f = Fleet::local(1)
        .artifact_table("path = \"build\"\nmax_size = \"1GB\"")
        .write();
    let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
    assert!(printed(&out).contains("max_size"), "{}", printed(&out));
}
