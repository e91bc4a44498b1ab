//! Taking one sample of a gate: a local command, a command on each host
//! of the step, or an instant query on Prometheus's HTTP API.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::Hosts;
use super::gate::{Condition, Reading};
use crate::config::analysis::Provider;
use crate::engine::Context;

/// One sample: its reading, the value it saw (for the events and the
/// output) and, when the provider could not answer, why.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub reading: Reading,
    pub value: Value,
    pub error: Option<String>,
}

impl Sample {
    fn error(why: String) -> Sample {
        Sample {
            reading: Reading::Error,
            value: Value::Null,
            error: Some(why),
        }
    }
}

/// What an exit code reads as: 0 pass, 1 fail, else inconclusive.
fn by_exit(code: Option<u32>) -> Reading {
    match code {
        Some(0) => Reading::Pass,
        Some(1) => Reading::Fail,
        _ => Reading::Inconclusive,
    }
}

pub(crate) async fn sample(
    ctx: &Context,
    provider: &Provider,
    hosts: &Hosts<'_>,
    timeout: Duration,
) -> Sample {
    match provider {
        Provider::Command(argv) => local(ctx, argv, hosts, timeout).await,
        Provider::HostCommand(argv) => on_hosts(argv, hosts, timeout).await,
        Provider::Prometheus { url, query, pass } => {
            prometheus(url, query, pass, hosts, timeout).await
        }
    }
}

async fn local(ctx: &Context, argv: &[String], hosts: &Hosts<'_>, timeout: Duration) -> Sample {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(&ctx.config.base_dir)
        .envs(hosts.env.iter().map(|(k, v)| (k, v)))
        .env("HOIST_CANARY_HOSTS", hosts.canary_names().join(" "))
        .env("HOIST_BASELINE_HOSTS", hosts.baseline_names().join(" "))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => Sample::error(format!(
            "{} gave no answer within {}",
            argv[0],
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Sample::error(format!("cannot run {}: {e}", argv[0])),
        Ok(Ok(out)) => {
            let code = out.status.code().map(|c| c as u32);
            Sample {
                reading: by_exit(code),
                value: json!(code),
                error: None,
            }
        }
    }
}

/// On every host of the step at once; the worst reading wins (a failure,
/// then an inconclusive answer, then a host that could not answer).
async fn on_hosts(argv: &[String], hosts: &Hosts<'_>, timeout: Duration) -> Sample {
    let command = shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default();
    let runs = futures_util::future::join_all(hosts.step.iter().map(|(node, env)| {
        let dir = format!("{}/current", node.layout.deploy_to.trim_end_matches('/'));
        let script = node.layout.hook(&dir, env, &command);
        async move { (node.name(), node.run_for(&script, None, timeout).await) }
    }))
    .await;
    let mut values = serde_json::Map::new();
    let mut readings = Vec::new();
    let mut errors = Vec::new();
    for (name, ran) in runs {
        match ran {
            Ok(out) => {
                readings.push(by_exit(out.code));
                values.insert(name.to_string(), json!(out.code));
            }
            Err(e) => {
                readings.push(Reading::Error);
                values.insert(name.to_string(), Value::Null);
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    let worst = [Reading::Fail, Reading::Inconclusive, Reading::Error]
        .into_iter()
        .find(|r| readings.contains(r))
        .unwrap_or(Reading::Pass);
    Sample {
        reading: worst,
        value: Value::Object(values),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

async fn prometheus(
    url: &str,
    query: &str,
    pass: &Condition,
    hosts: &Hosts<'_>,
    timeout: Duration,
) -> Sample {
    let canary = hosts.regex(&hosts.canary);
    let baseline = hosts.regex(&hosts.baseline);
    let fill = |canary: &str| {
        query
            .replace("{{canary}}", canary)
            .replace("{{baseline}}", &baseline)
    };
    let asked = async {
        let a = instant(url, &fill(&canary)).await?;
        // Comparing: the same query about the baseline's hosts.
        let b = match pass.compares {
            true => instant(url, &fill(&baseline)).await?,
            false => None,
        };
        Ok::<_, String>((a, b))
    };
    let (a, b) = match tokio::time::timeout(timeout, asked).await {
        Err(_) => return Sample::error(format!("{url} gave no answer within {timeout:?}")),
        Ok(Err(e)) => return Sample::error(e),
        Ok(Ok(values)) => values,
    };
    let value = match pass.compares {
        true => json!({ "canary": a, "baseline": b }),
        false => json!(a),
    };
    let reading = match pass.passes(a, b) {
        Some(true) => Reading::Pass,
        Some(false) => Reading::Fail,
        None => Reading::Inconclusive,
    };
    Sample {
        reading,
        value,
        error: None,
    }
}

/// `query`'s one value (`None`: no series), or why there is none.
async fn instant(url: &str, query: &str) -> Result<Option<f64>, String> {
    let body = get(url, &format!("/api/v1/query?query={}", encode(query))).await?;
    let answer: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url} answered no JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "{url} refused the query: {}",
            answer["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let data = &answer["data"];
    let number = |pair: &Value| pair[1].as_str().and_then(|s| s.parse::<f64>().ok());
    match data["resultType"].as_str() {
        Some("scalar") => Ok(number(&data["result"])),
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => Ok(None),
            Some([one]) => Ok(number(&one["value"])),
            Some(many) => Err(format!(
                "the query gives {} series, not one; wrap it in sum(...)",
                many.len()
            )),
        },
        other => Err(format!(
            "the query gives a {}, not a number",
            other.unwrap_or("nothing")
        )),
    }
}

/// GET `path` of `url` (`http://host:port`), the body of a 2xx answer.
async fn get(url: &str, path: &str) -> Result<Vec<u8>, String> {
    let authority = url.trim_start_matches("http://");
    let authority = authority.split('/').next().unwrap_or(authority);
    let address = match authority.contains(':') {
        true => authority.to_string(),
        false => format!("{authority}:80"),
    };
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {url}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "hoist-analysis")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request to {url}: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .map_err(|e| format!("GET {url}: {e}"))?;
        // Prometheus answers a bad query 400 with a JSON reason.
        if status.is_success() || status.as_u16() == 400 || status.as_u16() == 422 {
            Ok(body)
        } else {
            Err(format!("GET {url} answered {status}"))
        }
    }
    .await;
    driver.abort();
    result
}

/// Percent-encodes a query parameter (everything but the unreserved set).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `names` as a PromQL regex matching exactly them (inside a string
/// literal, so a regex backslash is written twice); none: a regex that
/// matches nothing.
pub(crate) fn regex_of(names: &[&str]) -> String {
    if names.is_empty() {
        return "$^".into();
    }
    names
        .iter()
        .map(|n| {
            n.chars()
                .map(|c| match c {
                    '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
                    | '\\' => format!("\\\\{c}"),
                    c => c.to_string(),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_regexes_match_exactly_the_names() {
        assert_eq!(regex_of(&["web1", "web2"]), "web1|web2");
        assert_eq!(regex_of(&["127.0.0.1:9100"]), "127\\\\.0\\\\.0\\\\.1:9100");
        assert_eq!(regex_of(&[]), "$^");
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode("sum(x{a=~\"b\"})"), "sum%28x%7Ba%3D~%22b%22%7D%29");
        assert_eq!(encode("a b"), "a%20b");
    }

    #[test]
    fn exit_codes_read_as_the_issue_says() {
        assert_eq!(by_exit(Some(0)), Reading::Pass);
        assert_eq!(by_exit(Some(1)), Reading::Fail);
        assert_eq!(by_exit(Some(2)), Reading::Inconclusive);
        assert_eq!(by_exit(None), Reading::Inconclusive);
    }
}
