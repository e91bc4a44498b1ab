//! `hoist plan`: what a deploy would do, without connecting anywhere.

mod shape;

use serde_json::json;

use crate::config::{Amount, Config, Host, HostTransport, OnFailure, Pause};
use crate::engine::rollout_plan::{
    PlannedWave, RolloutPlan, Shape, Step, Upload, members, selection_waves, zone_sizes,
};
use crate::engine::{blue_green, policy, shared, strategy};
use crate::exit::Exit;
use crate::report::{Event, Level, Reporter, Row, Summary};

fn info(reporter: &dyn Reporter, text: String) {
    reporter.event(&Event::Message {
        level: Level::Info,
        host: None,
        text,
    });
}

/// Says why the plan is refused and ends it: exit 2, as `deploy` would.
fn refuse(reporter: &dyn Reporter, text: String) -> Exit {
    reporter.event(&Event::Message {
        level: Level::Error,
        host: None,
        text,
    });
    reporter.event(&Event::Summary(Summary::without_hosts("plan", 2)));
    reporter.finish();
    Exit::Usage
}

fn list(hooks: &[String]) -> String {
    if hooks.is_empty() {
        "(none)".into()
    } else {
        hooks.join(" && ")
    }
}

/// Shared paths and `[[files]]`: where each lives, and what of the
/// artifact a link replaces. A `[[files]]` source missing for a selected
/// host is exit 2, as it is for `deploy`.
fn app_state(config: &Config, hosts: &[Host], reporter: &dyn Reporter) -> Result<(), Exit> {
    let app = &config.app;
    let shared: Vec<String> = app
        .shared_dirs
        .iter()
        .chain(&app.shared_files)
        .cloned()
        .collect();
    if !shared.is_empty() {
        info(
            reporter,
            format!(
                "shared: {} (in {}/shared/ on each host, linked into every release; never pruned, kept by a rollback)",
                shared.join(", "),
                app.deploy_to
            ),
        );
        let replaced = config
            .artifact
            .as_ref()
            .map(|a| shared::replaced_in_artifact(&a.path, &shared));
        match replaced {
            Some(Ok(held)) => {
                for path in held {
                    reporter.event(&Event::Message {
                        level: Level::Warn,
                        host: None,
                        text: format!(
                            "the artifact holds {path}; in each release it is replaced by the link to shared/{path}"
                        ),
                    });
                }
            }
            Some(Err(e)) => info(reporter, format!("cannot look inside the artifact: {e}")),
            None => {}
        }
    }
    for file in &app.files {
        info(
            reporter,
            format!(
                "file: {} -> {}/{} (mode {:04o}{}), written before the switch",
                file.origin(),
                app.deploy_to,
                file.dest,
                file.mode,
                if file.secret { ", secret" } else { "" }
            ),
        );
    }
    artifact_inside(config, reporter)?;
    if let Err(e) = shared::check_sources(config, hosts) {
        return Err(refuse(reporter, e));
    }
    Ok(())
}

/// What the hosts make of a local artifact's entries: special files are
/// refused (exit 2, as `deploy` does), owners are never kept, and setuid and
/// setgid bits are dropped unless `allow_setuid`.
fn artifact_inside(config: &Config, reporter: &dyn Reporter) -> Result<(), Exit> {
    let Some(spec) = config.artifact.as_ref().filter(|a| a.pull.is_none()) else {
        return Ok(());
    };
    let inside = match crate::artifact::Inside::of(&spec.path) {
        Ok(inside) => inside,
        Err(e) => {
            info(reporter, format!("cannot look inside the artifact: {e:#}"));
            return Ok(());
        }
    };
    if !inside.special.is_empty() {
        return Err(refuse(reporter, inside.refusal(&spec.path)));
    }
    let setuid = if inside.setuid.is_empty() {
        String::new()
    } else {
        let mut named: Vec<&str> = inside.setuid.iter().take(3).map(String::as_str).collect();
        if inside.setuid.len() > 3 {
            named.push("...");
        }
        if spec.allow_setuid {
            format!(
                "; {} keep their setuid/setgid bits (allow_setuid)",
                named.join(", ")
            )
        } else {
            format!(
                "; the setuid/setgid bits of {} are dropped (allow_setuid = true keeps them)",
                named.join(", ")
            )
        }
    };
    info(
        reporter,
        format!(
            "artifact entries: owners are not kept (each file belongs to the user that unpacks it){setuid}"
        ),
    );
    Ok(())
}

/// One host's row of the plan.
fn plan_row(
    reporter: &dyn Reporter,
    host: &Host,
    w: usize,
    wave: &PlannedWave,
    color: Option<&str>,
) {
    let (transport, address, via) = match &host.transport {
        HostTransport::Ssh(t) => (
            "ssh",
            format!("{}@{}:{}", t.user, t.address, t.port),
            t.route(),
        ),
        HostTransport::Local { root } => ("local", root.display().to_string(), None),
    };
    let mut cells = vec![("wave", json!(w)), ("kind", json!(wave.kind.as_str()))];
    if let Some(color) = color {
        cells.push(("color", json!(color)));
    }
    if let Some(group) = &wave.group {
        cells.push(("group", json!(group)));
    }
    if let Some(zone) = &wave.zone {
        cells.push(("zone", json!(zone)));
    }
    cells.extend([
        ("host", json!(host.name)),
        ("upload", json!(wave.upload.as_str())),
        ("transport", json!(transport)),
        ("address", json!(address)),
        ("via", json!(via)),
        ("deploy_to", json!(host.deploy_to)),
    ]);
    reporter.event(&Event::Row(Row {
        table: "plan",
        cells,
        marked: false,
    }));
}

/// `wave 2/4 (batch, 3 hosts): after wave 1: bake 30s; uploads during the bake`.
fn describe_wave(color: Option<&str>, w: usize, wave: &PlannedWave) -> String {
    let color = color.map(|c| format!("{c} ")).unwrap_or_default();
    let before = match wave.before.as_slice() {
        [] if w == 0 => String::new(),
        steps => format!("after wave {w}: {}; ", Step::describe_all(steps)),
    };
    let stage = [("group", &wave.group), ("zone", &wave.zone)]
        .iter()
        .filter_map(|(what, name)| name.as_ref().map(|n| format!("{what} {n}, ")))
        .collect::<String>();
    let floor = match wave.floor {
        Some(f) if f.min > 0 => format!(
            "; keeps at least {} of the zone's {} host(s) in service",
            f.min, f.size
        ),
        _ => String::new(),
    };
    let upload = match wave.upload {
        Upload::InWave => "uploads in its own wave".to_string(),
        Upload::DuringPause => "uploads during that pause".to_string(),
        Upload::DuringPreviousWave => format!("uploads during wave {w}"),
    };
    let once = if wave.once {
        "; its first host runs before_switch_once first"
    } else {
        ""
    };
    format!(
        "{color}wave {} ({stage}{}, {} host(s)): {before}{upload}{once}{floor}",
        w + 1,
        wave.kind.as_str(),
        wave.hosts.len()
    )
}

pub(crate) fn run(
    config: &Config,
    hosts: &[Host],
    until_canary: bool,
    reporter: &dyn Reporter,
) -> Exit {
    let s = &config.strategy;
    if until_canary {
        let judged = selection_waves(config, hosts)
            .and_then(|waves| policy::until_canary(&waves, config.blue_green.is_some()));
        if let Err(e) = judged {
            return refuse(reporter, e);
        }
    }
    let artifact = config
        .artifact
        .as_ref()
        .map(|a| a.path.display().to_string())
        .unwrap_or_else(|| "(none)".into());
    info(
        reporter,
        format!(
            "{} -> {} on {} host(s); artifact {artifact}; keep {} releases",
            config.app.name,
            config.app.deploy_to,
            hosts.len(),
            config.app.keep_releases
        ),
    );
    // Blue-green: a deploy takes one colour (the idle one when it runs), in
    // waves of its own and with no canary; each colour's plan is listed
    // apart, waves numbered within the colour, never as one run of both.
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let sizes = zone_sizes(&config.hosts, hosts, &names);
    let shape = Shape {
        strategy: s,
        canary: s.canary,
        health: hosts.iter().any(|h| h.role.health.is_some()) || !config.analysis.is_empty(),
        once: !config.hooks.before_switch_once.is_empty(),
        until_canary,
        groups: &config.group_strategies,
        traffic: config.traffic.as_ref(),
        zone_sizes: &sizes,
    };
    let of = |shape: Shape, indices: &[usize]| {
        RolloutPlan::of(shape, &members(hosts, indices)).map(|mut plan| {
            plan.throttle = config.hooks.throttle;
            plan
        })
    };
    let plans: Result<Vec<(Option<&str>, RolloutPlan)>, String> = match &config.blue_green {
        Some(bg) => bg
            .colors
            .iter()
            .map(|c| {
                let members: Vec<usize> = (0..hosts.len())
                    .filter(|&i| c.hosts.contains(&hosts[i].name))
                    .collect();
                let shape = Shape {
                    canary: Amount::Hosts(0),
                    ..shape
                };
                // The traffic steps after the colour's last wave, as a
                // deploy runs them when the other colour is live.
                let steps = blue_green::handover(config.traffic.as_ref(), true).steps;
                of(shape, &members).map(|mut plan| {
                    plan.then.extend(steps.into_iter().map(Step::Traffic));
                    (Some(c.name.as_str()), plan)
                })
            })
            .collect(),
        None => {
            let all: Vec<usize> = (0..hosts.len()).collect();
            of(shape, &all).map(|plan| vec![(None, plan)])
        }
    };
    let plans = match plans {
        Ok(plans) => plans,
        Err(refusal) => return refuse(reporter, refusal),
    };
    for (color, plan) in &plans {
        let mut event = plan.to_json(|i| hosts[i].name.clone());
        if let Some(color) = color {
            event["color"] = json!(color);
        }
        reporter.event(&Event::RolloutPlan(event));
        for (w, wave) in plan.waves.iter().enumerate() {
            for &i in &wave.hosts {
                plan_row(reporter, &hosts[i], w + 1, wave, *color);
            }
        }
        for (w, wave) in plan.waves.iter().enumerate() {
            info(reporter, describe_wave(*color, w, wave));
        }
        if !plan.then.is_empty() {
            let last = plan.waves.len();
            info(
                reporter,
                format!(
                    "after {}wave {last}: {}",
                    color.map(|c| format!("{c} ")).unwrap_or_default(),
                    Step::describe_all(&plan.then)
                ),
            );
        }
    }
    let waves: Vec<(Option<&str>, &PlannedWave)> = plans
        .iter()
        .flat_map(|(c, p)| p.waves.iter().map(move |w| (*c, w)))
        .collect();
    if let Some(bg) = &config.blue_green {
        let [first, second] = &bg.colors;
        let count = |c: &str| waves.iter().filter(|(color, _)| *color == Some(c)).count();
        let first_live = match &bg.live {
            Some(live) => format!(
                "until a switch is recorded {live} counts as live, so a first deploy goes to the other colour"
            ),
            None => format!("a first deploy goes to {}", first.name),
        };
        info(
            reporter,
            format!(
                "blue-green: {} ({}) and {} ({}); a deploy goes to the idle colour only (the one the hosts' journals do not name live, see `hoist status`; {first_live}), in {} wave(s) for {} or {} for {}, with no canary and no question: the whole idle colour must pass its health check before it takes traffic; then {}",
                first.name,
                first.hosts.join(", "),
                second.name,
                second.hosts.join(", "),
                count(first.name.as_str()),
                first.name,
                count(second.name.as_str()),
                second.name,
                handover_words(config, bg)
            ),
        );
    }
    let describe = |pause: &Pause| {
        // A timed pause is when the next wave's hosts get their upload.
        let ahead = if pause.is_timed() {
            " (the next wave uploads meanwhile)"
        } else {
            ""
        };
        match pause {
            Pause::Manual => "ask before promoting (--yes promotes)".to_string(),
            Pause::For(d) => format!("wait {}{ahead}", humantime::format_duration(*d)),
        }
    };
    let pause = describe(&s.canary_pause);
    let between = if s.batch_pause.is_zero() {
        // Then each batch wave uploads while the one before it finishes,
        // but for the wave after the one that runs before_switch_once.
        let once = if shape.once {
            ", but for the wave after the one that runs before_switch_once"
        } else {
            ""
        };
        format!("none (the next wave uploads once this one has{once})")
    } else {
        describe(&Pause::For(s.batch_pause))
    };
    let shape = match &config.blue_green {
        Some(_) => format!("between waves: {between}"),
        None => format!(
            "{} wave(s); after the canary: {pause}; between batches: {between}",
            waves.len()
        ),
    };
    info(
        reporter,
        format!("{shape}; at most {} host(s) at once", s.parallel),
    );
    if let Some(line) = shape::traffic_line(config) {
        info(reporter, line);
    }
    for line in shape::analysis_lines(config) {
        info(reporter, line);
    }
    if let Err(exit) = app_state(config, hosts, reporter) {
        return exit;
    }
    let h = &config.hooks;
    info(
        reporter,
        format!(
            "hooks: before_switch_once: {}; before_switch: {}; after_switch: {}; after_rollback: {}{}",
            list(&h.before_switch_once),
            list(&h.before_switch),
            list(&h.after_switch),
            list(&h.after_rollback),
            match &h.become_user {
                Some(user) =>
                    format!(" (remote hooks and the health command run as {user} through sudo)"),
                None => String::new(),
            }
        ),
    );
    info(
        reporter,
        format!(
            "run hooks: on_start_local: {}; on_success_local: {}; on_failure_local: {}",
            list(&h.on_start_local),
            list(&h.on_success_local),
            list(&h.on_failure_local)
        ),
    );
    info(
        reporter,
        format!(
            "local hooks: before_batch_local: {}; after_batch_local: {}",
            list(&h.before_batch_local),
            list(&h.after_batch_local)
        ),
    );
    if !h.drain_local.is_empty() {
        info(
            reporter,
            format!(
                "drain: per host, drain_local: {}, then wait {}, before it is touched; undrain_local: {} once its health check passed (a failed host stays drained until it is back on its previous release); the same around each switch back",
                list(&h.drain_local),
                humantime::format_duration(h.drain_wait),
                list(&h.undrain_local)
            ),
        );
    }
    info(
        reporter,
        format!("health: {}", shape::describe_health(config.health.as_ref())),
    );
    shape::lines(config, hosts, reporter);
    let allowed = strategy::failures_allowed(s.max_failures, hosts.len());
    info(
        reporter,
        format!(
            "on failure: {} once more than {allowed} host(s) fail",
            match s.on_failure {
                OnFailure::Rollback if config.blue_green.is_none() =>
                    "every switched host goes back to its previous release, the wave that failed first (before its after_batch_local), then the others in reverse order, each wave between the batch hooks",
                OnFailure::Rollback => "every switched host goes back to its previous release",
                OnFailure::Stop => "stop and leave hosts as they are",
            }
        ),
    );
    info(reporter, deadman_line(s.deadman_timeout));
    if let Some(relay) = &config.relay {
        info(reporter, relay_line(relay.fanout, hosts.len()));
    }
    if config.blue_green.is_none() {
        let sizes: Vec<String> = strategy::waves(hosts.len(), s.canary, &s.batch)
            .iter()
            .map(|w| w.hosts.len().to_string())
            .collect();
        info(
            reporter,
            format!(
                "rollback: `hoist rollback` goes back in {} wave(s) of {} host(s) (the canary's host first), before_batch_local and after_batch_local around each, the health check between waves, no pause; `hoist rollback --all-at-once` switches all {} host(s) together without the batch hooks",
                sizes.len(),
                sizes.join(", "),
                hosts.len()
            ),
        );
    }
    reporter.event(&Event::Summary(Summary::without_hosts("plan", 0)));
    reporter.finish();
    Exit::Ok
}

/// What a blue-green deploy does once the idle colour is healthy, and
/// what `hoist rollback` does, in words.
fn handover_words(config: &Config, bg: &crate::config::BlueGreen) -> String {
    let switch = list(&bg.switch_local);
    match &config.traffic {
        None => format!(
            "switch_local: {switch} with HOIST_COLOR, then that colour is probed once more and traffic switched back if it fails; `hoist rollback` runs switch_local for the other colour and changes no host"
        ),
        Some(t) => format!(
            "the traffic steps ({}, see traffic: below), then switch_local: {switch} with HOIST_COLOR, then that colour is probed once more and the traffic sent back if it fails (set_local at 0%, then switch_local for the old colour); `hoist rollback` runs set_local at 100% to the other colour, then switch_local for it, and changes no host",
            t.describe()
        ),
    }
}

/// What `[relay]` does to a wave of `n` hosts that all need the whole
/// artifact, in words.
fn relay_line(fanout: usize, n: usize) -> String {
    let (seeds, depth) = crate::engine::relay::shape(n, fanout);
    format!(
        "relay: fanout {fanout}; a wave's hosts that need the whole artifact get it from each other: of {n} host(s), {seeds} from here, the rest from a host in {depth} level(s); hosts that would get the same delta get it from each other the same way, a tree per delta, and so do the hosts of uploads made ahead of a wave (hosts that can take a copy are served from here; a host without an SSH client, `ssh` or `dbclient`, relays to none)"
    )
}

/// What `strategy.deadman_timeout` does, in words.
fn deadman_line(timeout: std::time::Duration) -> String {
    if timeout.is_zero() {
        return "dead-man switch: off (deadman_timeout = \"0s\"): a host hoist loses after its switch stays on the new release".into();
    }
    format!(
        "dead-man switch: before its switch each host starts a watchdog that puts it back on its previous release by itself (after_rollback, a self_reverted journal line, the lock freed) unless hoist confirms it within {} (heartbeats while hoist runs; confirmed over a fresh connection once its part is over)",
        humantime::format_duration(timeout)
    )
}
