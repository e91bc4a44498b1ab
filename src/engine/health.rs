//! Health checks, after a switch and after a rollback: a command on the host,
//! or an HTTP probe sent from hoist through the host's own connection.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::fleet::Node;
use super::{Context, Failure, sudo, tail_lines};
use crate::config::{Health, HealthCheck};
use crate::report::Phase;

/// Runs the configured check until it passes or its retries run out.
pub async fn check(
    ctx: &Context,
    node: &Node,
    health: &Health,
    env: &[(String, String)],
) -> Result<(), Failure> {
    ctx.phase(node.name(), Phase::Health);
    // Never cut by Ctrl-C: a host whose check started is in flight, and its
    // check finishes (a second Ctrl-C abandons the cleanup).
    tokio::time::sleep(health.grace).await;
    // Like Docker's HEALTHCHECK: `retries` probes in all, the first after `grace`.
    let attempts = health.retries.max(1);
    let mut last = (String::new(), Vec::new());
    for attempt in 1..=attempts {
        match probe_once(ctx, node, health, env).await {
            Ok(()) => return Ok(()),
            Err(reason) => last = reason,
        }
        if attempt < attempts {
            tokio::time::sleep(health.interval).await;
        }
    }
    Err(Failure::Health {
        reason: match attempts {
            1 => last.0,
            n => format!("{} (after {n} attempts)", last.0),
        },
        tail: last.1,
    })
}

/// One probe, bounded by `health.timeout`: `Err` holds why and the
/// command's last lines.
pub async fn probe_once(
    ctx: &Context,
    node: &Node,
    health: &Health,
    env: &[(String, String)],
) -> Result<(), ProbeError> {
    match tokio::time::timeout(health.timeout, probe(ctx, node, &health.check, env)).await {
        Ok(result) => result,
        Err(_) => Err((
            format!(
                "no answer within {}",
                humantime::format_duration(health.timeout)
            ),
            Vec::new(),
        )),
    }
}

pub type ProbeError = (String, Vec<String>);

async fn probe(
    ctx: &Context,
    node: &Node,
    check: &HealthCheck,
    env: &[(String, String)],
) -> Result<(), ProbeError> {
    match check {
        HealthCheck::Command(command) => {
            // In the live release, so `./bin/healthcheck` works.
            let dir = format!("{}/current", node.layout.deploy_to.trim_end_matches('/'));
            let (script, stdin) = sudo::wrap(ctx, node.layout.hook(&dir, env, command));
            let out = node
                .run(&script, stdin)
                .await
                .map_err(|e| (e.to_string(), Vec::new()))?;
            if out.success() {
                Ok(())
            } else {
                Err((
                    format!(
                        "`{command}` exited with {}",
                        out.code.map(|c| c.to_string()).unwrap_or("a signal".into())
                    ),
                    tail_lines(&out.stderr, &out.stdout, 10),
                ))
            }
        }
        HealthCheck::Http(url) => http(node, url).await,
    }
}

async fn http(node: &Node, url: &str) -> Result<(), ProbeError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| (format!("bad health URL {url}: {e}"), Vec::new()))?;
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = node.conn.open_tcp(&host, port).await.map_err(|e| {
        (
            format!("cannot open {host}:{port} through the host: {e}"),
            Vec::new(),
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            (
                format!("HTTP handshake with {host}:{port}: {e}"),
                Vec::new(),
            )
        })?;
    let driver = tokio::spawn(connection);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(hyper::header::USER_AGENT, "hoist-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (format!("GET {url}: {e}"), Vec::new()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let start: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            Err((
                format!("GET {url} answered {status}"),
                start.lines().map(str::to_string).collect(),
            ))
        }
    }
    .await;
    driver.abort();
    result
}
