//! Real fleets: hosts named in ~/.ssh/config, reached only through a
//! bastion, picked with --limit, listed by a dynamic inventory.

use std::path::Path;
use std::time::Instant;

use crate::support::netns::{Forward, Netns};
use crate::support::project::{Project, ndjson, printed};
use crate::support::sshd::{ClientKey, Sshd, SshdOptions, current_user};

/// OpenSSH's own default, which the harness raises for other tests.
const DEFAULT_MAX_STARTUPS: &str = "10:30:100";

/// A fleet behind one bastion, every SSH setting of it in ~/.ssh/config
/// (aliases in an Include'd file) and nothing about SSH in deploy.toml.
/// Fields drop in order: the forwarder, the servers, then the namespace.
struct Fleet {
    project: Project,
    _forward: Option<Forward>,
    bastion: Sshd,
    targets: Vec<Sshd>,
    /// host name -> index into `targets`.
    hosts: Vec<(String, usize)>,
    /// Where hoist dials the bastion.
    bastion_port: u16,
    _key: ClientKey,
    _ns: Option<Netns>,
}

struct Setup {
    hosts: usize,
    /// Servers the hosts are spread over (hosts may share one, each with its own deploy_to).
    servers: usize,
    /// Put bastion and servers in a namespace of their own, which only the
    /// bastion's port leaves.
    isolated: Option<Netns>,
    max_startups: Option<&'static str>,
}

impl Fleet {
    fn start(setup: Setup) -> Fleet {
        let key = ClientKey::ed25519();
        let netns = setup.isolated.as_ref().map(|ns| ns.name.clone());
        let options = |log: &str| SshdOptions {
            max_startups: setup.max_startups.map(str::to_string),
            log_level: Some(log.into()),
            netns: netns.clone(),
            ..SshdOptions::default()
        };
        // DEBUG1 logs every direct-tcpip request with its destination.
        let bastion = Sshd::start_with(&[&key], &options("DEBUG1"));
        let targets: Vec<Sshd> = (0..setup.servers)
            .map(|_| Sshd::start_with(&[&key], &options("VERBOSE")))
            .collect();
        let forward = setup
            .isolated
            .as_ref()
            .map(|ns| Forward::start(ns, bastion.port));
        let bastion_port = forward.as_ref().map_or(bastion.port, |f| f.port);
        let hosts: Vec<(String, usize)> = (1..=setup.hosts)
            .map(|i| (format!("web{i:02}"), (i - 1) % setup.servers))
            .collect();

        let aliases: String = hosts
            .iter()
            .map(|(name, t)| {
                format!(
                    "Host {name}\n  HostName 127.0.0.1\n  Port {}\n",
                    targets[*t].port
                )
            })
            .collect();
        let config = format!(
            "# the fleet's own file\nInclude fleet/*.conf\n\nHost bastion\n  HostName 127.0.0.1\n  Port {bastion_port}\n\nHost web* !bastion\n  ProxyJump bastion\n\nHost *\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n",
            user = current_user(),
            key = key.path.display(),
        );
        let mut known_hosts = format!("[127.0.0.1]:{bastion_port} {}\n", bastion.host_public_key());
        for t in &targets {
            known_hosts.push_str(&(t.known_hosts_line() + "\n"));
        }
        let mut project = Project::new()
            .home_file(".ssh/config", &config)
            .home_file(".ssh/fleet/web.conf", &aliases)
            .home_file(".ssh/known_hosts", &known_hosts)
            .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"")
            .artifact(&[("bin/app", "#!/bin/sh\necho v1\n"), ("README", "first")]);
        for (name, t) in &hosts {
            project = project.bare_host(name, &targets[*t].root);
        }
        Fleet {
            project: project.write(),
            _forward: forward,
            bastion,
            targets,
            hosts,
            bastion_port,
            _key: key,
            _ns: setup.isolated,
        }
    }

    /// Asserts the bastion carried every connection the servers saw (after
    /// one deploy): one login on the bastion, and per server as many logins
    /// as the bastion forwarded to it, two per host (the run's, and the
    /// dead-man switch's confirmation over a fresh connection).
    fn assert_all_through_the_bastion(&self) {
        let log = self.bastion.log();
        assert_eq!(
            log.matches("Accepted publickey").count(),
            1,
            "one shared connection to the bastion:\n{log}"
        );
        for t in &self.targets {
            let forwarded = log
                .lines()
                .filter(|l| l.contains("direct-tcpip") || l.contains("server_request_direct_tcpip"))
                .filter(|l| l.contains(&format!("target 127.0.0.1 port {}", t.port)))
                .count();
            let logins = t.log().matches("Accepted publickey").count();
            let expected = self
                .hosts
                .iter()
                .filter(|(_, i)| self.targets[*i].port == t.port)
                .count()
                * 2;
            assert_eq!(logins, expected, "two logins per host on this server");
            assert_eq!(
                forwarded, logins,
                "every connection to port {} came through the bastion",
                t.port
            );
        }
    }

    fn assert_no_dropped_handshakes(&self) {
        for (what, log) in std::iter::once(("bastion", self.bastion.log()))
            .chain(self.targets.iter().map(|t| ("server", t.log())))
        {
            for needle in ["drop connection", "MaxStartups"] {
                assert!(!log.contains(needle), "{what} logged {needle:?}:\n{log}");
            }
        }
    }

    fn assert_deployed(&self) {
        let p = &self.project;
        let first = p.current(&self.hosts[0].0).expect("deployed");
        for (name, _) in &self.hosts {
            assert_eq!(p.current(name).as_deref(), Some(first.as_str()), "{name}");
            assert_eq!(p.read_current(name, "README"), "first");
            assert!(!p.locked(name), "{name}");
        }
    }
}

fn deploy_toml(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("deploy.toml")).unwrap()
}

#[test]
fn a_fleet_named_only_in_ssh_config_deploys_through_its_bastion() {
    let f = Fleet::start(Setup {
        hosts: 3,
        servers: 3,
        isolated: None,
        max_startups: None,
    });
    let p = &f.project;
    let toml = deploy_toml(p);
    for key in [
        "[ssh]",
        "address",
        "port",
        "user",
        "jump",
        "identity",
        "known_hosts",
    ] {
        assert!(
            !toml.contains(key),
            "deploy.toml holds no SSH setting: {key}"
        );
    }
    let out = p.hoist(&["deploy"]).assert().success().get_output().clone();
    f.assert_deployed();
    f.assert_all_through_the_bastion();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web01") && l.contains(" ok in ")),
        "web01, its ~/.ssh/config alias, reported done: {}",
        printed(&out)
    );

    // `check -v` names ~/.ssh/config as the source of what it used.
    let events = p.events(&["check", "-v", "--json"], 0);
    let from = |host: &str, setting: &str| -> String {
        events
            .iter()
            .find(|e| e["table"] == "settings" && e["host"] == host && e["setting"] == setting)
            .unwrap_or_else(|| panic!("no {setting} row for {host}"))["from"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(from("web02", "address"), "~/.ssh/config (Host web02)");
    assert_eq!(from("web02", "jump"), "~/.ssh/config (Host web* !bastion)");
    assert_eq!(from("web02", "user"), "~/.ssh/config (Host *)");
    assert_eq!(from("web02", "host_key_checking"), "~/.ssh/config (Host *)");
    assert_eq!(from("web02", "command_timeout"), "default");
}

#[test]
fn only_the_bastion_can_reach_the_hosts_in_their_own_network_namespace() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!(
                "skipping: cannot make a network namespace ({why}); the log-based test covers the bastion route"
            );
            return;
        }
    };
    let f = Fleet::start(Setup {
        hosts: 4,
        servers: 2,
        isolated: Some(ns),
        max_startups: None,
    });
    for t in &f.targets {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", t.port)).is_err(),
            "port {} must not be reachable from outside the namespace",
            t.port
        );
    }
    f.project.hoist(&["deploy"]).assert().success();
    f.assert_deployed();
    f.assert_all_through_the_bastion();
    f.project.hoist(&["status"]).assert().success();
}

#[test]
fn the_bastions_host_key_is_checked_like_any_other() {
    let f = Fleet::start(Setup {
        hosts: 2,
        servers: 1,
        isolated: None,
        max_startups: None,
    });
    let p = &f.project;
    let known = p.path().join("home/.ssh/known_hosts");
    let text = std::fs::read_to_string(&known).unwrap();
    let bastion_line = text.lines().next().unwrap().to_string();

    // Unknown: refused, and no host behind it is ever reached.
    std::fs::write(&known, text.replacen(&(bastion_line.clone() + "\n"), "", 1)).unwrap();
    let out = p.hoist(&["deploy"]).assert().code(3).get_output().clone();
    let text_out = printed(&out);
    assert!(
        text_out.contains("jump host") && text_out.contains("unknown"),
        "{text_out}"
    );
    assert!(
        !f.targets[0].log().contains("Connection from"),
        "a host was reached"
    );

    // Changed: refused as a possible man-in-the-middle.
    let other = ClientKey::ed25519();
    let forged = format!(
        "[127.0.0.1]:{} {}\n{}",
        f.bastion_port,
        other
            .public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    );
    std::fs::write(&known, forged + "\n").unwrap();
    let out = p.hoist(&["deploy"]).assert().code(3).get_output().clone();
    assert!(
        printed(&out).contains("does not match"),
        "{}",
        printed(&out)
    );
    for (name, _) in &f.hosts {
        assert!(p.untouched(name), "{name}");
    }
}

#[test]
fn fifty_hosts_behind_one_default_maxstartups_bastion_deploy_without_dropped_handshakes() {
    // 50 hosts on two servers, so without a bound 25 handshakes would hit
    // each server at once; bastion and servers keep OpenSSH's MaxStartups.
    let f = Fleet::start(Setup {
        hosts: 50,
        servers: 2,
        isolated: None,
        max_startups: Some(DEFAULT_MAX_STARTUPS),
    });
    let started = Instant::now();
    // Generous: on 2 busy cores, 50 hosts' sessions through one bastion are slow.
    let out = f
        .project
        .hoist(&["deploy"])
        .timeout(std::time::Duration::from_secs(600))
        .assert()
        .get_output()
        .clone();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    eprintln!(
        "50 hosts behind one bastion (MaxStartups {DEFAULT_MAX_STARTUPS}): deployed in {took:?}"
    );
    f.assert_deployed();
    f.assert_no_dropped_handshakes();
    f.assert_all_through_the_bastion();
}

#[test]
fn deploy_toml_beats_ssh_config_which_beats_the_defaults() {
    let key = ClientKey::ed25519();
    let server = Sshd::start(&[&key]);
    let user = current_user();
    // ~/.ssh/config gets the port wrong; deploy.toml's port must win.
    let p = Project::new()
        .home_file(
            ".ssh/config",
            &format!(
                "Host web1\n  HostName 127.0.0.1\n  Port 1\n  User {user}\n  IdentityFile {}\n  ServerAliveInterval 7\n",
                key.path.display()
            ),
        )
        .home_file(".ssh/known_hosts", &(server.known_hosts_line() + "\n"))
        .toml(&format!(
            "[ssh]\nconnect_timeout = \"9s\"\n\n[hosts.web1]\nport = {}\ndeploy_to = \"{}\"",
            server.port,
            server.root.join("srv/app").display()
        ))
        .artifact(&[("README", "x")])
        .write();
    let events = p.events(&["check", "-v", "--json"], 0);
    let row = |setting: &str| {
        events
            .iter()
            .find(|e| e["table"] == "settings" && e["setting"] == setting)
            .unwrap_or_else(|| panic!("no {setting} row"))
            .clone()
    };
    assert_eq!(row("port")["value"], server.port.to_string());
    assert_eq!(row("port")["from"], "deploy.toml [hosts.web1]");
    assert_eq!(row("connect_timeout")["from"], "deploy.toml [ssh]");
    assert_eq!(row("address")["from"], "~/.ssh/config (Host web1)");
    assert_eq!(row("keepalive")["value"], "7s");
    assert_eq!(row("keepalive")["from"], "~/.ssh/config (Host web1)");
    assert_eq!(row("command_timeout")["from"], "default");
    let check = events.iter().find(|e| e["table"] == "check").unwrap();
    assert_eq!(check["ok"], true, "{check}");

    // ssh_config = false: the file is not read, and the alias means nothing.
    let toml = deploy_toml(&p).replace("[ssh]\n", "[ssh]\nssh_config = false\n");
    std::fs::write(p.path().join("deploy.toml"), toml).unwrap();
    let events = p.events(&["check", "-v", "--json"], 3);
    let address = events
        .iter()
        .find(|e| e["table"] == "settings" && e["setting"] == "address")
        .unwrap();
    assert_eq!(address["value"], "web1");
    assert_eq!(address["from"], "default (the host's name)");
}

/// A fleet in ~/.ssh/config that `plan` lists without connecting.
fn planned_fleet() -> Project {
    Project::new()
        .home_file(
            ".ssh/config",
            "Host bastion\n  HostName 192.0.2.1\n  User ops\nHost web* db* !bastion\n  ProxyJump bastion\n",
        )
        .toml(
            "[groups.web]\nhosts = [\"web[1:3]\"]\n[groups.db]\nhosts = [\"db1\", \"db2\"]\n[groups.primary]\nhosts = [\"db1\"]\n[hosts.cache]\naddress = \"192.0.2.9\"",
        )
        .artifact(&[("README", "x")])
        .write()
}

fn planned(p: &Project, limit: &str) -> Vec<String> {
    let out = p
        .hoist(&["plan", "--json", "-l", limit])
        .assert()
        .success()
        .get_output()
        .clone();
    ndjson(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "row")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn limit_takes_names_groups_globs_and_exclusions() {
    let p = planned_fleet();
    assert_eq!(planned(&p, "web*,!web2"), ["web1", "web3"]);
    assert_eq!(planned(&p, "db"), ["db1", "db2"]);
    assert_eq!(planned(&p, "db,!primary"), ["db2"]);
    assert_eq!(
        planned(&p, "web1, cache"),
        ["cache", "web1"],
        "inventory order"
    );
    assert_eq!(planned(&p, "!web"), ["cache", "db1", "db2"]);
    assert_eq!(planned(&p, "prim*,web?"), ["web1", "web2", "web3", "db1"]);

    // The route each host takes is part of the plan.
    let out = p
        .hoist(&["plan", "--json", "-l", "web1,cache"])
        .assert()
        .success()
        .get_output()
        .clone();
    let rows: Vec<serde_json::Value> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    assert_eq!(rows[0]["host"], "cache");
    assert!(rows[0]["via"].is_null(), "{}", rows[0]);
    assert_eq!(rows[1]["via"], "ops@192.0.2.1:22", "{}", rows[1]);

    for nothing in ["wbe*", "web1,nope", "!nope", "web,!web*", ""] {
        let out = p
            .hoist(&["plan", "-l", nothing])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert!(
            printed(&out).contains("--limit"),
            "{nothing:?}: {}",
            printed(&out)
        );
    }
    // the same selector means the same hosts for every command
    let out = p
        .hoist(&["status", "-l", "wbe*"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(printed(&out).contains("`wbe*` matches no host or group"));
}

/// Writes an executable script.
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_dynamic_inventory_script_lists_the_hosts() {
    let p = Project::new()
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"")
        .artifact(&[("README", "from exec")])
        .write();
    script(
        &p.path().join("list-hosts"),
        r#"cat <<'JSON'
{
  "hosts": {
    "app1": {"transport": "local", "root": "hosts/app1", "groups": ["app"], "vars": {"region": "eu"}},
    "app2": {"transport": "local", "root": "hosts/app2", "groups": ["app"]}
  },
  "groups": {"app": {"vars": {"tier": "web"}}}
}
JSON
"#,
    );
    p.hoist(&["deploy", "-i", "exec:./list-hosts"])
        .assert()
        .success();
    for host in ["app1", "app2"] {
        let readme = p
            .path()
            .join("hosts")
            .join(host)
            .join("srv/app/current/README");
        assert_eq!(std::fs::read_to_string(readme).unwrap(), "from exec");
    }
    assert_eq!(
        planned_with(&p, &["-i", "exec:./list-hosts", "-l", "app,!app2"]),
        ["app1"]
    );

    // From the file: relative to the file's directory, whatever the cwd.
    std::fs::create_dir_all(p.path().join("sub/build")).unwrap();
    std::fs::write(p.path().join("sub/build/README"), "x").unwrap();
    script(
        &p.path().join("sub/bin/hosts"),
        "echo '{\"hosts\": {\"x1\": {\"transport\": \"local\", \"root\": \"x1\"}}}'\n",
    );
    let toml = format!("inventory = \"exec:./bin/hosts\"\n{}", deploy_toml(&p));
    std::fs::write(p.path().join("sub/deploy.toml"), toml).unwrap();
    assert_eq!(planned_with(&p, &["-c", "sub/deploy.toml"]), ["x1"]);

    // A failing command or bad JSON: exit 2 with what the command said.
    script(
        &p.path().join("broken"),
        "echo 'cloud API: token expired' >&2\nexit 4\n",
    );
    let out = p
        .hoist(&["plan", "-i", "exec:./broken"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let said = printed(&out);
    assert!(
        said.contains("exited with code 4") && said.contains("token expired"),
        "{said}"
    );
    script(
        &p.path().join("typo"),
        "echo '{\"hosts\": {\"a\": {\"adress\": \"x\"}}}'\n",
    );
    let out = p
        .hoist(&["plan", "-i", "exec:./typo"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("unknown key `hosts.a.adress`"),
        "{}",
        printed(&out)
    );
}

fn planned_with(p: &Project, args: &[&str]) -> Vec<String> {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let out = p.hoist(&all).assert().success().get_output().clone();
    ndjson(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "row")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_example_inventory_script_works() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory/list-hosts");
    let p = Project::new().artifact(&[("README", "x")]).write();
    let hosts = planned_with(&p, &["-i", &format!("exec:{}", example.display())]);
    assert!(hosts.len() >= 3, "{hosts:?}");
    let web = planned_with(
        &p,
        &["-i", &format!("exec:{}", example.display()), "-l", "web"],
    );
    assert!(!web.is_empty() && web.len() < hosts.len(), "{web:?}");
}
