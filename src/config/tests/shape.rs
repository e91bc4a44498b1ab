//! Fleets with shape: zones, group overrides, ordered groups, throttles.

use super::*;

/// 3 zones (a, b, c) of web and worker hosts; `rest` goes after.
fn fleet(rest: &str) -> String {
    with_app(&format!(
        r#"[groups.az-a]
hosts = ["w1", "k1"]
[groups.az-b]
hosts = ["w2", "k2"]
[groups.web]
hosts = ["w1", "w2"]
[groups.worker]
hosts = ["k1", "k2"]
[hooks]
after_switch = ["restart web"]
[health]
http = "http://127.0.0.1:8080/health"
retries = 3
{rest}"#
    ))
}

fn load(text: &str) -> Config {
    Project::new().config(text).ok()
}

#[test]
fn a_group_overrides_hooks_health_and_diagnose_key_by_key_for_its_hosts_only() {
    let config = load(&fleet(
        r#"[diagnose]
commands = ["df -h"]
[groups.worker.hooks]
after_switch = ["restart worker"]
[groups.worker.health]
enabled = false
[groups.web.health]
interval = "1s"
[groups.worker.diagnose]
commands = ["journalctl -u worker"]
"#,
    ));
    let (web, worker) = (&host(&config, "w1").role, &host(&config, "k1").role);
    assert_eq!(web.hooks.after_switch, ["restart web"]);
    assert_eq!(worker.hooks.after_switch, ["restart worker"]);
    // after_rollback follows the host's own after_switch when not written.
    assert_eq!(worker.hooks.after_rollback, ["restart worker"]);
    let health = web.health.as_ref().unwrap();
    assert_eq!(
        health.check,
        HealthCheck::Http("http://127.0.0.1:8080/health".into())
    );
    assert_eq!(
        (health.retries, health.interval),
        (3, Duration::from_secs(1))
    );
    assert!(worker.health.is_none());
    assert_eq!(web.diagnose, ["df -h"]);
    assert_eq!(worker.diagnose, ["journalctl -u worker"]);
    assert!(
        worker
            .overrides
            .contains(&("hooks.after_switch".into(), "worker".into()))
    );
    // The top-level tables stay as written.
    assert_eq!(config.hooks.after_switch, ["restart web"]);
}

#[test]
fn a_group_check_without_a_top_level_one_takes_the_default_tuning() {
    let config = load(&with_app(
        "[groups.web]\nhosts = [\"w1\"]\n[hosts.k1]\n[groups.web.health]\ncommand = \"true\"\n",
    ));
    let web = host(&config, "w1").role.health.clone().unwrap();
    assert_eq!(web, Health::new(HealthCheck::Command("true".into())));
    assert!(host(&config, "k1").role.health.is_none());
}

#[test]
fn two_groups_of_a_host_that_disagree_on_a_key_are_an_error_naming_both_and_the_key() {
    let text = fleet(
        "[groups.az-a.hooks]\nafter_switch = [\"one\"]\n[groups.web.hooks]\nafter_switch = [\"two\"]\n",
    );
    let err = Project::new().config(&text).err();
    for needle in ["host `w1`", "`az-a`", "`web`", "`hooks.after_switch`"] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    // The same value twice is no conflict.
    load(&fleet(
        "[groups.az-a.hooks]\nafter_switch = [\"one\"]\n[groups.web.hooks]\nafter_switch = [\"one\"]\n",
    ));
    assert_err(
        &fleet("[groups.az-a.health]\nenabled = false\n[groups.web.health]\ncommand = \"true\"\n"),
        &["`health.check`", "`az-a`", "`web`"],
    );
    assert_err(
        &fleet(
            "[strategy]\norder = [\"web\", \"worker\", \"az-a\"]\n[groups.web.strategy]\nbatch = 1\n[groups.az-a.strategy]\nbatch = 2\n",
        ),
        &["host `w1`", "`web`", "`az-a`", "`strategy.batch`"],
    );
}

#[test]
fn group_tables_are_strict_and_name_their_accepted_keys() {
    assert_err(
        &fleet("[groups.web.hooks]\nafter_swich = []\n"),
        &["`groups.web.hooks.after_swich`", "after_switch", "throttle"],
    );
    assert_err(
        &fleet("[groups.web.strategy]\nbatch_pause = \"1s\"\n"),
        &[
            "`groups.web.strategy.batch_pause`",
            "canary, batch, parallel",
        ],
    );
    assert_err(
        &fleet("[hooks.throttle]\nafter_swtch = 2\n"),
        &[
            "`hooks.throttle.after_swtch`",
            "before_switch, after_switch, after_rollback",
        ],
    );
    assert_err(
        &fleet("[groups.worker.health]\nenabled = false\nretries = 2\n"),
        &["groups.worker.health.enabled", "without a health check"],
    );
    assert_err(
        &with_app("[groups.web]\nhosts = [\"w1\"]\n[groups.web.health]\nretries = 2\n"),
        &["`health.retries`", "has no health check"],
    );
}

#[test]
fn zones_come_from_a_host_var_sorted_or_from_listed_groups_in_their_order() {
    let by_var = load(&with_app(
        r#"[hosts.a]
vars = { zone = "z2" }
[hosts.b]
vars = { zone = "z1" }
[hosts.c]
vars = { zone = "z1" }
[hosts.d]
vars = { zone = "z2" }
[strategy]
wave_by = "zone"
first_zone_bake = "10m"
min_healthy_per_zone = "50%"
"#,
    ));
    let zones = by_var.strategy.zones.clone().unwrap();
    assert_eq!(zones.order, ["z1", "z2"]);
    assert_eq!(zones.first_zone_bake, Duration::from_secs(600));
    assert_eq!(zones.zone_bake, Duration::ZERO);
    assert_eq!(zones.min_healthy, Amount::Percent(50));
    assert_eq!(host(&by_var, "a").role.zone.as_deref(), Some("z2"));
    let listed = load(&fleet(
        "[strategy]\nwave_by = \"zone\"\nzones = [\"az-b\", \"az-a\"]\nzone_bake = \"1s\"\n",
    ));
    let zones = listed.strategy.zones.clone().unwrap();
    assert_eq!(zones.order, ["az-b", "az-a"]);
    assert_eq!(host(&listed, "k2").role.zone.as_deref(), Some("az-b"));
    assert!(load(&fleet("")).strategy.zones.is_none());
}

#[test]
fn every_host_is_in_exactly_one_zone() {
    assert_err(
        &with_app("[hosts.a]\n[strategy]\nwave_by = \"zone\"\n"),
        &["host `a` has no zone", "vars"],
    );
    assert_err(
        &fleet("[hosts.x]\n[strategy]\nwave_by = \"zone\"\nzones = [\"az-a\", \"az-b\"]\n"),
        &["host `x` is in none of the zones"],
    );
    assert_err(
        &fleet("[strategy]\nwave_by = \"zone\"\nzones = [\"az-a\", \"web\"]\n"),
        &["host `w1` is in zones `az-a` and `web`"],
    );
    assert_err(
        &fleet("[strategy]\nwave_by = \"zone\"\nzones = [\"az-q\"]\n"),
        &["\"az-q\" is not a group"],
    );
    assert_err(
        &fleet("[strategy]\nzone_bake = \"1m\"\n"),
        &["strategy.zone_bake", "wave_by = \"zone\""],
    );
    assert_err(
        &fleet(
            "[strategy]\nwave_by = \"zone\"\nzones = [\"az-a\", \"az-b\"]\nmin_healthy_per_zone = 2\n",
        ),
        &[
            "strategy.min_healthy_per_zone",
            "zone az-a has 2 host(s)",
            "none of it could ever be deployed",
        ],
    );
    assert_err(
        &fleet("[strategy]\nwave_by = \"zones\"\n"),
        &["strategy.wave_by", "\"host\", \"zone\""],
    );
}

#[test]
fn ordered_groups_must_exist_and_hold_every_host() {
    let config = load(&fleet(
        "[strategy]\norder = [\"worker\", \"web\"]\n[groups.worker.strategy]\ncanary = 0\nbatch = 1\n",
    ));
    assert_eq!(config.strategy.order, ["worker", "web"]);
    let own = config.group_strategies.get("worker").unwrap();
    let worker = config.strategy.for_group(Some(own));
    assert_eq!(
        (worker.canary, worker.batch),
        (Amount::Hosts(0), vec![Amount::Hosts(1)])
    );
    assert_eq!(worker.parallel, config.strategy.parallel);
    assert_err(
        &fleet("[hosts.x]\n[strategy]\norder = [\"worker\", \"web\"]\n"),
        &["strategy.order", "in none: x"],
    );
    assert_err(
        &fleet("[strategy]\norder = [\"web\", \"web\"]\n"),
        &["\"web\" is listed twice"],
    );
    // A group's own waves exist only when it deploys on its own.
    assert_err(
        &fleet("[groups.worker.strategy]\nbatch = 1\n"),
        &["groups.worker.strategy", "add \"worker\" to strategy.order"],
    );
}

#[test]
fn throttles_are_read_fleet_wide_and_per_group() {
    let config = load(&fleet(
        "[hooks.throttle]\nafter_switch = 2\n[groups.worker.hooks]\nthrottle = { before_switch = 1 }\n",
    ));
    assert_eq!(config.hooks.throttle.limits(), [("after_switch", 2)]);
    assert_eq!(
        config.group_throttles.get("worker").unwrap().limits(),
        [("before_switch", 1)]
    );
    assert_err(
        &fleet("[hooks.throttle]\nafter_switch = 0\n"),
        &["hooks.throttle.after_switch", ">= 1"],
    );
}

#[test]
fn overrides_may_stay_in_deploy_toml_when_the_groups_live_in_the_inventory() {
    let project = Project::new()
        .config(&format!(
            "inventory = \"hosts.toml\"\n{APP}[groups.worker.hooks]\nafter_switch = [\"restart worker\"]\n"
        ))
        .file("hosts.toml", "[hosts.w1]\n[groups.worker]\nhosts = [\"k1\"]\n");
    let config = project.ok();
    assert_eq!(
        host(&config, "k1").role.hooks.after_switch,
        ["restart worker"]
    );
    assert!(host(&config, "w1").role.hooks.after_switch.is_empty());
}

#[test]
fn zones_and_order_are_refused_for_blue_green() {
    assert_err(
        &fleet(
            "[strategy]\nkind = \"blue-green\"\norder = [\"web\", \"worker\"]\n[blue_green]\ncolors = [\"az-a\", \"az-b\"]\n",
        ),
        &["strategy.order", "blue-green"],
    );
}
