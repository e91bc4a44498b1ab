//! Loading whole files: what a user writes, what the engine gets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::Env;
use super::*;

const APP: &str = "[app]\nname = \"shop\"\ndeploy_to = \"/srv/shop\"\n";

struct Project {
    dir: tempfile::TempDir,
    inventory: Option<String>,
    /// Set by `ssh_config`: HOME is then `<dir>/home`.
    home: Option<PathBuf>,
    /// `-e`
    env: Option<String>,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
            inventory: None,
            home: None,
            env: None,
        }
    }

    /// Writes `~/.ssh/config` under a HOME of this project's own.
    fn ssh_config(mut self, text: &str) -> Project {
        let home = self.dir.path().join("home");
        self = self.file("home/.ssh/config", text);
        self.home = Some(home);
        self
    }

    fn file(self, name: &str, text: &str) -> Project {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn config(self, text: &str) -> Project {
        self.file("deploy.toml", text)
    }

    /// `-e NAME`
    fn with_env(mut self, name: &str) -> Project {
        self.env = Some(name.to_string());
        self
    }

    fn inventory_flag(mut self, value: &str) -> Project {
        self.inventory = Some(value.to_string());
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env() -> Env {
        Env {
            home: Some("/home/me".into()),
            user: "me".into(),
        }
    }

    fn source(&self) -> Source {
        Source {
            config: Some(self.path("deploy.toml")),
            inventory: self.inventory.clone(),
            env: self.env.clone(),
        }
    }

    fn load(&self) -> Result<Config, ConfigError> {
        let mut env = Project::env();
        if let Some(home) = &self.home {
            env.home = Some(home.clone());
        }
        resolve::load(&self.source(), &env)
    }

    fn ok(&self) -> Config {
        self.load().unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(&self) -> String {
        match self.load() {
            Ok(_) => panic!("loaded, but should not have"),
            Err(e) => e.0,
        }
    }
}

fn with_app(rest: &str) -> String {
    format!("{APP}{rest}")
}

fn host<'a>(config: &'a Config, name: &str) -> &'a Host {
    config
        .hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no host {name}"))
}

fn ssh(host: &Host) -> &SshTarget {
    match &host.transport {
        HostTransport::Ssh(t) => t,
        HostTransport::Local { .. } => panic!("{} is local", host.name),
    }
}

fn names(config: &Config) -> Vec<&str> {
    config.hosts.iter().map(|h| h.name.as_str()).collect()
}

fn assert_err(config: &str, needles: &[&str]) {
    let err = Project::new().config(config).err();
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

// --- strictness and messages -------------------------------------------------

#[test]
fn a_typo_in_a_key_is_an_error_naming_it_and_the_accepted_keys() {
    let err = Project::new()
        .config("[app]\nname = \"shop\"\ndeploy_to = \"/srv/shop\"\nkeep_release = 3\n[hosts.a]\n")
        .err();
    assert!(err.contains("unknown key `app.keep_release`"), "{err}");
    assert!(err.contains("line 4, column 1"), "{err}");
    assert!(
        err.contains("accepted keys in [app]: name, deploy_to, keep_releases"),
        "{err}"
    );
    assert!(err.contains("did you mean `keep_releases`?"), "{err}");
    assert!(err.contains("deploy.toml: "), "{err}");
}

#[test]
fn unknown_keys_are_caught_in_every_table() {
    assert_err(
        &with_app("[hosts.\"web1.example.com\"]\nadress = \"x\"\n"),
        &[
            "unknown key `hosts.\"web1.example.com\".adress`",
            "accepted keys in [hosts.\"web1.example.com\"]",
            "address",
            "identity_files",
        ],
    );
    assert_err(
        &with_app("[hosts.a]\n[strategy]\ncanery = 1\n"),
        &["`strategy.canery`", "canary_pause"],
    );
    assert_err(
        &with_app("[hosts.a]\n[sssh]\n"),
        &["unknown key `sssh`", "accepted top-level keys", "inventory"],
    );
    assert_err(
        &with_app("[groups.web]\nhosts = [\"a\"]\nhost = \"x\"\n"),
        &["`groups.web.host`"],
    );
    assert_err(&with_app("[hosts.a]\n[ssh]\nusr = \"x\"\n"), &["`ssh.usr`"]);
    assert_err(
        &with_app("[hosts.a]\n[hooks]\nafter_swich = []\n"),
        &["`hooks.after_swich`"],
    );
    assert_err(
        &with_app("[hosts.a]\n[health]\ncmd = \"x\"\n"),
        &["`health.cmd`"],
    );
    assert_err(
        &with_app("[hosts.a]\n[artifact]\npath = \"x\"\nversio = \"1\"\n"),
        &["`artifact.versio`"],
    );
}

#[test]
fn a_toml_syntax_error_reports_file_and_line() {
    let err = Project::new()
        .config("[app]\nname = \"shop\"\ndeploy_to = /srv\n")
        .err();
    assert!(err.contains("deploy.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn a_wrong_value_says_what_was_expected_with_the_key_path() {
    assert_err(
        &with_app("[hosts.a]\n[strategy]\nparallel = 0\n"),
        &[
            "`strategy.parallel` (line 6",
            "expected a whole number >= 1",
        ],
    );
    assert_err(
        &with_app("[hosts.a]\n[ssh]\nport = \"22\"\n"),
        &[
            "`ssh.port`",
            "expected a port number",
            "found string \"22\"",
        ],
    );
    assert_err(
        &with_app("[hosts.a]\nconnect_timeout = \"soon\"\n"),
        &["`hosts.a.connect_timeout`", "invalid duration"],
    );
    assert_err(
        &with_app("[hosts.a]\n[strategy]\non_failure = \"retry\"\n"),
        &["`strategy.on_failure`", "\"rollback\", \"stop\""],
    );
    assert_err(&with_app("[hosts.a]\nhosts = 3\n"), &["hosts.a.hosts"]);
    assert_err(&format!("{APP}hosts = 3\n"), &["`app.hosts`"]);
    assert_err(
        "hosts = 3\n[app]\nname = \"x\"\ndeploy_to = \"/x\"\n",
        &["`hosts`", "expected a table, found integer 3"],
    );
}

#[test]
fn missing_required_keys_are_named() {
    assert_err(
        "[app]\nname = \"x\"\n[hosts.a]\n",
        &["missing key `app.deploy_to`"],
    );
    assert_err("[hosts.a]\n", &["missing table [app]"]);
}

#[test]
fn a_missing_file_points_at_hoist_init() {
    let err = Project::new().err();
    assert!(err.contains("cannot read the configuration"), "{err}");
    assert!(err.contains("hoist init"), "{err}");
}

// --- defaults ------------------------------------------------------------------

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = Project::new().config(&with_app("[hosts.web1]\n")).ok();
    assert_eq!(config.app.keep_releases, 5);
    let web1 = host(&config, "web1");
    assert_eq!(web1.deploy_to, "/srv/shop");
    assert_eq!(web1.command_timeout, Duration::from_secs(600));
    let t = ssh(web1);
    assert_eq!(t.address, "web1");
    assert_eq!(t.user, "me");
    assert_eq!(t.port, 22);
    assert_eq!(t.host_key_checking, HostKeyChecking::Strict);
    assert_eq!(t.connect_timeout, Duration::from_secs(10));
    assert_eq!(t.keepalive, Duration::from_secs(15));
    assert_eq!(t.identity_files[0], Path::new("/home/me/.ssh/id_ed25519"));
    assert_eq!(t.known_hosts, [PathBuf::from("/home/me/.ssh/known_hosts")]);
    assert!(t.jump.is_empty());
    assert!(!t.identities_only);

    let s = &config.strategy;
    let d = Strategy::default();
    assert_eq!(
        (
            s.canary,
            &s.canary_pause,
            &s.batch,
            s.parallel,
            s.max_failures,
            s.on_failure
        ),
        (
            d.canary,
            &d.canary_pause,
            &d.batch,
            d.parallel,
            d.max_failures,
            d.on_failure
        )
    );
    assert!(config.artifact.is_none());
    assert!(config.health.is_none());
    assert!(config.warnings.is_empty());
    assert!(config.base_dir.is_absolute());
}

#[test]
fn health_defaults() {
    let config = Project::new()
        .config(&with_app("[hosts.a]\n[health]\ncommand = \"true\"\n"))
        .ok();
    let h = config.health.unwrap();
    assert_eq!(h.check, HealthCheck::Command("true".into()));
    assert_eq!(h.retries, 10);
    assert_eq!(h.interval, Duration::from_secs(2));
    assert_eq!(h.timeout, Duration::from_secs(5));
    assert_eq!(h.grace, Duration::ZERO);
}

#[test]
fn after_rollback_defaults_to_after_switch_but_an_empty_list_means_none() {
    let absent = Project::new()
        .config(&with_app(
            "[hosts.a]\n[hooks]\nafter_switch = [\"restart\"]\n",
        ))
        .ok();
    assert_eq!(absent.hooks.after_rollback, ["restart"]);
    let empty = Project::new()
        .config(&with_app(
            "[hosts.a]\n[hooks]\nafter_switch = [\"restart\"]\nafter_rollback = []\n",
        ))
        .ok();
    assert!(empty.hooks.after_rollback.is_empty());
}

#[test]
fn drain_keys_are_read_and_off_by_default() {
    let off = Project::new().config(&with_app("[hosts.a]\n")).ok();
    assert!(off.hooks.drain_local.is_empty() && off.hooks.undrain_local.is_empty());
    assert_eq!(off.hooks.drain_wait, std::time::Duration::ZERO);
    let on = Project::new()
        .config(&with_app(
            "[hosts.a]\n[hooks]\ndrain_local = \"./lb out\"\nundrain_local = [\"./lb in\"]\ndrain_wait = \"5s\"\n",
        ))
        .ok();
    assert_eq!(on.hooks.drain_local, ["./lb out"]);
    assert_eq!(on.hooks.undrain_local, ["./lb in"]);
    assert_eq!(on.hooks.drain_wait, std::time::Duration::from_secs(5));
    assert_err(
        &with_app("[hosts.a]\n[hooks]\ndrain_wiat = \"5s\"\n"),
        &["`hooks.drain_wiat`", "drain_wait", "undrain_local"],
    );
    assert_err(
        &with_app("[hosts.a]\n[hooks]\ndrain_wait = \"soon\"\n"),
        &["`hooks.drain_wait`"],
    );
}

#[test]
fn the_strategy_reads_every_key() {
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\n[strategy]\ncanary = \"10%\"\ncanary_pause = \"2m\"\nbatch = [1, \"50%\"]\n\
             batch_pause = \"5s\"\nparallel = 4\nmax_failures = \"10%\"\non_failure = \"stop\"\n",
        ))
        .ok();
    let s = config.strategy;
    assert_eq!(s.canary, Amount::Percent(10));
    assert_eq!(s.canary_pause, Pause::For(Duration::from_secs(120)));
    assert_eq!(s.batch, [Amount::Hosts(1), Amount::Percent(50)]);
    assert_eq!(s.batch_pause, Duration::from_secs(5));
    assert_eq!(s.parallel, 4);
    assert_eq!(s.max_failures, Amount::Percent(10));
    assert_eq!(s.on_failure, OnFailure::Stop);
}

#[test]
fn deadman_timeout_is_read_defaults_to_a_minute_and_is_strict() {
    let read = |line: &str| {
        Project::new()
            .config(&with_app(&format!("[hosts.a]\n[strategy]\n{line}\n")))
            .ok()
            .strategy
            .deadman_timeout
    };
    assert_eq!(read(""), Duration::from_secs(60));
    assert_eq!(read("deadman_timeout = \"0s\""), Duration::ZERO);
    assert_eq!(read("deadman_timeout = \"90s\""), Duration::from_secs(90));
    assert_err(
        &with_app("[hosts.a]\n[strategy]\ndeadman_timeout = 60\n"),
        &["deadman_timeout", "duration"],
    );
    assert_err(
        &with_app("[hosts.a]\n[strategy]\ndeadman = \"60s\"\n"),
        &["unknown", "deadman_timeout"],
    );
}

#[test]
fn max_unreachable_and_diagnose_are_read() {
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\n[strategy]\nmax_unreachable = \"5%\"\n[diagnose]\ncommands = [\"df -h\", \"uptime\"]\n",
        ))
        .ok();
    assert_eq!(config.strategy.max_unreachable, Amount::Percent(5));
    assert_eq!(config.diagnose, ["df -h", "uptime"]);
    let defaults = Project::new().config(&with_app("[hosts.a]\n")).ok();
    assert_eq!(defaults.strategy.max_unreachable, Amount::Hosts(0));
    assert!(defaults.diagnose.is_empty());
    let err = Project::new()
        .config(&with_app("[hosts.a]\n[diagnose]\ncommand = \"df\"\n"))
        .err();
    assert!(err.contains("unknown key `diagnose.command`"), "{err}");
}

#[test]
fn blue_green_reads_two_colours_and_switch_local() {
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\n[hosts.b]\n[groups.blue]\nhosts = [\"a\"]\n[groups.green]\nhosts = [\"b\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n\
             switch_local = [\"./lb use $HOIST_COLOR\"]\n",
        ))
        .ok();
    assert_eq!(config.strategy.kind, StrategyKind::BlueGreen);
    let bg = config.blue_green.unwrap();
    assert_eq!(bg.colors[0].name, "blue");
    assert_eq!(bg.colors[1].hosts, ["b"]);
    assert_eq!(bg.switch_local, ["./lb use $HOIST_COLOR"]);
}

#[test]
fn blue_green_keys_must_agree() {
    let groups =
        "[hosts.a]\n[hosts.b]\n[groups.blue]\nhosts = [\"a\"]\n[groups.green]\nhosts = [\"b\"]\n";
    for (extra, expected) in [
        (
            "[blue_green]\ncolors = [\"blue\", \"green\"]\n",
            "used only with strategy.kind",
        ),
        (
            "[strategy]\nkind = \"blue-green\"\n",
            "needs a [blue_green] table",
        ),
        (
            "[strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"red\"]\n",
            "\"red\" is not a group",
        ),
        (
            "[strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\"]\n",
            "two different groups",
        ),
        (
            "[strategy]\nkind = \"canary\"\n",
            "\"rolling\", \"blue-green\"",
        ),
    ] {
        let err = Project::new()
            .config(&with_app(&format!("{groups}{extra}")))
            .err();
        assert!(err.contains(expected), "{extra}: {err}");
    }
}

// --- precedence ------------------------------------------------------------------

#[test]
fn precedence_is_defaults_then_ssh_then_group_then_host() {
    let config = Project::new()
        .config(&with_app(
            r#"
[ssh]
user = "ssh-user"
port = 2200
connect_timeout = "20s"

[groups.web]
hosts = ["web1", "web2"]
port = 2300
command_timeout = "1m"

[hosts.web1]
port = 2400
"#,
        ))
        .ok();
    let web1 = host(&config, "web1");
    let web2 = host(&config, "web2");
    // [ssh] over defaults
    assert_eq!(ssh(web1).user, "ssh-user");
    assert_eq!(ssh(web1).connect_timeout, Duration::from_secs(20));
    assert_eq!(ssh(web1).keepalive, Duration::from_secs(15));
    // group over [ssh]
    assert_eq!(ssh(web2).port, 2300);
    assert_eq!(web2.command_timeout, Duration::from_secs(60));
    // host over group
    assert_eq!(ssh(web1).port, 2400);
    assert_eq!(web1.command_timeout, Duration::from_secs(60));
}

#[test]
fn a_hosts_later_group_wins_in_the_order_it_lists_them() {
    let config = Project::new()
        .config(&with_app(
            r#"
[hosts.a]
groups = ["zeta", "alpha"]
vars = { own = "a" }

[hosts.b]
groups = ["alpha", "zeta"]

[groups.alpha]
user = "alpha"
vars = { tier = "alpha", only_alpha = "1" }

[groups.zeta]
user = "zeta"
vars = { tier = "zeta" }
"#,
        ))
        .ok();
    let a = host(&config, "a");
    assert_eq!(a.groups, ["zeta", "alpha"]);
    assert_eq!(ssh(a).user, "alpha");
    assert_eq!(a.vars["tier"], "alpha");
    assert_eq!(a.vars["only_alpha"], "1");
    assert_eq!(a.vars["own"], "a");
    let b = host(&config, "b");
    assert_eq!(ssh(b).user, "zeta");
    assert_eq!(b.vars["tier"], "zeta");
}

#[test]
fn implicit_hosts_take_their_groups_alphabetically_and_host_vars_win() {
    let config = Project::new()
        .config(&with_app(
            r#"
[groups.zeta]
hosts = ["x", "y"]
user = "zeta"
vars = { tier = "zeta" }

[groups.alpha]
hosts = ["x"]
user = "alpha"
vars = { tier = "alpha" }

[hosts.y]
vars = { tier = "mine" }
"#,
        ))
        .ok();
    let x = host(&config, "x");
    assert_eq!(x.groups, ["alpha", "zeta"]);
    assert_eq!(ssh(x).user, "zeta");
    assert_eq!(x.vars["tier"], "zeta");
    assert_eq!(host(&config, "y").vars["tier"], "mine");
}

#[test]
fn jump_can_be_set_and_undone_per_host() {
    let config = Project::new()
        .config(&with_app(
            r#"
[ssh]
jump = "ops@bastion:2222,inner"
[hosts.a]
[hosts.b]
jump = ""
"#,
        ))
        .ok();
    let jump = &ssh(host(&config, "a")).jump;
    assert_eq!(jump.len(), 2);
    assert_eq!(jump[0].user.as_deref(), Some("ops"));
    assert_eq!(jump[0].port, 2222);
    assert_eq!(jump[1].address, "inner");
    assert!(ssh(host(&config, "b")).jump.is_empty());
}

// --- inventory -------------------------------------------------------------------

#[test]
fn groups_bring_implicit_hosts_with_ranges_expanded_and_deduped() {
    let config = Project::new()
        .config(&with_app(
            r#"
[hosts.db1]
address = "10.0.0.5"

[groups.web]
hosts = ["web[01:03].example.com", "web02.example.com"]

[groups.all]
hosts = ["web[01:02].example.com", "db1", "cache"]
"#,
        ))
        .ok();
    assert_eq!(
        names(&config),
        [
            "db1",
            "web01.example.com",
            "web02.example.com",
            "web03.example.com",
            "cache"
        ]
    );
    assert_eq!(
        ssh(host(&config, "web01.example.com")).address,
        "web01.example.com"
    );
    assert_eq!(ssh(host(&config, "db1")).address, "10.0.0.5");
    assert_eq!(
        config.groups["web"],
        [
            "web01.example.com",
            "web02.example.com",
            "web03.example.com"
        ]
    );
    assert_eq!(
        config.groups["all"],
        ["db1", "web01.example.com", "web02.example.com", "cache"]
    );
    assert_eq!(host(&config, "web01.example.com").groups, ["all", "web"]);
}

#[test]
fn groups_named_only_by_hosts_are_groups_too() {
    let config = Project::new()
        .config(&with_app("[hosts.a]\ngroups = [\"eu\"]\n[hosts.b]\n"))
        .ok();
    assert_eq!(config.groups["eu"], ["a"]);
}

#[test]
fn hosts_keep_file_order() {
    let config = Project::new()
        .config(&with_app("[hosts.zz]\n[hosts.aa]\n[hosts.mm]\n"))
        .ok();
    assert_eq!(names(&config), ["zz", "aa", "mm"]);
}

#[test]
fn the_inventory_may_live_in_its_own_file() {
    let project = Project::new()
        .config(&format!("inventory = \"inv/hosts.toml\"\n{APP}"))
        .file(
            "inv/hosts.toml",
            "[ssh]\nuser = \"inv\"\nidentity_files = [\"keys/id\"]\n[hosts.a]\n[groups.g]\nhosts = [\"b\"]\n",
        );
    let config = project.ok();
    assert_eq!(names(&config), ["a", "b"]);
    let a = ssh(host(&config, "a"));
    assert_eq!(a.user, "inv");
    // paths in the inventory file start at its directory
    assert_eq!(a.identity_files, [project.path("inv/keys/id")]);
}

#[test]
fn the_inventory_flag_beats_the_inventory_key() {
    let project = Project::new()
        .config(&format!("inventory = \"prod.toml\"\n{APP}"))
        .file("prod.toml", "[hosts.prod1]\n")
        .file("staging.toml", "[hosts.staging1]\n");
    assert_eq!(names(&project.ok()), ["prod1"]);
    let flag = project.path("staging.toml").display().to_string();
    let project = project.inventory_flag(&flag);
    assert_eq!(names(&project.ok()), ["staging1"]);
}

#[test]
fn hosts_in_both_files_are_an_error() {
    let err = Project::new()
        .config(&format!("inventory = \"hosts.toml\"\n{APP}[hosts.a]\n"))
        .file("hosts.toml", "[hosts.b]\n")
        .err();
    assert!(
        err.contains("[hosts] is defined here and in the inventory"),
        "{err}"
    );
    let err = Project::new()
        .config(&format!(
            "inventory = \"hosts.toml\"\n{APP}[ssh]\nport = 1\n"
        ))
        .file("hosts.toml", "[ssh]\nport = 2\n[hosts.b]\n")
        .err();
    assert!(err.contains("[ssh] is defined here"), "{err}");
}

#[test]
fn ssh_settings_may_stay_in_deploy_toml_with_a_separate_inventory() {
    let config = Project::new()
        .config(&format!(
            "inventory = \"hosts.toml\"\n{APP}[ssh]\nuser = \"d\"\n"
        ))
        .file("hosts.toml", "[hosts.b]\n")
        .ok();
    assert_eq!(ssh(host(&config, "b")).user, "d");
}

#[test]
fn an_inventory_file_is_strict_too() {
    let err = Project::new()
        .config(&format!("inventory = \"hosts.toml\"\n{APP}"))
        .file("hosts.toml", "[hosts.b]\n[app]\n")
        .err();
    assert!(err.contains("hosts.toml: unknown key `app`"), "{err}");
    assert!(err.contains("ssh, hosts, groups"), "{err}");
}

#[test]
fn a_missing_inventory_file_is_named() {
    let err = Project::new()
        .config(&format!("inventory = \"nope.toml\"\n{APP}"))
        .err();
    assert!(
        err.contains("nope.toml: cannot read the inventory"),
        "{err}"
    );
}

#[test]
fn an_exec_inventory_runs_next_to_the_file_and_reads_json() {
    let p = Project::new()
        .file(
            "bin/list-hosts",
            r#"echo '{"ssh": {"user": "ops"}, "hosts": {"web1": {"address": "10.0.0.1", "groups": ["web"], "identity_files": ["keys/web"]}, "db1": {"vars": {"role": "primary"}}}, "groups": {"web": {"port": 2222, "vars": {"tier": "web"}}, "db": {"hosts": ["db1"]}}}'"#,
        )
        .config(&format!("inventory = \"exec:sh bin/list-hosts\"\n{APP}"));
    let config = p.ok();
    assert_eq!(names(&config), ["web1", "db1"], "the output's order");
    let web1 = host(&config, "web1");
    assert_eq!(ssh(web1).address, "10.0.0.1");
    assert_eq!(ssh(web1).user, "ops");
    assert_eq!(ssh(web1).port, 2222);
    assert_eq!(ssh(web1).identity_files, [p.path("keys/web")]);
    assert_eq!(web1.vars["tier"], "web");
    assert_eq!(config.groups["db"], ["db1"]);
    assert_eq!(ssh(web1).source_of("user"), "exec:sh bin/list-hosts [ssh]");
    assert_eq!(
        ssh(web1).source_of("port"),
        "exec:sh bin/list-hosts [groups.web]"
    );
}

#[test]
fn an_exec_inventory_is_as_strict_as_a_file() {
    let p = Project::new()
        .file("list", r#"echo '{"hosts": {"web1": {"prot": 22}}}'"#)
        .config(&format!("inventory = \"exec:sh list\"\n{APP}"));
    let err = p.err();
    assert!(
        err.contains("exec:sh list: unknown key `hosts.web1.prot`") && err.contains("port"),
        "{err}"
    );
    let err = Project::new()
        .config(&format!("inventory = \"exec:\"\n{APP}"))
        .err();
    assert!(err.contains("give a command after exec:"), "{err}");
    let err = Project::new()
        .file("list", "echo 'token expired' >&2; exit 1")
        .config(&format!("inventory = \"exec:sh list\"\n{APP}"))
        .err();
    assert!(
        err.contains("exited with code 1") && err.contains("token expired"),
        "{err}"
    );
}

// --- ~/.ssh/config ---------------------------------------------------------------

const FLEET_SSH_CONFIG: &str = "\
Host bastion
  HostName 192.0.2.10
  User ops
  Port 2200
  IdentityFile ~/.ssh/ops_key
Host web* !web9
  ProxyJump bastion
Host web1
  HostName 10.0.0.11
  User deploy
  Port 2201
  StrictHostKeyChecking accept-new
  UserKnownHostsFile ~/.ssh/fleet_known_hosts
  ConnectTimeout 7
  ServerAliveInterval 20
  IdentitiesOnly yes
  IdentityFile ~/.ssh/web_key
";

#[test]
fn a_host_alias_takes_everything_from_ssh_config() {
    let p = Project::new()
        .ssh_config(FLEET_SSH_CONFIG)
        .config(&with_app("[hosts.web1]\n[hosts.web9]\n"));
    let config = p.ok();
    let home = p.path("home");
    let t = ssh(host(&config, "web1"));
    assert_eq!(t.address, "10.0.0.11");
    assert_eq!(t.user, "deploy");
    assert_eq!(t.port, 2201);
    assert_eq!(t.host_key_checking, HostKeyChecking::AcceptNew);
    assert_eq!(t.known_hosts, [home.join(".ssh/fleet_known_hosts")]);
    assert_eq!(t.connect_timeout, Duration::from_secs(7));
    assert_eq!(t.keepalive, Duration::from_secs(20));
    assert!(t.identities_only);
    assert_eq!(t.identity_files, [home.join(".ssh/web_key")]);
    assert_eq!(t.source_of("address"), "~/.ssh/config (Host web1)");
    assert_eq!(t.source_of("jump"), "~/.ssh/config (Host web* !web9)");
    assert_eq!(t.source_of("command_timeout"), "default");
    // the bastion is looked up by its own alias
    let b = &t.jump[0];
    assert_eq!((b.address.as_str(), b.port), ("192.0.2.10", 2200));
    assert_eq!(b.user.as_deref(), Some("ops"));
    assert_eq!(
        b.identity_files.as_deref(),
        Some(&[home.join(".ssh/ops_key")][..])
    );
    // negated out of the web* block
    let t9 = ssh(host(&config, "web9"));
    assert!(t9.jump.is_empty());
    assert_eq!(t9.address, "web9");
    assert_eq!(t9.source_of("address"), "default (the host's name)");
}

#[test]
fn deploy_toml_beats_ssh_config_which_beats_defaults() {
    let p = Project::new()
        .ssh_config(FLEET_SSH_CONFIG)
        .config(&with_app(
            r#"
[ssh]
user = "from-ssh-table"
[groups.web]
hosts = ["web1"]
connect_timeout = "3s"
[hosts.web1]
port = 22
identity_files = ["~/.ssh/toml_key"]
"#,
        ));
    let config = p.ok();
    let t = ssh(host(&config, "web1"));
    assert_eq!(t.user, "from-ssh-table");
    assert_eq!(t.source_of("user"), "deploy.toml [ssh]");
    assert_eq!(t.port, 22);
    assert_eq!(t.source_of("port"), "deploy.toml [hosts.web1]");
    assert_eq!(t.connect_timeout, Duration::from_secs(3));
    assert_eq!(t.source_of("connect_timeout"), "deploy.toml [groups.web]");
    assert_eq!(
        t.address, "10.0.0.11",
        "ssh_config fills what the file leaves out"
    );
    assert_eq!(t.keepalive, Duration::from_secs(20));
    // the bastion keeps the target's keys, since deploy.toml names them...
    assert_eq!(t.jump[0].identity_files, None);
    // ...but its user is the user deploy.toml gives, not ssh_config's `ops`
    assert_eq!(t.jump[0].user, None);
    // an explicit address is looked up too, after the name
    let p = Project::new()
        .ssh_config("Host 10.9.*\n  User subnet\n  ProxyJump gw\n")
        .config(&with_app("[hosts.app1]\naddress = \"10.9.0.1\"\n"));
    let t = p.ok();
    let t = ssh(host(&t, "app1"));
    assert_eq!(t.user, "subnet");
    assert_eq!(t.jump[0].address, "gw");
    assert_eq!(t.source_of("address"), "deploy.toml [hosts.app1]");
}

#[test]
fn ssh_config_false_leaves_the_file_out_even_when_it_is_broken() {
    let broken = "Host *\n  Port many\n";
    let config = Project::new()
        .ssh_config(broken)
        .config(&with_app("[ssh]\nssh_config = false\n[hosts.web1]\n"))
        .ok();
    let t = ssh(host(&config, "web1"));
    assert_eq!(t.port, 22);
    assert_eq!(t.address, "web1");
    // per host too
    let config = Project::new()
        .ssh_config(FLEET_SSH_CONFIG)
        .config(&with_app(
            "[hosts.web1]\nssh_config = false\n[hosts.web2]\n",
        ))
        .ok();
    assert_eq!(ssh(host(&config, "web1")).address, "web1");
    assert_eq!(ssh(host(&config, "web2")).jump[0].address, "192.0.2.10");
    // used and broken: an error naming the file and the way out
    let err = Project::new()
        .ssh_config(broken)
        .config(&with_app("[hosts.web1]\n"))
        .err();
    assert!(
        err.contains("~/.ssh/config") && err.contains("ssh_config = false"),
        "{err}"
    );
}

#[test]
fn local_hosts_never_read_ssh_config() {
    let config = Project::new()
        .ssh_config("Host *\n  Port many\n")
        .config(&with_app(
            "[hosts.l]\ntransport = \"local\"\nroot = \"x\"\n",
        ))
        .ok();
    assert!(matches!(
        host(&config, "l").transport,
        HostTransport::Local { .. }
    ));
}

#[test]
fn include_and_match_in_the_ssh_config() {
    let p = Project::new()
        .file(
            "home/.ssh/fleet.conf",
            "Host db*\n  HostName %h.internal\n  User dba\n",
        )
        .ssh_config("Include fleet.conf\nMatch exec \"true\"\n  User never\n");
    let config = p.config(&with_app("[hosts.db1]\n")).ok();
    let t = ssh(host(&config, "db1"));
    assert_eq!(t.address, "db1.internal");
    assert_eq!(t.user, "dba");
    assert_eq!(
        config.ssh_config_notes.len(),
        1,
        "{:?}",
        config.ssh_config_notes
    );
}

#[test]
fn local_hosts_live_under_a_root_relative_to_their_file() {
    let project = Project::new()
        .config(&format!("inventory = \"inv/hosts.toml\"\n{APP}"))
        .file(
            "inv/hosts.toml",
            "[hosts.demo1]\ntransport = \"local\"\nroot = \"demo/demo1\"\ncommand_timeout = \"1m\"\n\
             [hosts.demo2]\ntransport = \"local\"\nroot = \"/abs/demo2\"\ndeploy_to = \"/opt/x\"\n",
        );
    let config = project.ok();
    let demo1 = host(&config, "demo1");
    match &demo1.transport {
        HostTransport::Local { root } => {
            assert!(root.is_absolute());
            assert_eq!(root, &project.path("inv/demo/demo1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(demo1.deploy_to, "/srv/shop");
    assert_eq!(demo1.command_timeout, Duration::from_secs(60));
    let demo2 = host(&config, "demo2");
    assert!(
        matches!(&demo2.transport, HostTransport::Local { root } if root == Path::new("/abs/demo2"))
    );
    assert_eq!(demo2.deploy_to, "/opt/x");
}

#[test]
fn local_and_ssh_keys_do_not_mix() {
    assert_err(
        &with_app("[hosts.d]\ntransport = \"local\"\n"),
        &["`hosts.d.transport`", "needs `root`"],
    );
    assert_err(
        &with_app("[hosts.d]\nroot = \"x\"\n"),
        &["`hosts.d.root`", "add transport = \"local\""],
    );
    assert_err(
        &with_app("[hosts.d]\ntransport = \"local\"\nroot = \"x\"\nuser = \"u\"\n"),
        &["`hosts.d.user`", "only SSH hosts"],
    );
    assert_err(
        &with_app("[hosts.d]\ntransport = \"local\"\nroot = \"x\"\naddress = \"h\"\n"),
        &["`hosts.d.address`"],
    );
    assert_err(
        &with_app("[hosts.d]\ntransport = \"tcp\"\n"),
        &["`hosts.d.transport`", "\"ssh\", \"local\""],
    );
}

#[test]
fn host_key_checking_off_is_warned_about_by_host() {
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\nhost_key_checking = \"off\"\n[hosts.b]\n[groups.lab]\nhosts = [\"c\"]\nhost_key_checking = \"off\"\n",
        ))
        .ok();
    assert_eq!(config.warnings.len(), 1);
    let w = &config.warnings[0];
    assert!(w.contains("a, c"), "{w}");
    assert!(!w.contains(" b"), "{w}");
    assert!(w.contains("NOT verified"), "{w}");
}

// --- validation ----------------------------------------------------------------

#[test]
fn app_names_are_checked() {
    for bad in ["my app", "-x", "a/b", ""] {
        assert_err(
            &format!("[app]\nname = {bad:?}\ndeploy_to = \"/x\"\n[hosts.a]\n"),
            &["`app.name` (line 2"],
        );
    }
}

#[test]
fn deploy_to_must_be_a_plain_absolute_path() {
    for (bad, why) in [
        ("srv/x", "absolute"),
        ("/srv/../etc", ".."),
        ("/srv/x\\ny", "line break"),
        ("/", "cannot be /"),
    ] {
        assert_err(
            &format!("[app]\nname = \"x\"\ndeploy_to = \"{bad}\"\n[hosts.a]\n"),
            &["`app.deploy_to`", why],
        );
        assert_err(
            &with_app(&format!("[hosts.a]\ndeploy_to = \"{bad}\"\n")),
            &["`hosts.a.deploy_to`", why],
        );
    }
}

#[test]
fn keep_releases_is_at_least_one() {
    assert_err(
        &format!("{APP}keep_releases = 0\n[hosts.a]\n"),
        &["`app.keep_releases`", ">= 1"],
    );
}

#[test]
fn percentages_are_one_to_a_hundred() {
    for bad in ["\"0%\"", "\"101%\""] {
        assert_err(
            &with_app(&format!("[hosts.a]\n[strategy]\ncanary = {bad}\n")),
            &["`strategy.canary`", "1% to 100%"],
        );
        assert_err(
            &with_app(&format!("[hosts.a]\n[strategy]\nmax_failures = {bad}\n")),
            &["`strategy.max_failures`"],
        );
    }
    assert_err(
        &with_app("[hosts.a]\n[strategy]\nbatch = [1, \"0%\"]\n"),
        &["`strategy.batch`", "ramp step 2"],
    );
}

#[test]
fn the_artifact_must_exist_but_only_when_asked() {
    let project = Project::new().config(&with_app(
        "[hosts.a]\n[artifact]\npath = \"build/app.tgz\"\nversion = \"1.4.2+b7\"\n",
    ));
    let config = project.ok();
    let artifact = config.artifact.as_ref().unwrap();
    assert_eq!(artifact.path, project.path("build/app.tgz"));
    assert_eq!(artifact.version.as_deref(), Some("1.4.2+b7"));
    let err = check_artifact(&config).unwrap_err().0;
    assert!(err.contains("`artifact.path`"), "{err}");
    assert!(err.contains("build/app.tgz"), "{err}");

    let project = project.file("build/app.tgz", "not really");
    check_artifact(&project.ok()).unwrap();
}

#[test]
fn an_artifact_is_a_path_or_a_url_with_its_sha256() {
    let sha = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let config = Project::new()
        .config(&with_app(&format!(
            "[hosts.a]\n[artifact]\nurl = \"https://a.example.com/app-1.tar.gz?sig=x\"\nsha256 = \"{sha}\"\ndelta = false\n"
        )))
        .ok();
    let artifact = config.artifact.as_ref().unwrap();
    let pull = artifact.pull.as_ref().unwrap();
    assert_eq!(pull.sha256, sha.to_ascii_lowercase());
    assert!(pull.gzipped());
    assert!(!artifact.delta);
    // No file here to look for.
    check_artifact(&config).unwrap();
    let config = Project::new()
        .config(&with_app("[hosts.a]\n[artifact]\npath = \"x\"\n"))
        .ok();
    assert!(config.artifact.unwrap().delta, "delta is on by default");

    let url = "url = \"http://h/app.tgz\"";
    for (body, expect) in [
        (
            format!("path = \"x\"\n{url}\nsha256 = \"{sha}\""),
            &["`artifact`", "not both"][..],
        ),
        ("version = \"1\"".to_string(), &["`artifact`", "`url`"][..]),
        (
            url.to_string(),
            &["`artifact.sha256`", "needs `sha256`"][..],
        ),
        (
            format!("{url}\nsha256 = \"abc\""),
            &["`artifact.sha256`", "64 hex"][..],
        ),
        (
            format!("{url}\nsha256 = \"{}\"", "g".repeat(64)),
            &["`artifact.sha256`"][..],
        ),
        (
            format!("path = \"x\"\nsha256 = \"{sha}\""),
            &["`artifact.sha256`", "goes with `url`"][..],
        ),
        (
            format!("url = \"ftp://h/a.tar.gz\"\nsha256 = \"{sha}\""),
            &["`artifact.url`"][..],
        ),
        (
            format!("url = \"http://h/app.zip\"\nsha256 = \"{sha}\""),
            &["`artifact.url`", ".tar.gz"][..],
        ),
        (
            "path = \"x\"\ndelta = \"yes\"".to_string(),
            &["`artifact.delta`"][..],
        ),
    ] {
        assert_err(
            &with_app(&format!("[hosts.a]\n[artifact]\n{body}\n")),
            expect,
        );
    }
}

#[test]
fn the_artifact_version_is_safe() {
    for bad in ["1.0 beta", "$(id)", "-1", "a/b", ""] {
        assert_err(
            &with_app(&format!(
                "[hosts.a]\n[artifact]\npath = \"x\"\nversion = {bad:?}\n"
            )),
            &["`artifact.version`"],
        );
    }
}

#[test]
fn host_and_group_names_are_checked() {
    assert_err(
        &with_app("[hosts.\"-oProxyCommand=x\"]\n"),
        &["hosts", "starts with '-'"],
    );
    assert_err(&with_app("[hosts.\"a b\"]\n"), &["hosts"]);
    assert_err(
        &with_app("[groups.\"we b\"]\nhosts = [\"a\"]\n"),
        &["groups", "names may hold only"],
    );
    assert_err(
        &with_app("[hosts.a]\ngroups = [\"-g\"]\n"),
        &["hosts.a.groups[0]", "starts with '-'"],
    );
    assert_err(
        &with_app("[groups.g]\nhosts = [\"web 1\"]\n"),
        &["`groups.g.hosts`", "names may hold only"],
    );
}

#[test]
fn bad_ranges_are_refused_with_the_pattern() {
    assert_err(
        &with_app("[groups.g]\nhosts = [\"web[20:01]\"]\n"),
        &["`groups.g.hosts` (line", "backwards"],
    );
    assert_err(
        &with_app("[groups.g]\nhosts = [\"web[1-3]\"]\n"),
        &["`groups.g.hosts`", "bad range"],
    );
}

#[test]
fn groups_hold_hosts_not_groups() {
    assert_err(
        &with_app("[groups.web]\nhosts = [\"a\"]\n[groups.all]\nhosts = [\"web\"]\n"),
        &["`groups.all.hosts`", "`web` is a group"],
    );
}

#[test]
fn var_names_must_be_environment_names() {
    assert_err(
        &with_app("[hosts.a]\nvars = { \"my-var\" = \"x\" }\n"),
        &["hosts.a.vars", "my-var"],
    );
    assert_err(
        &with_app("[groups.g]\nhosts = [\"a\"]\nvars = { 1x = \"x\" }\n"),
        &["groups.g.vars"],
    );
    assert_err(
        &with_app(
            "[hosts.a]\ngroups = [\"g\"]\nvars = { REGION = \"x\" }\n[groups.g]\nvars = { region = \"y\" }\n",
        ),
        &["`hosts.a.vars`", "HOIST_VAR_REGION"],
    );
}

#[test]
fn there_must_be_hosts() {
    assert_err(APP, &["no hosts"]);
    assert_err(&with_app("[groups.g]\nhosts = []\n"), &["no hosts"]);
}

#[test]
fn addresses_users_and_host_keys_are_checked() {
    assert_err(
        &with_app("[hosts.a]\naddress = \"me@a\"\n"),
        &["`hosts.a.address`", "user"],
    );
    assert_err(&with_app("[hosts.a]\nuser = \"-l\"\n"), &["`hosts.a.user`"]);
    assert_err(
        &with_app("[hosts.a]\nhost_key = \"MD5:aa\"\n"),
        &["`hosts.a.host_key`", "SHA256:"],
    );
    assert_err(
        &with_app("[hosts.a]\nidentity_files = [\"~bob/key\"]\n"),
        &["`hosts.a.identity_files`", "~user"],
    );
}

#[test]
fn health_takes_exactly_one_check_and_http_urls_only() {
    assert_err(
        &with_app("[hosts.a]\n[health]\ncommand = \"x\"\nhttp = \"http://h/\"\n"),
        &["`health`", "not both"],
    );
    assert_err(
        &with_app("[hosts.a]\n[health]\nretries = 3\n"),
        &["`health`", "set `command`"],
    );
    assert_err(
        &with_app("[hosts.a]\n[health]\nhttp = \"https://h/\"\n"),
        &["`health.http`", "https"],
    );
    assert_err(
        &with_app("[hosts.a]\n[health]\nhttp = \"127.0.0.1:8080\"\n"),
        &["`health.http`", "http://"],
    );
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\n[health]\nhttp = \"http://127.0.0.1:8080/health\"\n",
        ))
        .ok();
    assert_eq!(
        config.health.unwrap().check,
        HealthCheck::Http("http://127.0.0.1:8080/health".into())
    );
}

#[test]
fn hook_commands_may_be_one_string_but_not_empty() {
    let config = Project::new()
        .config(&with_app(
            "[hosts.a]\n[hooks]\nbefore_switch = \"make check\"\n",
        ))
        .ok();
    assert_eq!(config.hooks.before_switch, ["make check"]);
    assert_err(
        &with_app("[hosts.a]\n[hooks]\nbefore_switch = [\" \"]\n"),
        &["`hooks.before_switch`", "empty"],
    );
}

// --- shared paths, [[files]], once, run-level hooks, become ------------------------

#[test]
fn the_keys_of_a_real_application_load() {
    let config = Project::new()
        .config(&with_app(
            r#"shared_dirs = ["log", "storage/"]
shared_files = ["config/.env"]

[[files]]
src = "secrets/{host}.env"
dest = "shared/config/.env"
secret = true

[[files]]
src = "conf/{group}.yml"
dest = "shared/config/app.yml"
mode = "0640"

[hooks]
become = "root"
before_switch_once = "./bin/migrate"
on_start_local = ["./freeze-check"]
on_success_local = ["./notify ok"]
on_failure_local = ["./notify failed"]

[hosts.web1]
groups = ["web"]
"#,
        ))
        .ok();
    assert_eq!(config.app.shared_dirs, ["log", "storage"]);
    assert_eq!(config.app.shared_files, ["config/.env"]);
    let files = &config.app.files;
    assert_eq!(files.len(), 2);
    assert_eq!((files[0].mode, files[0].secret), (0o600, true));
    assert_eq!((files[1].mode, files[1].secret), (0o640, false));
    let web1 = host(&config, "web1");
    assert_eq!(files[0].source_for(web1).unwrap(), "secrets/web1.env");
    assert_eq!(files[1].source_for(web1).unwrap(), "conf/web.yml");
    let h = &config.hooks;
    assert_eq!(h.become_user.as_deref(), Some("root"));
    assert_eq!(h.before_switch_once, ["./bin/migrate"]);
    assert_eq!(h.on_start_local, ["./freeze-check"]);
    assert_eq!(h.on_success_local, ["./notify ok"]);
    assert_eq!(h.on_failure_local, ["./notify failed"]);
}

#[test]
fn shared_paths_that_escape_or_overlap_are_refused() {
    for (paths, needle) in [
        (r#"shared_dirs = ["../etc"]"#, "`..`"),
        (r#"shared_dirs = ["/var/log"]"#, "absolute"),
        (r#"shared_files = ["config/../../x"]"#, "`..`"),
        (r#"shared_dirs = ["log", "log/app"]"#, "inside"),
        (
            r#"shared_dirs = ["log"]
shared_files = ["log"]"#,
            "twice",
        ),
        (r#"shared_dirs = ["a//b"]"#, "empty part"),
    ] {
        let text = format!("[app]\nname = \"shop\"\ndeploy_to = \"/srv/shop\"\n{paths}\n");
        assert_err(&text, &["`app.shared_", needle]);
    }
}

#[test]
fn files_must_land_under_shared_with_a_mode_in_octal() {
    let entry = |body: &str| with_app(&format!("[[files]]\n{body}\n"));
    assert_err(
        &entry("src = \"a\"\ndest = \"releases/x\""),
        &["`files`", "[0].dest", "not under shared/"],
    );
    assert_err(
        &entry("src = \"a\"\ndest = \"shared/../.hoist/lock\""),
        &["[0].dest", "`..`"],
    );
    assert_err(
        &entry("src = \"a\"\ndest = \"shared/x\"\nmode = \"rw\""),
        &["[0].mode", "octal"],
    );
    assert_err(
        &with_app(
            "[[files]]\nsrc = \"a\"\ndest = \"shared/x\"\n[[files]]\nsrc = \"b\"\ndest = \"shared/x\"\n",
        ),
        &["[1].dest", "earlier entry"],
    );
    assert_err(
        &entry("src = \"a\"\ndest = \"shared/x\"\nowner = \"root\""),
        &["unknown key `files[0].owner`"],
    );
}

#[test]
fn group_in_a_source_needs_a_group() {
    let config = Project::new()
        .config(&with_app(
            "[[files]]\nsrc = \"{group}.env\"\ndest = \"shared/.env\"\n[hosts.lonely]\n",
        ))
        .ok();
    let err = config.app.files[0]
        .source_for(host(&config, "lonely"))
        .unwrap_err();
    assert!(err.contains("lonely is in no group"), "{err}");
}

#[test]
fn become_must_be_a_user_name() {
    assert_err(
        &with_app("[hooks]\nbecome = \"root; rm -rf /\"\n[hosts.a]\n"),
        &["`hooks.become`", "not a usable user name"],
    );
}

// --- the shipped files -----------------------------------------------------------

#[test]
fn the_example_file_loads() {
    let example = include_str!("../../deploy.example.toml");
    let config = Project::new().config(example).ok();
    assert_eq!(config.app.name, "shop-api");
    let web1 = host(&config, "web1");
    assert_eq!(ssh(web1).port, 2222);
    assert_eq!(ssh(web1).user, "www-deploy");
    assert_eq!(ssh(web1).jump[0].address, "bastion-eu.example.com");
    assert_eq!(web1.deploy_to, "/opt/shop-api");
    assert_eq!(web1.vars["tier"], "web");
    assert_eq!(web1.vars["region"], "eu");
    let web2 = host(&config, "web2");
    assert_eq!(ssh(web2).jump[0].address, "bastion.example.com");
    assert_eq!(config.hosts.len(), 22);
    assert_eq!(config.strategy.batch.len(), 4);
    assert!(config.health.is_some());
    assert!(config.artifact.is_some());
    assert_eq!(config.app.shared_files, ["config/.env"]);
    assert_eq!(config.app.files.len(), 4);
    assert_eq!(config.secrets.len(), 2);
    assert_eq!(config.secrets[0].env, "API_TOKEN");
    assert!(config.hooks.become_password.is_some());
    assert_eq!(config.hooks.after_files.len(), 1);
    assert_eq!(config.hooks.throttle.after_switch, Some(5));
    assert_eq!(config.group_throttles["worker"].after_switch, Some(1));
    assert_eq!(config.hooks.become_user.as_deref(), Some("root"));
    assert_eq!(config.hooks.on_failure_local.len(), 1);
    assert_eq!(config.envs, ["staging", "production"]);
    assert_eq!(config.policy.freeze.windows.len(), 2);
    let staging = Project::new().config(example).with_env("staging").ok();
    assert_eq!(names(&staging), ["stage1"]);
    assert!(staging.policy.freeze.windows.is_empty());
    let production = Project::new().config(example).with_env("production").ok();
    assert_eq!(production.hosts.len(), 22);
    assert_eq!(production.min_soak, Duration::from_secs(3600));
    assert!(production.policy.require_reason);
}

#[test]
fn the_readme_example_of_a_real_application_loads() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Real applications")
        .nth(1)
        .expect("the README has the section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("with a TOML example");
    let config = Project::new()
        .config(&format!("{example}\n[hosts.web1]\n"))
        .ok();
    assert_eq!(config.app.shared_dirs, ["log", "storage", "tmp/pids"]);
    assert!(config.app.files[0].secret);
    assert_eq!(config.hooks.before_switch_once, ["bin/rails db:migrate"]);
    assert!(config.hooks.on_failure_local[0].contains("$HOIST_SUMMARY"));
}

#[test]
fn the_init_template_loads() {
    let config = Project::new().config(INIT_TEMPLATE).ok();
    assert_eq!(config.app.name, "myapp");
    assert_eq!(names(&config), ["web1", "web2"]);
}

// --- the table of SSH keys -------------------------------------------------------

use super::ssh_keys::SSH_KEYS;

/// A value for every key of the table, as deploy.toml would write it.
/// A key added to the table without one here fails the tests below.
fn sample(key: &str) -> &'static str {
    match key {
        "user" => "\"u\"",
        "port" => "2",
        "identity_files" => "[\"k\"]",
        "identities_only" => "true",
        "known_hosts" => "[\"kh\"]",
        "host_key_checking" => "\"accept-new\"",
        "connect_timeout" => "\"3s\"",
        "connect_retries" => "3",
        "command_timeout" => "\"4s\"",
        "keepalive" => "\"5s\"",
        "jump" => "\"gw\"",
        "ssh_config" => "false",
        other => panic!("no sample value for the SSH key `{other}`: add one"),
    }
}

fn table_keys() -> Vec<&'static str> {
    SSH_KEYS.iter().map(|k| k.name).collect()
}

#[test]
fn the_ssh_tables_accept_exactly_the_keys_of_the_table() {
    let accepted = |table: &str, extra: &str| {
        let err = Project::new()
            .config(&with_app(&format!("[{table}]\n{extra}no_such_key = 1\n")))
            .err();
        let list = err
            .split_once(&format!("accepted keys in [{table}]: "))
            .unwrap_or_else(|| panic!("{err}"))
            .1
            .to_string();
        list.split(" (did you mean")
            .next()
            .unwrap()
            .split(", ")
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(accepted("ssh", ""), table_keys());
    let group = accepted("groups.g", "hosts = [\"a\"]\n");
    assert_eq!(
        group[..6],
        ["hosts", "vars", "hooks", "health", "diagnose", "strategy"]
    );
    assert_eq!(group[6..], table_keys());
    let host = accepted("hosts.h", "");
    assert_eq!(
        host[..7],
        [
            "address",
            "groups",
            "host_key",
            "deploy_to",
            "vars",
            "transport",
            "root"
        ]
    );
    assert_eq!(host[7..], table_keys());
}

#[test]
fn every_key_of_the_table_is_set_from_every_ssh_table() {
    for key in SSH_KEYS {
        let line = format!("{} = {}\n", key.name, sample(key.name));
        for (text, layer) in [
            (format!("[hosts.h]\n[ssh]\n{line}"), "deploy.toml [ssh]"),
            (
                format!("[groups.g]\nhosts = [\"h\"]\n{line}"),
                "deploy.toml [groups.g]",
            ),
            (format!("[hosts.h]\n{line}"), "deploy.toml [hosts.h]"),
        ] {
            let config = Project::new().config(&with_app(&text)).ok();
            let t = ssh(host(&config, "h"));
            assert_eq!(t.source_of(key.name), layer, "{}", key.name);
        }
    }
}

#[test]
fn local_hosts_refuse_exactly_the_keys_the_table_marks_ssh_only() {
    for key in SSH_KEYS {
        let text = with_app(&format!(
            "[hosts.d]\ntransport = \"local\"\nroot = \"x\"\n{} = {}\n",
            key.name,
            sample(key.name)
        ));
        let result = Project::new().config(&text).load();
        match (key.local, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => assert!(
                e.0.contains(&format!("`hosts.d.{}`", key.name)) && e.0.contains("only SSH hosts"),
                "{e}"
            ),
            (local, result) => panic!("{}: local = {local}, but {result:?}", key.name),
        }
    }
}

#[test]
fn ssh_config_supplies_exactly_the_keys_the_table_names_an_option_for() {
    let value = |option: &str| match option {
        "User" => "u",
        "Port" => "2200",
        "IdentityFile" => "~/.ssh/k",
        "IdentitiesOnly" => "yes",
        "UserKnownHostsFile" => "~/.ssh/kh",
        "StrictHostKeyChecking" => "accept-new",
        "ConnectTimeout" => "3",
        "ServerAliveInterval" => "4",
        "ProxyJump" => "gw",
        other => panic!("no sample value for the ~/.ssh/config option {other}: add one"),
    };
    let mut text = "Host h\n".to_string();
    for option in SSH_KEYS.iter().filter_map(|k| k.ssh_config) {
        text.push_str(&format!("  {option} {}\n", value(option)));
    }
    let config = Project::new()
        .ssh_config(&text)
        .config(&with_app("[hosts.h]\n"))
        .ok();
    let t = ssh(host(&config, "h"));
    for key in SSH_KEYS {
        let from = t.source_of(key.name);
        assert_eq!(
            from == "~/.ssh/config (Host h)",
            key.ssh_config.is_some(),
            "{}: {from}",
            key.name
        );
    }
}

#[test]
fn check_v_rows_are_the_table_in_order_with_address_first_and_host_key_last() {
    let config = Project::new()
        .config(&with_app(
            "[ssh]\nuser = \"deploy\"\n[hosts.web1]\naddress = \"10.0.0.1\"\ncommand_timeout = \"1m\"\nhost_key = \"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"\n[hosts.demo]\ntransport = \"local\"\nroot = \"d\"\n",
        ))
        .ok();
    let rows = ssh_settings_rows(host(&config, "web1"));
    let keys: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let mut expected = vec!["address"];
    expected.extend(SSH_KEYS.iter().filter(|k| k.show.is_some()).map(|k| k.name));
    expected.push("host_key");
    assert_eq!(keys, expected);
    let row = |key: &str| rows.iter().find(|r| r.0 == key).unwrap().clone();
    assert_eq!(
        row("address"),
        (
            "address",
            "10.0.0.1".into(),
            "deploy.toml [hosts.web1]".into()
        )
    );
    assert_eq!(
        row("user"),
        ("user", "deploy".into(), "deploy.toml [ssh]".into())
    );
    assert_eq!(row("port"), ("port", "22".into(), "default".into()));
    assert_eq!(row("command_timeout").1, "1m");
    assert_eq!(row("known_hosts").1, "/home/me/.ssh/known_hosts");
    assert_eq!(row("jump").1, "(none)");
    assert_eq!(row("host_key_checking").1, "strict");
    assert!(row("host_key").1.starts_with("SHA256:"));
    assert!(ssh_settings_rows(host(&config, "demo")).is_empty());
}

// --- fuzzed input (issue 13) -------------------------------------------------------

#[test]
fn a_product_of_ranges_beyond_the_inventory_limit_is_refused_naming_the_pattern() {
    let err = Project::new()
        .config(&with_app(
            "[groups.web]\nhosts = [\"web[1:99999].rack[1:99999]\"]\n",
        ))
        .err();
    assert!(err.contains("`groups.web.hosts` (line 5"), "{err}");
    assert!(err.contains("\"web[1:99999].rack[1:99999]\""), "{err}");
    assert!(err.contains("9999800001 hosts"), "{err}");
    assert!(err.contains("at most 100000"), "{err}");
}

#[test]
fn the_inventory_limit_counts_the_patterns_of_every_group() {
    let err = Project::new()
        .config(&with_app(
            "[groups.a]\nhosts = [\"a[1:60000]\"]\n[groups.b]\nhosts = [\"b[1:50000]\"]\n",
        ))
        .err();
    assert!(err.contains("`groups.b.hosts`"), "{err}");
    assert!(
        err.contains("\"b[1:50000]\" stands for 50000 hosts, 110000 with the patterns before it"),
        "{err}"
    );
}

#[test]
fn a_config_that_is_not_utf8_names_the_file_line_and_column_of_the_bad_byte() {
    let p = Project::new();
    std::fs::write(
        p.path("deploy.toml"),
        [APP.as_bytes(), b"[hosts.caf\xE9]\n"].concat(),
    )
    .unwrap();
    let err = p.err();
    assert!(
        err.contains("deploy.toml: the configuration is not valid UTF-8"),
        "{err}"
    );
    assert!(err.contains("byte 0xE9 at line 4, column 11"), "{err}");

    let p = Project::new().config(&format!("inventory = \"hosts.toml\"\n{APP}"));
    std::fs::write(p.path("hosts.toml"), b"[hosts.a]\nuser = \"\xFF\"\n").unwrap();
    let err = p.err();
    assert!(
        err.contains("hosts.toml: the inventory is not valid UTF-8"),
        "{err}"
    );
    assert!(err.contains("byte 0xFF at line 2, column 9"), "{err}");
}

#[test]
fn an_integer_out_of_range_names_the_key_the_value_and_the_range() {
    assert_err(
        &with_app("[hosts.a]\nport = 99999999999999999999\n"),
        &[
            "`hosts.a.port` (line 5",
            "expected a port number (1-65535), found integer 99999999999999999999, beyond TOML's 64-bit integers",
        ],
    );
    assert_err(
        "[app]\nname = \"x\"\ndeploy_to = \"/x\"\nkeep_releases = -1\n[hosts.a]\n",
        &[
            "`app.keep_releases` (line 4",
            "expected a whole number >= 1, found integer -1",
        ],
    );
    assert_err(
        "[app]\nname = \"x\"\ndeploy_to = \"/x\"\nkeep_releases = 1000000000000000000000000000000000000000000\n[hosts.a]\n",
        &[
            "`app.keep_releases` (line 4",
            "found integer 1000000000000000000000000000000000000000000, beyond TOML's 64-bit integers",
        ],
    );
    assert_err(
        &with_app("[hosts.a]\naddress = 99999999999999999999\n"),
        &[
            "`hosts.a.address`",
            "expected a string, found integer 99999999999999999999, beyond TOML's 64-bit integers",
        ],
    );
    // tokio's semaphore panics past 2^61 permits
    assert_err(
        &with_app("[hosts.a]\n[strategy]\nparallel = 9223372036854775807\n"),
        &[
            "`strategy.parallel`",
            "(at most 100000), found integer 9223372036854775807",
        ],
    );
}

#[test]
fn a_group_written_as_an_array_or_a_string_says_what_shape_is_expected() {
    assert_err(
        &with_app("[groups]\nweb = [\"a\"]\n"),
        &[
            "`groups.web` (line 5",
            "expected a table for the group, e.g. [groups.web] with hosts = [\"web1\", \"web[01:20].example.com\"], found an array",
        ],
    );
    assert_err(
        &with_app("[groups]\nhosts = [\"a\"]\n"),
        &["`groups.hosts`", "e.g. [groups.web] with hosts = ["],
    );
    assert_err(
        &with_app("[groups.web]\nhosts = \"a\"\n"),
        &[
            "`groups.web.hosts`",
            "expected an array of host names, e.g. hosts = [\"web1\", \"web[01:20].example.com\"], found string \"a\"",
        ],
    );
    assert_err(
        &with_app("[groups.web]\nhosts = [1]\n"),
        &["`groups.web.hosts`", "expected host names as strings"],
    );
    // serde would have read the array as the fields in order: address = "10.0.0.1"
    assert_err(
        &with_app("[hosts]\nweb1 = [\"10.0.0.1\"]\n"),
        &[
            "`hosts.web1`",
            "e.g. [hosts.web1] with address = \"10.0.0.11\", found an array",
        ],
    );
    assert_err(
        "app = [\"x\", \"/srv\"]\n[hosts.a]\n",
        &["`app`", "expected a table, found an array"],
    );
    assert_err(
        "app = 1979-05-27\n[hosts.a]\n",
        &[
            "bad value for `app` (line 1",
            "expected a table, found a date-time",
        ],
    );
}

#[test]
fn backticks_the_user_wrote_are_kept_in_messages() {
    assert_err(
        "[app]\nname = \"app`x`y\"\ndeploy_to = \"/x\"\n[hosts.a]\n",
        &["`app.name`", "\"app`x`y\" has '`'"],
    );
    assert_err(
        &with_app("[hosts.a]\nvars = { \"a`b\" = \"x\" }\n"),
        &["var name \"a`b\""],
    );
    assert_err(
        &with_app("[hosts.a]\n\"app`x`y\" = 1\n"),
        &[
            "unknown key `hosts.a.\"app`x`y\"`",
            "accepted keys in [hosts.a]: address,",
        ],
    );
    assert_err(
        &with_app("[hosts.a]\n\"x`, expected `y\" = 1\n"),
        &["accepted keys in [hosts.a]: address,"],
    );
    assert_err(
        &with_app("[hosts.a]\nport = \"2`2\"\n"),
        &["found string \"2`2\""],
    );
}

#[test]
fn backticks_are_kept_in_inventory_files_and_exec_inventories_too() {
    let p = Project::new()
        .file("hosts.toml", "[hosts.\"web`1\"]\n")
        .config(&format!("inventory = \"hosts.toml\"\n{APP}"));
    let err = p.err();
    assert!(err.contains("hosts.toml"), "{err}");
    assert!(err.contains("\"web`1\" has '`'"), "{err}");
    let p = Project::new()
        .file("list", r#"echo '{"hosts": {"a": {"vars": {"x`y": "1"}}}}'"#)
        .config(&format!("inventory = \"exec:sh list\"\n{APP}"));
    let err = p.err();
    assert!(err.starts_with("exec:sh list: "), "{err}");
    assert!(err.contains("var name \"x`y\""), "{err}");
}

#[test]
fn secrets_and_files_from_commands_are_checked_before_anything_runs() {
    let config = Project::new()
        .config(&with_app(
            "[secrets]\ndb = { command = [\"sops\", \"-d\", \"s.yaml\"] }\n\
             token = { command = [\"op\", \"read\", \"op://x\"], env = \"API_TOKEN\" }\n\
             [[files]]\ncommand = [\"age\", \"-d\", \"{host}.age\"]\ndest = \"shared/.env\"\n\
             [[files]]\ncontent = \"PW={{ secrets.db }}\"\ndest = \"shared/pw.env\"\n\
             [hooks]\nbecome_password = { command = [\"cat\", \"pw\"] }\nafter_files = \"reload\"\n\
             [hosts.web1]\n",
        ))
        .ok();
    assert_eq!(config.secrets[0].env, "HOIST_SECRET_DB");
    assert_eq!(config.secrets[1].env, "API_TOKEN");
    let files = &config.app.files;
    assert_eq!(
        (files[0].secret, files[0].mode),
        (true, 0o600),
        "a command's output is secret"
    );
    assert_eq!(
        files[0]
            .command_for(host(&config, "web1"))
            .unwrap()
            .unwrap(),
        ["age", "-d", "web1.age"]
    );
    assert!(files[1].template && !files[1].secret);
    assert_eq!(
        config.hooks.become_password.as_deref().unwrap(),
        ["cat", "pw"]
    );
    assert_eq!(config.hooks.after_files, ["reload"]);

    let entry = |body: &str| with_app(&format!("[[files]]\n{body}\n[hosts.a]\n"));
    assert_err(
        &entry("src = \"a\"\ncommand = [\"cat\", \"a\"]\ndest = \"shared/x\""),
        &["only one of `src`, `command` and `content`"],
    );
    assert_err(&entry("dest = \"shared/x\""), &["set one of `src`"]);
    assert_err(
        &entry("command = []\ndest = \"shared/x\""),
        &["files", "the command is empty"],
    );
    assert_err(
        &entry("content = \"{{ secrets.nope }}\"\ndest = \"shared/x\""),
        &["names no secret of [secrets]"],
    );
    assert_err(
        &with_app("[secrets]\nx = { command = [\"a\"], env = \"HOIST_APP\" }\n[hosts.a]\n"),
        &["`secrets.x.env`", "hoist's own"],
    );
    assert_err(
        &with_app("[secrets]\nx = { command = [\"a\"], env = \"1X\" }\n[hosts.a]\n"),
        &["not a variable name"],
    );
    assert_err(
        &with_app("[secrets]\n\"a-b\" = { command = [\"a\"] }\n[hosts.a]\n"),
        &["letters, digits and `_`"],
    );
    assert_err(
        &with_app("[secrets]\nx = { command = [\"a\"], value = \"b\" }\n[hosts.a]\n"),
        &["unknown key"],
    );
}

#[test]
fn the_readme_examples_of_secrets_from_commands_load() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("### Secrets from a command, and rotating them")
        .nth(1)
        .expect("the README has the section");
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .take(2)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 2);
    let app = "[app]\nname = \"shop\"\ndeploy_to = \"/srv/shop\"\n";
    let config = Project::new()
        .config(&format!("{app}{}\n[hosts.web1]\n", blocks[0]))
        .ok();
    assert_eq!(config.secrets.len(), 2);
    assert_eq!(config.app.files.len(), 2);
    assert!(config.app.files.iter().all(|f| f.secret));
    assert_eq!(config.hooks.after_files, ["systemctl reload shop"]);
    let config = Project::new()
        .config(&format!(
            "{}{}\n[hosts.web1]\n",
            app,
            blocks[1].replace("[app]\n", "")
        ))
        .ok();
    assert_eq!(config.app.files[0].mode, 0o600);
}

/// A file with two environments, each with its own hosts.
const ENVS: &str = r#"[app]
name = "shop"
deploy_to = "/srv/shop"
keep_releases = 3

[strategy]
canary = 1
batch = "50%"

[env.staging]
[env.staging.hosts.stage1]
address = "10.1.0.1"

[env.production]
min_soak = "1h"
[env.production.app]
keep_releases = 10
[env.production.strategy]
batch = [1, "100%"]
[env.production.hosts.web1]
address = "10.0.0.1"
[env.production.hosts.web2]
address = "10.0.0.2"
[env.production.policy]
freeze = ["Fri 16:00 - Mon 08:00"]
timezone = "Europe/Berlin"
"#;

#[test]
fn an_environment_is_laid_over_the_base_file() {
    let c = Project::new().config(ENVS).with_env("production").ok();
    assert_eq!(c.env.as_deref(), Some("production"));
    assert_eq!(c.envs, ["staging", "production"]);
    assert_eq!(names(&c), ["web1", "web2"]);
    assert_eq!(c.app.keep_releases, 10);
    assert_eq!(c.app.name, "shop");
    assert_eq!(c.strategy.canary, Amount::Hosts(1));
    assert_eq!(c.strategy.batch, [Amount::Hosts(1), Amount::Percent(100)]);
    assert_eq!(c.min_soak, Duration::from_secs(3600));
    assert_eq!(c.policy.freeze.windows.len(), 1);
    assert_eq!(c.policy.freeze.timezone, chrono_tz::Tz::Europe__Berlin);

    let c = Project::new().config(ENVS).with_env("staging").ok();
    assert_eq!(names(&c), ["stage1"]);
    assert_eq!(c.app.keep_releases, 3);
    assert_eq!(c.strategy.batch, [Amount::Percent(50)]);
    assert_eq!(c.min_soak, Duration::ZERO);
    assert!(c.policy.freeze.windows.is_empty());

    let err = Project::new().config(ENVS).err();
    assert!(
        err.ends_with("the base file has no hosts, its environments do: pick one with -e/--env NAME (or HOIST_ENV): staging, production"),
        "{err}"
    );
}

#[test]
fn an_unknown_environment_is_refused_naming_the_known_ones() {
    let err = Project::new().config(ENVS).with_env("prod").err();
    assert!(
        err.ends_with("-e/--env (or HOIST_ENV): there is no environment \"prod\"; the file defines: staging, production"),
        "{err}"
    );
}

#[test]
fn require_env_refuses_a_run_without_one() {
    let text = format!("require_env = true\n{ENVS}");
    let err = Project::new().config(&text).err();
    assert!(
        err.contains("require_env = true: name the environment with -e/--env NAME"),
        "{err}"
    );
    assert!(
        err.ends_with("the file defines: staging, production"),
        "{err}"
    );
    assert!(
        Project::new()
            .config(&text)
            .with_env("staging")
            .load()
            .is_ok()
    );
}

#[test]
fn a_typo_in_an_overlay_is_refused_with_its_path_whichever_environment_is_chosen() {
    let text = ENVS.replace("keep_releases = 10", "keep_release = 10");
    for env in [Some("production"), Some("staging"), None] {
        let mut p = Project::new().config(&text);
        if let Some(e) = env {
            p = p.with_env(e);
        }
        let err = p.err();
        assert!(
            err.contains("unknown key `env.production.app.keep_release` (line 17, column 1)"),
            "{env:?}: {err}"
        );
        assert!(err.contains("(did you mean `keep_releases`?)"), "{err}");
    }
    // A bad value too, and a check made after parsing.
    let text = ENVS.replace(
        "timezone = \"Europe/Berlin\"",
        "timezone = \"Europe/Berlim\"",
    );
    let err = Project::new().config(&text).with_env("production").err();
    assert!(
        err.contains("`env.production.policy.timezone` (line 26"),
        "{err}"
    );
    let text = ENVS.replace("keep_releases = 10", "keep_releases = 0");
    let err = Project::new().config(&text).with_env("production").err();
    assert!(err.contains("`env.production.app.keep_releases`"), "{err}");
}

#[test]
fn an_environment_name_is_a_name() {
    let err = Project::new()
        .config(&with_app("[hosts.a]\n[env.\"prod uction\"]\n"))
        .err();
    assert!(err.contains("`env.\"prod uction\"`"), "{err}");
    assert!(err.contains("names may hold only"), "{err}");
}

#[test]
fn freeze_windows_are_checked_when_the_file_is_read() {
    let err = Project::new()
        .config(&with_app(
            "[hosts.a]\n[policy]\nfreeze = [\"Fri 16:00 to Mon\"]\n",
        ))
        .err();
    assert!(err.contains("`policy.freeze`"), "{err}");
    assert!(err.contains("write a weekly window like"), "{err}");
    let c = Project::new()
        .config(&with_app("[hosts.a]\n[policy]\nrequire_reason = true\n"))
        .ok();
    assert!(c.policy.require_reason);
    assert_eq!(c.policy.freeze.timezone, chrono_tz::Tz::UTC);
}

// --- [relay] (issue 29) ------------------------------------------------------

#[test]
fn relay_is_off_unless_its_table_says_a_fanout() {
    let off = Project::new().config(&with_app("[hosts.a]\n")).ok();
    assert_eq!(off.relay, None);
    let on = Project::new()
        .config(&with_app("[hosts.a]\n[relay]\nfanout = 4\n"))
        .ok();
    let relay = on.relay.unwrap();
    assert_eq!(relay.fanout, 4);
    assert_eq!(relay.authorized_keys, "~/.ssh/authorized_keys");
    let elsewhere = Project::new()
        .config(&with_app(
            "[hosts.a]\n[relay]\nfanout = 2\nauthorized_keys = \"/etc/ssh/keys/deploy\"\n",
        ))
        .ok();
    assert_eq!(
        elsewhere.relay.unwrap().authorized_keys,
        "/etc/ssh/keys/deploy"
    );
}

#[test]
fn relay_keys_are_strict() {
    assert_err(
        &with_app("[hosts.a]\n[relay]\nfanout = 2\nfan_out = 3\n"),
        &["accepted keys in [relay]: fanout, authorized_keys"],
    );
    assert_err(
        &with_app("[hosts.a]\n[relay]\nfanout = 0\n"),
        &["`relay.fanout`"],
    );
    assert_err(&with_app("[hosts.a]\n[relay]\n"), &["fanout"]);
    assert_err(
        &with_app("[hosts.a]\n[relay]\nfanout = 2\nauthorized_keys = \"\"\n"),
        &["`relay.authorized_keys`", "a path on the hosts"],
    );
}

mod analysis;
mod shape;
