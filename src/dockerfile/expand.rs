//! ARG/ENV scope and the expansion of instruction words, as BuildKit's `dockerfile2llb`
//! does it (`dispatch`, `dispatchArg`, `dispatchEnv`, the meta-ARG handling of `toDispatchState`).
//!
//! Scope rules (Dockerfile reference, "ARG" → "Scope", "Using ARG variables", "Predefined
//! ARGs"; "ENV"):
//! * ARGs before FROM are global: visible in FROM only. Inside the stage, `ARG NAME`
//!   without a default takes the global value.
//! * A build argument (`--build-arg`) overrides the default of the ARG it names.
//! * In the stage, base-image Env, ENV and ARG values live in one environment where the
//!   latest assignment wins (BuildKit's `state.AddEnv`): ENV after ARG overrides it, and
//!   expansion and RUN both see that environment. Only ENV (and the base Env) reaches the
//!   image config.
//! * The proxy variables (`HTTP_PROXY`, …) given as build arguments reach RUN without
//!   being declared, and never the image.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::Fail;
use super::words::{Lex, Lookup};
use super::{ArgDecl, CopySpec, DockerfileError, FromSpec, Instruction, KeyValue, Kind};

/// BuildKit's predefined proxy ARGs.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Total expansion output allowed for one instruction.
const MAX_INSTRUCTION_OUTPUT: usize = 64 << 20;

/// Tracks ARG/ENV scope across one Dockerfile and expands its instructions.
///
/// Feed it every instruction in order; call [`Expander::set_base_env`] right after
/// expanding FROM (once the base image config is known).
#[derive(Debug)]
pub struct Expander {
    build_args: BTreeMap<String, String>,
    /// Every ARG name declared anywhere (for [`Expander::unused_build_args`]).
    declared: BTreeSet<String>,
    /// ARGs declared before FROM: name → value (`None`: declared without a value).
    global: BTreeMap<String, Option<String>>,
    /// Automatic platform ARGs (global scope, like BuildKit's `TARGETPLATFORM`, …).
    automatic: BTreeMap<String, String>,
    in_stage: bool,
    env: StageEnv,
}

/// Which of BuildKit's automatic platform ARGs [`Expander::set_platform`] defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformRole {
    /// `TARGET*`: the platform the image is built for.
    Target,
    /// `BUILD*`: the platform of the machine building it.
    Build,
}

/// The stage environment: one entry per name, remembering both the config (base Env and
/// ENV) value and the ARG value, each with the sequence number of its assignment.
#[derive(Debug, Default)]
struct StageEnv {
    vars: BTreeMap<String, Var>,
    /// Config Env names in first-assignment order (Docker keeps that order).
    config_order: Vec<String>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Var {
    config: Option<(String, u64)>,
    arg: Option<(String, u64)>,
}

impl Var {
    /// The value in effect: the later of the config and the ARG assignment.
    fn current(&self) -> Option<&str> {
        match (&self.config, &self.arg) {
            (Some((c, cs)), Some((a, asq))) => Some(if asq > cs { a } else { c }),
            (Some((c, _)), None) => Some(c),
            (None, Some((a, _))) => Some(a),
            (None, None) => None,
        }
    }

    /// The ARG value, when it is the one in effect.
    fn arg_in_effect(&self) -> Option<&str> {
        match (&self.config, &self.arg) {
            (None, Some((a, _))) => Some(a),
            (Some((_, cs)), Some((a, asq))) if asq > cs => Some(a),
            _ => None,
        }
    }
}

impl StageEnv {
    fn set_config(&mut self, key: &str, value: &str) {
        self.seq += 1;
        let var = self.vars.entry(key.to_owned()).or_default();
        if var.config.is_none() {
            self.config_order.push(key.to_owned());
        }
        var.config = Some((value.to_owned(), self.seq));
    }

    fn set_arg(&mut self, key: &str, value: &str) {
        self.seq += 1;
        self.vars.entry(key.to_owned()).or_default().arg = Some((value.to_owned(), self.seq));
    }
}

impl Lookup for StageEnv {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(Var::current)
    }
}

/// The global scope: ARGs declared before FROM, then the automatic platform ARGs.
struct Global<'a> {
    args: &'a BTreeMap<String, Option<String>>,
    automatic: &'a BTreeMap<String, String>,
}

impl Lookup for Global<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        match self.args.get(name) {
            Some(Some(v)) => Some(v),
            _ => self.automatic.get(name).map(String::as_str),
        }
    }
}

/// Expand one word, charging its size to the instruction's output budget.
fn word(lex: Lex, env: &dyn Lookup, src: &str, left: &mut usize) -> Result<String, Fail> {
    let w = lex.word(src, env).map_err(Fail::Expansion)?;
    charge(left, w.len())?;
    Ok(w)
}

fn charge(left: &mut usize, n: usize) -> Result<(), Fail> {
    *left = left
        .checked_sub(n)
        .ok_or_else(|| Fail::TooLarge(format!("instruction expands to more than {MAX_INSTRUCTION_OUTPUT} bytes")))?;
    Ok(())
}

fn expand_kvs(
    lex: Lex,
    env: &dyn Lookup,
    kvs: &[KeyValue],
    what: &str,
    left: &mut usize,
) -> Result<Vec<KeyValue>, Fail> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let key = word(lex, env, &kv.key, left)?;
        if key.is_empty() {
            return Err(Fail::Syntax(format!("{what} names can not be blank")));
        }
        let value = word(lex, env, &kv.value, left)?;
        out.push(KeyValue { key, value });
    }
    Ok(out)
}

fn expand_copy(lex: Lex, env: &dyn Lookup, spec: &CopySpec, left: &mut usize) -> Result<CopySpec, Fail> {
    let mut sources = Vec::with_capacity(spec.sources.len());
    for s in &spec.sources {
        sources.push(word(lex, env, s, left)?);
    }
    let dest = word(lex, env, &spec.dest, left)?;
    let mut flag = |v: &Option<String>| -> Result<Option<String>, Fail> {
        Ok(match v {
            Some(v) => Some(word(lex, env, v, left)?).filter(|v| !v.is_empty()),
            None => None,
        })
    };
    let chown = flag(&spec.chown)?;
    let chmod = flag(&spec.chmod)?;
    if let Some(m) = &chmod
        && !(m.bytes().all(|b| (b'0'..=b'7').contains(&b)) && u32::from_str_radix(m, 8).is_ok_and(|v| v <= 0o7777))
    {
        return Err(Fail::Syntax(format!("invalid --chmod={m:?}: only octal modes such as 0755 are supported")));
    }
    // Here-document bodies: only `$` expands (quotes are content), and `\` always escapes,
    // whatever the escape directive (BuildKit `ExpandRaw` with `SkipProcessQuotes`).
    let raw = Lex { skip_quotes: true, ..Lex::new('\\') };
    let mut heredocs = spec.heredocs.clone();
    for doc in heredocs.iter_mut().filter(|d| d.expand) {
        doc.content = word(raw, env, &doc.content, left)?;
    }
    Ok(CopySpec { sources, heredocs, dest, chown, chmod, link: spec.link })
}

/// `EXPOSE` words → `port/proto` keys (Docker `nat.ParsePortSpecs` for `port[-port][/proto]`).
fn port_keys(spec: &str) -> Result<Vec<String>, Fail> {
    let bad = || Fail::Syntax(format!("invalid port specification in EXPOSE: {spec:?}"));
    let (port, proto) = match spec.split_once('/') {
        Some((p, "")) => (p, "tcp".to_owned()),
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Fail::Syntax(format!("invalid protocol {proto:?} in EXPOSE {spec:?} (tcp, udp or sctp)")));
    }
    let num = |s: &str| -> Result<u16, Fail> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let p = num(port)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// moby `signal.ParseSignal` for Linux: a non-zero number or a signal name, `SIG` optional.
fn valid_signal(s: &str) -> bool {
    const NAMES: [&str; 36] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
        "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
        "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
    ];
    if let Ok(n) = s.parse::<i64>() {
        return n != 0;
    }
    let upper = s.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |prefix: &str, sign: char, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(sign))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    NAMES.contains(&name) || offset("RTMIN", '+', 15) || offset("RTMAX", '-', 14)
}

impl Expander {
    /// A fresh scope with the build arguments (`--build-arg NAME=value`) of this build.
    pub fn new(build_args: BTreeMap<String, String>) -> Expander {
        Expander {
            build_args,
            declared: BTreeSet::new(),
            global: BTreeMap::new(),
            automatic: BTreeMap::new(),
            in_stage: false,
            env: StageEnv::default(),
        }
    }

    /// Define BuildKit's automatic platform ARGs of `role` for `os/arch[/variant]`: `TARGETPLATFORM`,
    /// `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` name the platform built for, the same `BUILD*` the
    /// machine building (they differ in a cross build through qemu-user). Usable in FROM, and in the stage
    /// after `ARG TARGETARCH` etc.
    pub fn set_platform(&mut self, role: PlatformRole, os: &str, arch: &str, variant: Option<&str>) {
        let prefix = match role {
            PlatformRole::Target => "TARGET",
            PlatformRole::Build => "BUILD",
        };
        let platform = match variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        };
        self.automatic.insert(format!("{prefix}PLATFORM"), platform);
        self.automatic.insert(format!("{prefix}OS"), os.to_owned());
        self.automatic.insert(format!("{prefix}ARCH"), arch.to_owned());
        self.automatic.insert(format!("{prefix}VARIANT"), variant.unwrap_or_default().to_owned());
    }

    /// The base image config's `Env` (`NAME=value` strings): visible to expansion and the
    /// starting point of [`Expander::config_env`]. Call right after expanding FROM.
    pub fn set_base_env(&mut self, env: &[String]) {
        for e in env {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            self.env.set_config(k, v);
        }
    }

    /// Expand `ins` in the current scope and return it with processed words; ARG and ENV
    /// also update the scope. Instructions BuildKit does not expand come back unchanged.
    pub fn expand(&mut self, ins: &Instruction) -> Result<Instruction, DockerfileError> {
        let kind = self.expand_kind(ins).map_err(|f| f.at(&ins.path, ins.line))?;
        Ok(Instruction {
            line: ins.line,
            end_line: ins.end_line,
            path: ins.path.clone(),
            escape: ins.escape,
            original: ins.original.clone(),
            kind,
        })
    }

    /// The variables RUN must get on top of the image config's Env: ARG values still in
    /// effect (not overridden by a later ENV) and undeclared proxy build arguments. None of
    /// these may be written to the image config.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out = self.args_in_effect();
        out.extend(self.undeclared_proxies());
        out
    }

    /// The proxy build arguments (`HTTP_PROXY`, …) given but not declared by ARG or set by ENV: RUN gets
    /// them as BuildKit gives them, outside the image config and outside the step's cache key.
    pub fn undeclared_proxies(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter(|name| !self.env.vars.contains_key(**name))
            .filter_map(|name| self.build_args.get(*name).map(|v| ((*name).to_owned(), v.clone())))
            .collect()
    }

    /// The ARG values still in effect (declared, not overridden by a later ENV): what a RUN's result may
    /// depend on besides the config's Env. Unlike [`Expander::run_env`] it leaves out the undeclared proxy
    /// arguments, which — as in BuildKit — do not enter a step's cache key: machines behind different
    /// proxies share steps.
    pub fn args_in_effect(&self) -> Vec<(String, String)> {
        self.env.vars.iter().filter_map(|(k, v)| v.arg_in_effect().map(|a| (k.clone(), a.to_owned()))).collect()
    }

    /// The image config's `Env`: the base Env updated by every ENV so far, in Docker's
    /// order (a redefined name keeps its place).
    pub fn config_env(&self) -> Vec<String> {
        self.env
            .config_order
            .iter()
            .filter_map(|k| {
                let (v, _) = self.env.vars.get(k)?.config.as_ref()?;
                Some(format!("{k}={v}"))
            })
            .collect()
    }

    /// Build arguments that no ARG declared (Docker warns "[…] were not consumed"); the
    /// predefined proxy arguments never count.
    pub fn unused_build_args(&self) -> Vec<String> {
        self.build_args
            .keys()
            .filter(|k| !self.declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    fn global(&self) -> Global<'_> {
        Global { args: &self.global, automatic: &self.automatic }
    }

    fn expand_kind(&mut self, ins: &Instruction) -> Result<Kind, Fail> {
        let lex = Lex::new(ins.escape);
        let mut left = MAX_INSTRUCTION_OUTPUT;
        let left = &mut left;
        let keyword = ins.kind.keyword();
        match &ins.kind {
            Kind::From(_) | Kind::Arg(_) => {}
            _ if !self.in_stage => {
                return Err(Fail::Syntax(format!("{keyword} before FROM: only ARG may precede the first FROM")));
            }
            _ => {}
        }
        Ok(match &ins.kind {
            Kind::From(f) => {
                if self.in_stage {
                    return Err(Fail::Unsupported("multi-stage builds are not supported: second FROM".into()));
                }
                let g = self.global();
                let image = word(lex, &g, &f.image, left)?;
                if image.is_empty() {
                    return Err(Fail::Syntax(format!("base name ({}) should not be blank", f.image)));
                }
                let platform = match &f.platform {
                    Some(p) => Some(word(lex, &g, p, left)?).filter(|p| !p.is_empty()),
                    None => None,
                };
                self.in_stage = true;
                Kind::From(FromSpec { image, name: f.name.clone(), platform })
            }
            Kind::Arg(decls) => Kind::Arg(self.args(lex, decls, left)?),
            Kind::Env(kvs) => {
                // Every pair sees the environment from before the instruction.
                let kvs = expand_kvs(lex, &self.env, kvs, "ENV", left)?;
                for kv in &kvs {
                    self.env.set_config(&kv.key, &kv.value);
                }
                Kind::Env(kvs)
            }
            Kind::Label(kvs) => Kind::Label(expand_kvs(lex, &self.env, kvs, "LABEL", left)?),
            Kind::Copy(spec) => Kind::Copy(expand_copy(lex, &self.env, spec, left)?),
            Kind::Add(spec) => Kind::Add(expand_copy(lex, &self.env, spec, left)?),
            Kind::Expose(ports) => {
                let mut keys = Vec::new();
                for p in ports {
                    let split = lex.words(p, &self.env).map_err(Fail::Expansion)?;
                    for w in split {
                        // Ranges multiply: charge every key (and its allocation).
                        for key in port_keys(&w)? {
                            charge(left, key.len() + std::mem::size_of::<String>())?;
                            keys.push(key);
                        }
                    }
                }
                Kind::Expose(keys)
            }
            Kind::Volume(vols) => {
                let mut out = Vec::with_capacity(vols.len());
                for v in vols {
                    let v = word(lex, &self.env, v, left)?;
                    if v.is_empty() {
                        return Err(Fail::Syntax("VOLUME specified can not be an empty string".into()));
                    }
                    out.push(v);
                }
                Kind::Volume(out)
            }
            Kind::User(u) => Kind::User(word(lex, &self.env, u, left)?),
            Kind::Workdir(w) => Kind::Workdir(word(lex, &self.env, w, left)?),
            Kind::StopSignal(s) => {
                let s = word(lex, &self.env, s, left)?;
                if !valid_signal(&s) {
                    return Err(Fail::Syntax(format!("invalid STOPSIGNAL {s:?}")));
                }
                Kind::StopSignal(s)
            }
            Kind::Run(_)
            | Kind::Cmd(_)
            | Kind::Entrypoint(_)
            | Kind::Shell(_)
            | Kind::Healthcheck(_)
            | Kind::Maintainer(_) => ins.kind.clone(),
        })
    }

    /// BuildKit `dispatchArg` (stage) and the meta-ARG loop (global scope).
    fn args(&mut self, lex: Lex, decls: &[ArgDecl], left: &mut usize) -> Result<Vec<ArgDecl>, Fail> {
        let mut out = Vec::with_capacity(decls.len());
        for d in decls {
            self.declared.insert(d.name.clone());
            let given = self.build_args.get(&d.name).cloned();
            let value = match (given, &d.default) {
                (Some(v), _) => Some(v),
                // Expanded in the scope as it is now: `ARG A=1 B=$A` gives B=1.
                (None, Some(def)) if self.in_stage => Some(word(lex, &self.env, def, left)?),
                (None, Some(def)) => Some(word(lex, &self.global(), def, left)?),
                (None, None) if self.in_stage => self.global().lookup(&d.name).map(str::to_owned),
                (None, None) => None,
            };
            if self.in_stage {
                if let Some(v) = &value {
                    self.env.set_arg(&d.name, v);
                }
            } else {
                self.global.insert(d.name.clone(), value.clone());
            }
            out.push(ArgDecl { name: d.name.clone(), default: value });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_normalise_and_expand_ranges() {
        assert_eq!(port_keys("80").ok(), Some(vec!["80/tcp".to_owned()]));
        assert_eq!(port_keys("53/UDP").ok(), Some(vec!["53/udp".to_owned()]));
        assert_eq!(
            port_keys("8000-8002/tcp").ok(),
            Some(vec!["8000/tcp".into(), "8001/tcp".into(), "8002/tcp".into()])
        );
        assert!(port_keys("+80").is_err());
        assert!(port_keys("80/icmp").is_err());
        assert!(port_keys("9-1").is_err());
        assert!(port_keys("70000").is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGWINCH"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["0", "SIGFOO", "RTMIN+16", "", "SIG"] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }
}
