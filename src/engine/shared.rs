//! What a release gets besides the artifact: shared dirs and files linked
//! into it, and the `[[files]]` of its host, before anything runs in it.

use std::collections::BTreeMap;
use std::fmt;

use futures_util::future::join_all;

use super::app_layout::{self, SharedProblem};
use super::fleet::Node;
use super::preflight::Problem;
use super::{Context, Failed, Failure, at};
use crate::config::{Config, FileFrom, Host};
use crate::release::ReleaseId;
use crate::report::Phase;
use crate::secrets::Secrets;

/// One `[[files]]` entry for one host, read from this machine.
pub(crate) struct HostFile {
    /// Relative to deploy_to.
    pub dest: String,
    pub mode: u32,
    pub secret: bool,
    pub content: Vec<u8>,
}

impl fmt::Debug for HostFile {
    // The content stays out of every message, secret or not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFile")
            .field("dest", &self.dest)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// The `[[files]]` of every selected host, by host name.
#[derive(Debug, Default)]
pub(crate) struct Files(BTreeMap<String, Vec<HostFile>>);

impl Files {
    /// Reads every host's files from this machine: a file, what its
    /// command printed (run by [`Secrets::resolve`]) or the inline text,
    /// templates rendered. A source missing for any host is a usage error
    /// (exit 2) before anything is touched.
    pub fn read(config: &Config, hosts: &[Host], secrets: &Secrets) -> Result<Files, String> {
        let mut all = BTreeMap::new();
        for host in hosts {
            let mut files = Vec::new();
            for spec in &config.app.files {
                let content = content(config, spec, host, secrets)?;
                files.push(HostFile {
                    dest: spec.dest.clone(),
                    mode: spec.mode,
                    secret: spec.secret,
                    content,
                });
            }
            all.insert(host.name.clone(), files);
        }
        Ok(Files(all))
    }

    /// Every host's files, in inventory order.
    pub fn all(&self) -> impl Iterator<Item = &HostFile> {
        self.0.values().flatten()
    }

    pub fn of(&self, host: &str) -> &[HostFile] {
        self.0.get(host).map_or(&[], Vec::as_slice)
    }
}

/// The content of every `secret = true` file of these hosts that can be
/// read here, to be masked in all output (also for commands that send no
/// files, such as `exec`). One that cannot be read is [`Files::read`]'s to
/// report.
pub(crate) fn secret_contents(config: &Config, hosts: &[Host]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for host in hosts {
        for spec in config.app.files.iter().filter(|s| s.secret) {
            if let Ok(content) =
                source(config, spec, host).and_then(|p| std::fs::read(p).map_err(|e| e.to_string()))
            {
                found.push(content);
            }
        }
    }
    found
}

/// The content of `spec` for `host`.
fn content(
    config: &Config,
    spec: &crate::config::FileSpec,
    host: &Host,
    secrets: &Secrets,
) -> Result<Vec<u8>, String> {
    let raw = match &spec.from {
        FileFrom::Path(_) => {
            let path = source(config, spec, host)?;
            std::fs::read(&path).map_err(|e| {
                format!(
                    "[[files]] {} for {}: cannot read {}: {e}",
                    spec.dest,
                    host.name,
                    path.display()
                )
            })?
        }
        FileFrom::Command(_) => {
            let argv = spec
                .command_for(host)
                .expect("a command")
                .map_err(|e| format!("[[files]] {}: {e}", spec.dest))?;
            match secrets.output(&argv) {
                Some(bytes) => bytes.to_vec(),
                None => {
                    return Err(format!(
                        "[[files]] {}: the command was not run (Secrets::resolve)",
                        spec.dest
                    ));
                }
            }
        }
        FileFrom::Content(text) => text.clone().into_bytes(),
    };
    if !spec.template {
        return Ok(raw);
    }
    let text = String::from_utf8(raw)
        .map_err(|_| format!("[[files]] {}: a template must be UTF-8 text", spec.dest))?;
    let rendered = secrets
        .render(&text)
        .map_err(|e| format!("[[files]] {} for {}: {e}", spec.dest, host.name))?;
    Ok(rendered.into_bytes())
}

/// Where `spec`'s source for `host` is on this machine (not yet read).
fn source(
    config: &Config,
    spec: &crate::config::FileSpec,
    host: &Host,
) -> Result<std::path::PathBuf, String> {
    let src = spec
        .source_for(host)
        .map_err(|e| format!("[[files]] {}: {e}", spec.dest))?;
    Ok(config.base_dir.join(src))
}

/// Reads the `[[files]]` of every selected host into the run's context,
/// before anything is touched; `Err` is a usage error (exit 2).
pub(crate) fn load(ctx: &Context) -> Result<(), String> {
    if ctx.files.get().is_some() {
        return Ok(());
    }
    let files = Files::read(&ctx.config, &ctx.hosts, &ctx.secrets)?;
    // What a secret file holds (a rendered template too) is masked.
    for file in files.all().filter(|f| f.secret) {
        ctx.mask.add(&String::from_utf8_lossy(&file.content));
    }
    let _ = ctx.files.set(files);
    Ok(())
}

/// Checks that every `[[files]]` source exists for every selected host
/// (`plan`, `check`): the same judgement as [`Files::read`], without reading.
pub(crate) fn check_sources(config: &Config, hosts: &[Host]) -> Result<(), String> {
    for host in hosts {
        for spec in &config.app.files {
            let FileFrom::Path(_) = spec.from else {
                continue;
            };
            let path = source(config, spec, host)?;
            if let Err(e) = std::fs::metadata(&path) {
                return Err(format!(
                    "[[files]] {} for {}: cannot read {}: {e}",
                    spec.dest,
                    host.name,
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// The shared files a host must already hold: those no `[[files]]` entry writes.
fn required_files(config: &Config) -> Vec<String> {
    config
        .app
        .shared_files
        .iter()
        .filter(|f| {
            let dest = format!("shared/{f}");
            !config.app.files.iter().any(|s| s.dest == dest)
        })
        .cloned()
        .collect()
}

/// Preflight of the shared paths, one round trip per host and only when
/// there are some: what stops each node, by index. Writes nothing.
pub(crate) async fn problems(ctx: &Context, nodes: &[Node]) -> Vec<(usize, Problem)> {
    let app = &ctx.config.app;
    let files = required_files(&ctx.config);
    if app.shared_dirs.is_empty() && files.is_empty() {
        return Vec::new();
    }
    let checks = nodes.iter().enumerate().map(|(i, node)| {
        let files = &files;
        async move {
            let script = app_layout::check_shared(&node.layout, &app.shared_dirs, files);
            match node.must("checking the shared paths", &script, None).await {
                Ok(out) => SharedProblem::parse(&out.stdout_str())
                    .into_iter()
                    .map(|p| (i, Problem::Shared(p)))
                    .collect(),
                Err(e) => vec![(i, Problem::Shared(SharedProblem::Unchecked(e.to_string())))],
            }
        }
    });
    join_all(checks).await.into_iter().flatten().collect()
}

/// Links the shared paths into `releases/<id>` and writes the host's
/// `[[files]]`: after the upload, before any hook runs in the release.
pub(crate) async fn prepare(ctx: &Context, node: &Node, id: &ReleaseId) -> Result<(), Failed> {
    let app = &ctx.config.app;
    let mine = match ctx.files.get() {
        Some(files) => files.of(node.name()),
        None if app.files.is_empty() => &[],
        None => {
            let unread = Failure::Other("the [[files]] were not read (shared::load)".into());
            return Err(unread.at(Phase::Link));
        }
    };
    if app.shared_dirs.is_empty() && app.shared_files.is_empty() && mine.is_empty() {
        return Ok(());
    }
    ctx.phase(node.name(), Phase::Link);
    for file in mine {
        let script = app_layout::write_file(&node.layout, &file.dest, file.mode, file.secret);
        let stdin = crate::transport::Input::bytes(file.content.clone());
        node.must(&format!("writing {}", file.dest), &script, Some(stdin))
            .await
            .map_err(at(Phase::Link))?;
    }
    if !app.shared_dirs.is_empty() || !app.shared_files.is_empty() {
        let script = app_layout::link_shared(&node.layout, id, &app.shared_dirs, &app.shared_files);
        node.must("linking the shared paths", &script, None)
            .await
            .map_err(at(Phase::Link))?;
    }
    Ok(())
}

/// What `plan` says about one shared path: whether the artifact holds
/// something there, which the link replaces.
pub(crate) fn replaced_in_artifact(
    artifact: &std::path::Path,
    paths: &[String],
) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(artifact).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Ok(paths
            .iter()
            .filter(|p| std::fs::symlink_metadata(artifact.join(p)).is_ok())
            .cloned()
            .collect());
    }
    let name = artifact
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let file = std::fs::File::open(artifact).map_err(|e| e.to_string())?;
    let reader: Box<dyn std::io::Read> = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if name.ends_with(".tar") {
        Box::new(file)
    } else {
        // A single file becomes a release holding just that file.
        return Ok(paths.iter().filter(|p| *p == name).cloned().collect());
    };
    let mut held = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?;
        let path = path.to_string_lossy();
        let path = path.trim_start_matches("./").trim_end_matches('/');
        for p in paths {
            let inside = path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'));
            if inside && !held.contains(p) {
                held.push(p.clone());
            }
        }
    }
    Ok(paths.iter().filter(|p| held.contains(p)).cloned().collect())
}
