//! Values of the file that are more than a string or a number: each parses
//! and checks itself while deserializing, so a bad one is reported with its
//! key path and line.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::model::{Amount, HostKeyChecking, OnFailure, Pause, StrategyKind, WaveBy};

/// A value as TOML wrote it, before we know what it should be.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    /// An integer TOML cannot hold (beyond 64 bits), as written in decimal.
    Huge(String),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Scalar>),
    Table,
}

impl Scalar {
    /// How a message names what it found.
    fn found(&self) -> String {
        match self {
            Scalar::Int(i) => format!("integer {i}"),
            Scalar::Huge(i) => format!("integer {i}, beyond TOML's 64-bit integers"),
            Scalar::Float(f) => format!("float {f}"),
            Scalar::Bool(b) => format!("boolean {b}"),
            Scalar::Str(s) => format!("string {s:?}"),
            Scalar::Array(_) => "an array".into(),
            Scalar::Table => "a table".into(),
        }
    }

    fn expected<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("expected {what}, found {}", self.found()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or_else(|_| Scalar::Huge(v.to_string()), Scalar::Int))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or_else(|_| Scalar::Huge(v.to_string()), Scalar::Int))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or_else(|_| Scalar::Huge(v.to_string()), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Scalar::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Implements `Deserialize` for a newtype through a conversion from `Scalar`.
macro_rules! from_scalar {
    ($ty:ty, $convert:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = Scalar::deserialize(d)?;
                let convert: fn(Scalar) -> Result<$ty, String> = $convert;
                convert(value).map_err(de::Error::custom)
            }
        }
    };
}

fn int_in(v: &Scalar, min: i64, max: i64, what: &str) -> Result<i64, String> {
    match v {
        Scalar::Int(i) if (min..=max).contains(i) => Ok(*i),
        _ => v.expected(what),
    }
}

/// "10s", "2m", "1h30m", "0s".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("expected a duration such as \"10s\", \"2m\" or \"1h30m\", found \"\"".into());
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?} ({e}): write it like \"10s\", \"2m\" or \"1h30m\"")
    })
}

/// A duration, e.g. "10s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

from_scalar!(Dur, |v| match &v {
    Scalar::Str(s) => parse_duration(s).map(Dur),
    _ => v.expected("a duration such as \"10s\", \"2m\" or \"1h30m\""),
});

/// A duration that must be longer than zero (timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonZeroDur(pub Duration);

from_scalar!(NonZeroDur, |v| match &v {
    Scalar::Str(s) => match parse_duration(s)? {
        d if d.is_zero() => Err(format!("expected a duration longer than 0s, found {s:?}")),
        d => Ok(NonZeroDur(d)),
    },
    _ => v.expected("a duration such as \"10s\", \"2m\" or \"1h30m\""),
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

from_scalar!(Port, |v| int_in(&v, 1, 65535, "a port number (1-65535)")
    .map(|p| Port(p as u16)));

/// How often a failed connect is tried again (`ssh.connect_retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub u32);

from_scalar!(Retries, |v| int_in(&v, 0, 10, "a number of retries (0-10)")
    .map(|n| Retries(n as u32)));

/// A size in bytes: a whole number, or a string such as "500MB" or "2GiB"
/// (kB, MB, GB, TB count in 1000s; KiB, MiB, GiB, TiB in 1024s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

from_scalar!(Size, |v| match &v {
    Scalar::Int(n) if *n >= 1 => Ok(Size(*n as u64)),
    Scalar::Str(s) => parse_size(s).map(Size),
    _ => v.expected("a size such as \"500MB\", \"2GiB\" or a number of bytes"),
});

fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("expected a size such as \"500MB\", \"2GiB\" or a number of bytes, found {text:?}")
    };
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000_u64.pow(2),
        "gb" | "g" => 1000_u64.pow(3),
        "tb" | "t" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit) {
        Some(bytes) if bytes >= 1 => Ok(bytes),
        _ => Err(bad()),
    }
}

/// An integer from 1 to `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positive<const MAX: i64 = { i64::MAX }>(pub usize);

impl<'de, const MAX: i64> Deserialize<'de> for Positive<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let what = match MAX {
            i64::MAX => "a whole number >= 1".to_string(),
            max => format!("a whole number >= 1 (at most {max})"),
        };
        let n = int_in(&Scalar::deserialize(d)?, 1, MAX, &what).map_err(de::Error::custom)?;
        Ok(Positive(n as usize))
    }
}

/// The most `parallel` may be: more than an inventory's hosts means nothing
/// (and tokio's semaphore refuses more than 2^61 permits).
pub const MAX_PARALLEL: i64 = 100_000;

fn percent(s: &str) -> Result<Amount, String> {
    let digits = s.trim().strip_suffix('%').map(str::trim);
    match digits.and_then(|d| d.parse::<u8>().ok()) {
        Some(p) if (1..=100).contains(&p) => Ok(Amount::Percent(p)),
        Some(_) => Err(format!(
            "expected a percentage from 1% to 100%, found {s:?}"
        )),
        None => Err(format!(
            "expected a number of hosts (e.g. 2) or a percentage (e.g. \"10%\"), found string {s:?}"
        )),
    }
}

fn amount(v: &Scalar, min_hosts: i64) -> Result<Amount, String> {
    match v {
        Scalar::Int(n) if *n >= min_hosts => Ok(Amount::Hosts(*n as usize)),
        Scalar::Int(n) => Err(format!(
            "expected at least {min_hosts} host(s) or a percentage, found {n}"
        )),
        Scalar::Str(s) => percent(s),
        _ => v.expected("a number of hosts (e.g. 2) or a percentage (e.g. \"10%\")"),
    }
}

/// Hosts or percent, where 0 hosts is allowed (canary, max_failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountOrNone(pub Amount);

from_scalar!(AmountOrNone, |v| amount(&v, 0).map(AmountOrNone));

/// `batch`: hosts, a percentage, or a ramp of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch(pub Vec<Amount>);

from_scalar!(Batch, |v| match &v {
    Scalar::Array(items) if items.is_empty() => {
        Err("expected a ramp such as [1, \"10%\", \"50%\", \"100%\"], found an empty array".into())
    }
    Scalar::Array(items) => items
        .iter()
        .enumerate()
        .map(|(i, item)| amount(item, 1).map_err(|e| format!("ramp step {}: {e}", i + 1)))
        .collect::<Result<_, _>>()
        .map(Batch),
    _ => amount(&v, 1).map(|a| Batch(vec![a])),
});

/// `canary_pause`: "manual" or a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseValue(pub Pause);

from_scalar!(PauseValue, |v| match &v {
    Scalar::Str(s) if s.trim() == "manual" => Ok(PauseValue(Pause::Manual)),
    Scalar::Str(s) => parse_duration(s)
        .map(|d| PauseValue(Pause::For(d)))
        .map_err(|e| format!("expected \"manual\" or a duration: {e}")),
    _ => v.expected("\"manual\" or a duration such as \"5m\""),
});

/// Picks one of a few words.
fn one_of<T: Copy>(v: &Scalar, choices: &[(&str, T)]) -> Result<T, String> {
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let what = format!("one of {}", names.join(", "));
    match v {
        Scalar::Str(s) => choices
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("expected {what}, found {s:?}")),
        _ => v.expected(&what),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checking(pub HostKeyChecking);

from_scalar!(Checking, |v| one_of(
    &v,
    &[
        ("strict", HostKeyChecking::Strict),
        ("accept-new", HostKeyChecking::AcceptNew),
        ("off", HostKeyChecking::Off),
    ]
)
.map(Checking));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnFailureValue(pub OnFailure);

from_scalar!(OnFailureValue, |v| one_of(
    &v,
    &[("rollback", OnFailure::Rollback), ("stop", OnFailure::Stop)]
)
.map(OnFailureValue));

/// `strategy.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindValue(pub StrategyKind);

from_scalar!(KindValue, |v| one_of(
    &v,
    &[
        ("rolling", StrategyKind::Rolling),
        ("blue-green", StrategyKind::BlueGreen)
    ]
)
.map(KindValue));

/// `strategy.wave_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveByValue(pub WaveBy);

from_scalar!(WaveByValue, |v| one_of(
    &v,
    &[("host", WaveBy::Host), ("zone", WaveBy::Zone)]
)
.map(WaveByValue));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Ssh,
    Local,
}

from_scalar!(TransportKind, |v| one_of(
    &v,
    &[("ssh", TransportKind::Ssh), ("local", TransportKind::Local)]
));

/// A list of strings; a single string is a list of one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Strings(pub Vec<String>);

from_scalar!(Strings, |v| {
    let what = "a string or an array of strings";
    match v {
        Scalar::Str(s) => Ok(Strings(vec![s])),
        Scalar::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Scalar::Str(s) => Ok(s),
                other => other.expected("a string"),
            })
            .collect::<Result<_, _>>()
            .map(Strings),
        other => other.expected(what),
    }
});

/// A group's `hosts`: names or patterns such as `web[01:20].example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPatterns(pub Vec<String>);

const HOSTS_EXAMPLE: &str = "hosts = [\"web1\", \"web[01:20].example.com\"]";

from_scalar!(HostPatterns, |v| match v {
    Scalar::Array(items) => items
        .into_iter()
        .map(|i| match i {
            Scalar::Str(s) => Ok(s),
            other => other.expected(&format!("host names as strings, e.g. {HOSTS_EXAMPLE}")),
        })
        .collect::<Result<_, _>>()
        .map(HostPatterns),
    other => other.expected(&format!("an array of host names, e.g. {HOSTS_EXAMPLE}")),
});

/// Paths on this machine (key files, known_hosts): like `Strings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct LocalPaths(pub Strings);

/// A user name to log in as; checked when resolved (see `ssh_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct User(pub String);

/// Hook commands: like `Strings`, but none may be blank.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commands(pub Vec<String>);

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Strings(list) = Strings::deserialize(d)?;
        if list.iter().any(|c| c.trim().is_empty()) {
            return Err(de::Error::custom("a command is empty"));
        }
        Ok(Commands(list))
    }
}

/// A name for an app, host or group: `[A-Za-z0-9_.-]+`, not starting with
/// '-' (it would read as an option) and not only dots (it would read as a
/// directory).
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} starts with '-'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{s:?} has {c:?}; names may hold only letters, digits, '_', '.' and '-'"
        ));
    }
    if s.chars().all(|c| c == '.') {
        return Err(format!("{s:?} is not a usable name"));
    }
    Ok(())
}

/// A checked name, usable as a map key (host and group tables).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_name(&s).map_err(de::Error::custom)?;
        Ok(Name(s))
    }
}

/// An absolute path on a host: no `..`, no newline.
pub fn check_remote_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "expected an absolute path (starting with /), found {s:?}"
        ));
    }
    if s.contains(['\n', '\r', '\0']) {
        return Err(format!("{s:?} holds a line break or NUL"));
    }
    if s.split('/').any(|part| part == "..") {
        return Err(format!("{s:?} holds `..`; write the path without it"));
    }
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("deploy_to cannot be / itself".into());
    }
    Ok(trimmed.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath(pub String);

from_scalar!(RemotePath, |v| match &v {
    Scalar::Str(s) => check_remote_path(s).map(RemotePath),
    _ => v.expected("an absolute path"),
});

/// Host variables: names become HOIST_VAR_<NAME>, so they must be shell
/// identifiers; values may be strings, numbers or booleans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vars(pub BTreeMap<String, String>);

pub fn check_var_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "var name {name:?} cannot be an environment variable name; use letters, digits and '_', not starting with a digit"
        ))
    }
}

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
        let mut vars = BTreeMap::new();
        for (name, value) in raw {
            check_var_name(&name).map_err(de::Error::custom)?;
            let value = match value {
                Scalar::Str(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Huge(_) => {
                    return Err(de::Error::custom(format!(
                        "var {name}: found {}; quote it to pass it as a string",
                        value.found()
                    )));
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "var {name}: expected a string, number or boolean, found {}",
                        other.found()
                    )));
                }
            };
            if value.contains('\0') {
                return Err(de::Error::custom(format!("var {name} holds a NUL byte")));
            }
            vars.insert(name, value);
        }
        Ok(Vars(vars))
    }
}

/// One jump host as written: `[user@]host[:port]`. What the text leaves out
/// comes later from ~/.ssh/config or the target's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub user: Option<String>,
    pub address: String,
    pub port: Option<u16>,
}

/// `jump = "user@host:port"`, or a chain "a,b" (outermost first); "" = none.
/// ProxyJump's `ssh://[user@]host[:port]` form is accepted too.
pub fn parse_jump(s: &str) -> Result<Vec<Hop>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|hop| parse_hop(hop.trim())).collect()
}

fn parse_hop(hop: &str) -> Result<Hop, String> {
    let bad = |why: &str| {
        Err(format!(
            "jump host {hop:?}: {why}; write it as [user@]host[:port]"
        ))
    };
    if hop.is_empty() {
        return bad("empty entry");
    }
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, hop),
    };
    if let Some(u) = user
        && (u.is_empty() || u.contains([' ', '\t', '@', ':']) || u.starts_with('-'))
    {
        return bad("bad user");
    }
    // [v6]:port, host:port, host
    let (address, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, "")) => (addr, None),
            Some((addr, tail)) => match tail.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return bad("unexpected text after ]"),
            },
            None => return bad("missing ]"),
        }
    } else {
        match rest.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        }
    };
    if address.is_empty() || address.contains(char::is_whitespace) || address.starts_with('-') {
        return bad("bad address");
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return bad("bad port"),
        },
    };
    Ok(Hop {
        user: user.map(str::to_string),
        address: address.to_string(),
        port,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump(pub Vec<Hop>);

from_scalar!(Jump, |v| match &v {
    Scalar::Str(s) => parse_jump(s).map(Jump),
    _ => v.expected("a string such as \"ops@bastion.example.com:22\""),
});

#[cfg(test)]
mod tests {
    use super::*;

    fn value<T: for<'de> Deserialize<'de>>(toml_value: &str) -> Result<T, String> {
        #[derive(serde::Deserialize)]
        struct W<T> {
            v: T,
        }
        toml::from_str::<W<T>>(&format!("v = {toml_value}"))
            .map(|w| w.v)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(value::<Dur>("\"10s\"").unwrap().0, Duration::from_secs(10));
        assert_eq!(value::<Dur>("\"2m\"").unwrap().0, Duration::from_secs(120));
        assert_eq!(
            value::<Dur>("\"1h30m\"").unwrap().0,
            Duration::from_secs(5400)
        );
        assert_eq!(value::<Dur>("\"0s\"").unwrap().0, Duration::ZERO);
        let err = value::<Dur>("10").unwrap_err();
        assert!(err.contains("expected a duration"), "{err}");
        let err = value::<Dur>("\"10 parsecs\"").unwrap_err();
        assert!(err.contains("invalid duration"), "{err}");
        let err = value::<NonZeroDur>("\"0s\"").unwrap_err();
        assert!(err.contains("longer than 0s"), "{err}");
    }

    #[test]
    fn amounts() {
        assert_eq!(value::<AmountOrNone>("0").unwrap().0, Amount::Hosts(0));
        assert_eq!(value::<AmountOrNone>("3").unwrap().0, Amount::Hosts(3));
        assert_eq!(
            value::<AmountOrNone>("\"10%\"").unwrap().0,
            Amount::Percent(10)
        );
        assert_eq!(
            value::<AmountOrNone>("\"100%\"").unwrap().0,
            Amount::Percent(100)
        );
        for bad in [
            "\"0%\"",
            "\"101%\"",
            "\"ten%\"",
            "\"10\"",
            "-1",
            "1.5",
            "\"12.5%\"",
        ] {
            assert!(value::<AmountOrNone>(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn batches_and_ramps() {
        assert_eq!(value::<Batch>("5").unwrap().0, vec![Amount::Hosts(5)]);
        assert_eq!(
            value::<Batch>("\"25%\"").unwrap().0,
            vec![Amount::Percent(25)]
        );
        assert_eq!(
            value::<Batch>("[1, \"10%\", \"50%\", \"100%\"]").unwrap().0,
            vec![
                Amount::Hosts(1),
                Amount::Percent(10),
                Amount::Percent(50),
                Amount::Percent(100)
            ]
        );
        assert!(value::<Batch>("0").unwrap_err().contains("at least 1"));
        assert!(value::<Batch>("[]").unwrap_err().contains("empty array"));
        let err = value::<Batch>("[1, \"200%\"]").unwrap_err();
        assert!(err.contains("ramp step 2"), "{err}");
    }

    #[test]
    fn pauses() {
        assert_eq!(value::<PauseValue>("\"manual\"").unwrap().0, Pause::Manual);
        assert_eq!(
            value::<PauseValue>("\"5m\"").unwrap().0,
            Pause::For(Duration::from_secs(300))
        );
        assert!(value::<PauseValue>("\"later\"").is_err());
    }

    #[test]
    fn words() {
        assert_eq!(
            value::<Checking>("\"accept-new\"").unwrap().0,
            HostKeyChecking::AcceptNew
        );
        let err = value::<Checking>("\"yes\"").unwrap_err();
        assert!(err.contains("\"strict\", \"accept-new\", \"off\""), "{err}");
        assert_eq!(
            value::<OnFailureValue>("\"stop\"").unwrap().0,
            OnFailure::Stop
        );
        assert!(value::<OnFailureValue>("\"retry\"").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(value::<Port>("2222").unwrap().0, 2222);
        assert!(value::<Port>("0").is_err());
        assert!(value::<Port>("70000").is_err());
        assert!(
            value::<Port>("\"22\"")
                .unwrap_err()
                .contains("found string")
        );
        assert_eq!(value::<Positive>("1").unwrap().0, 1);
        assert!(value::<Positive>("0").is_err());
        assert_eq!(value::<Positive<3>>("3").unwrap().0, 3);
        let err = value::<Positive<3>>("4").unwrap_err();
        assert!(err.contains("(at most 3), found integer 4"), "{err}");
    }

    #[test]
    fn integers_beyond_64_bits_are_named_with_the_accepted_range() {
        for (huge, as_written) in [
            ("99999999999999999999", "99999999999999999999"),
            ("-99999999999999999999", "-99999999999999999999"),
            ("18446744073709551615", "18446744073709551615"),
        ] {
            let err = value::<Port>(huge).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "expected a port number (1-65535), found integer {as_written}, beyond TOML's 64-bit integers"
                )
            );
            let err = value::<Positive>(huge).unwrap_err();
            assert!(
                err.starts_with("expected a whole number >= 1, found integer"),
                "{err}"
            );
        }
        let err = value::<Vars>("{ big = 99999999999999999999 }").unwrap_err();
        assert!(
            err.contains("var big: found integer 99999999999999999999"),
            "{err}"
        );
        assert!(err.contains("quote it"), "{err}");
    }

    #[test]
    fn jump_hosts() {
        assert_eq!(
            parse_jump("ops@bastion.example.com:2222").unwrap(),
            vec![Hop {
                user: Some("ops".into()),
                address: "bastion.example.com".into(),
                port: Some(2222)
            }]
        );
        let chain = parse_jump("a, me@b").unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].user, None);
        assert_eq!(chain[0].port, None);
        assert_eq!(parse_jump("ssh://ops@b:2200").unwrap()[0].port, Some(2200));
        assert_eq!(chain[1].address, "b");
        assert_eq!(parse_jump("[fd00::1]:2200").unwrap()[0].address, "fd00::1");
        assert!(parse_jump("").unwrap().is_empty());
        for bad in ["a,,b", "@b", "b:0", "b:x", "-oProxyCommand=x", "[::1"] {
            assert!(parse_jump(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("web-01.example.com").is_ok());
        assert!(check_name("db_2").is_ok());
        for bad in ["", "-web", "web 1", "web/1", "..", "wéb"] {
            assert!(check_name(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn remote_paths() {
        assert_eq!(check_remote_path("/srv/app/").unwrap(), "/srv/app");
        for bad in ["srv/app", "/srv/../etc", "/srv/a\nb", "/", "//"] {
            assert!(check_remote_path(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn var_names_and_values() {
        let vars = value::<Vars>("{ region = \"eu\", weight = 3, canary = true }").unwrap();
        assert_eq!(vars.0["weight"], "3");
        assert_eq!(vars.0["canary"], "true");
        assert!(value::<Vars>("{ 1st = \"x\" }").is_err());
        assert!(value::<Vars>("{ \"my-var\" = \"x\" }").is_err());
        assert!(value::<Vars>("{ list = [1] }").is_err());
    }

    #[test]
    fn commands_and_strings() {
        assert_eq!(value::<Commands>("\"make\"").unwrap().0, ["make"]);
        assert_eq!(value::<Commands>("[\"a\", \"b\"]").unwrap().0, ["a", "b"]);
        assert!(value::<Commands>("[\"\"]").is_err());
        assert!(value::<Strings>("[1]").is_err());
    }
}
