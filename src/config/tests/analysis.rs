//! `[[analysis]]` gates and `strategy.wave_bake`.

use super::*;
use crate::config::analysis::{OnInconclusive, Provider};

fn load(text: &str) -> Config {
    Project::new().config(&with_app(text)).ok()
}

#[test]
fn a_gate_reads_its_keys_and_defaults() {
    let c = load(
        "[hosts.a]\n[strategy]\ncanary_pause = \"1m\"\nwave_bake = \"30s\"\n\
         [[analysis]]\nname = \"errors\"\nprometheus = { url = \"http://prom:9090/\", query = \"up\", pass = \"canary <= baseline * 1.2\" }\n\
         failure_limit = 2\non_inconclusive = \"fail\"\n\
         [[analysis]]\nname = \"log\"\nhost_command = [\"./check\", \"5xx\"]\ncount = 3\ninterval = \"2s\"\ndry_run = true\n",
    );
    assert_eq!(c.strategy.wave_bake, Duration::from_secs(30));
    let [errors, log] = &c.analysis[..] else {
        panic!("two gates")
    };
    match &errors.provider {
        Provider::Prometheus { url, pass, .. } => {
            assert_eq!(url, "http://prom:9090");
            assert!(pass.compares);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(errors.interval, Duration::from_secs(10));
    assert_eq!(
        (
            errors.count,
            errors.failure_limit,
            errors.consecutive_errors
        ),
        (None, 2, 4)
    );
    assert_eq!(errors.on_inconclusive, OnInconclusive::Fail);
    assert!(!errors.dry_run);
    assert!(matches!(&log.provider, Provider::HostCommand(argv) if argv == &["./check", "5xx"]));
    assert_eq!(
        (log.count, log.interval, log.dry_run),
        (Some(3), Duration::from_secs(2), true)
    );
    assert_eq!(log.on_inconclusive, OnInconclusive::Pause);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn gates_are_refused_when_they_cannot_work() {
    for (gate, says) in [
        (
            "name = \"a\"\ncommand = [\"x\"]\nretries = 1\n",
            "unknown key `analysis[0].retries`",
        ),
        ("name = \"a\"\n", "exactly one of"),
        ("name = \"a\"\ncommand = []\n", "command is empty"),
        (
            "name = \"a\"\nprometheus = { url = \"https://p\", query = \"up\", pass = \"< 1\" }\n",
            "https is not supported",
        ),
        (
            "name = \"a\"\nprometheus = { url = \"http://p\", query = \"up\", pass = \"< 1\", step = \"1m\" }\n",
            "unknown key `analysis[0].prometheus.step`",
        ),
        (
            "name = \"a\"\nprometheus = { url = \"http://p\", query = \"up\", pass = \"canary < 1\" }\n",
            "compares with \"baseline\"",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\n[[analysis]]\nname = \"a\"\ncommand = [\"y\"]\n",
            "a second gate named \"a\"",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\ninterval = \"0s\"\n",
            "interval",
        ),
    ] {
        assert_err(
            &with_app(&format!("[hosts.a]\n[[analysis]]\n{gate}")),
            &[says],
        );
    }
}

#[test]
fn gates_and_wave_bake_are_refused_in_a_blue_green_fleet() {
    let bg = "[hosts.a]\n[hosts.b]\n[groups.blue]\nhosts = [\"a\"]\n[groups.green]\nhosts = [\"b\"]\n\
              [blue_green]\ncolors = [\"blue\", \"green\"]\n[strategy]\nkind = \"blue-green\"\n";
    assert_err(
        &with_app(&format!("{bg}wave_bake = \"1m\"\n")),
        &["wave_bake"],
    );
    assert_err(
        &with_app(&format!(
            "{bg}[[analysis]]\nname = \"a\"\ncommand = [\"x\"]\n"
        )),
        &["analysis", "blue-green"],
    );
}

#[test]
fn gates_no_bake_samples_are_warned_about() {
    let c = load("[hosts.a]\n[[analysis]]\nname = \"a\"\ncommand = [\"x\"]\n");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("sampled only during bakes")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn gates_and_traffic_steps_are_taken_in_a_blue_green_fleet() {
    let c = load(
        "[hosts.a]\n[hosts.b]\n[groups.blue]\nhosts = [\"a\"]\n[groups.green]\nhosts = [\"b\"]\n\
         [blue_green]\ncolors = [\"blue\", \"green\"]\n[strategy]\nkind = \"blue-green\"\n\
         [traffic]\nsteps = [10, 100]\nset_local = [\"./lb $HOIST_WEIGHT\"]\n\
         [[analysis]]\nname = \"a\"\ncommand = [\"x\"]\n",
    );
    assert_eq!(c.traffic.as_ref().unwrap().steps, [10, 100]);
    assert_eq!(c.analysis.len(), 1);
    // The steps sample the gates: no warning that nothing does.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
