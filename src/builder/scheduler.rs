//! Many images at once: parents first, independent images in parallel, as kolla-build schedules them —
//! an image is queued the moment its parent is built (not level by level). When an image fails, its
//! descendants are not attempted and are reported with status `parent_error`; the rest go on.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::Serialize;

use super::fleet::failed_elsewhere;
use super::{BuildOptions, BuildRequest, FailureReport, Fleet, InRun, Workspace, build_image};
use crate::attest::{self, BuildFacts, ImageBuild, SourceArchive};
use crate::config::{self, ImageSources};
use crate::sources::{self, PreparedSource, SourceOptions};

/// One image to build.
#[derive(Debug, Clone)]
pub struct Job {
    /// Short name (`nova-api`): names the log file and the summary entry.
    pub name: String,
    /// The tag to give it in the store (`kolla/nova-api:2026.2-debian-bookworm`).
    pub tag: String,
    /// The rendered Dockerfile.
    pub dockerfile: PathBuf,
    /// Its build context.
    pub context: PathBuf,
    /// Index (in the job list) of the job that builds its `FROM` image, if that is part of this run.
    pub parent: Option<usize>,
    /// The name its Dockerfile's `FROM` gives its parent in the Kolla tree (built in this run or
    /// not); `None` for a root image. The provenance names it as the parent.
    pub parent_image: Option<String>,
    /// kolla sources to archive into the context first (`None`: the context is complete as it is).
    pub sources: Option<ImageSources>,
    /// Another shard builds this image: take its steps from the remote cache (see
    /// [`super::CacheWait`]); it gets no attestations here (its owner records them), unless its owner is
    /// lost and this shard builds it instead.
    pub cache_wait: Option<super::CacheWait>,
    /// The Kolla template the Dockerfile was rendered from: errors in the rendered Dockerfile name it.
    pub template: Option<TemplateSource>,
}

/// Where a rendered Dockerfile comes from, for messages that point at what the user has.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    /// The `Dockerfile.j2` (in the template tree or a `--docker-dir`).
    pub path: PathBuf,
    /// Whether the rendered Dockerfile stays where it was rendered after the run (`--work-dir`);
    /// otherwise a failed image's rendered Dockerfile is kept in `--logs-dir`, if given.
    pub rendered_kept: bool,
}

/// How the run is carried out.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Images built at the same time (`--threads`); at least 1.
    pub threads: usize,
    /// One `<name>.log` per image here, plus `000_FAILED_<name>.log` links (`--logs-dir`).
    pub logs_dir: Option<PathBuf>,
    /// How jobs' kolla sources are fetched.
    pub sources: Option<SourceOptions>,
    /// Record each built image's SBOM and provenance with these run-wide facts (`None`:
    /// `--no-attestations`).
    pub attest: Option<BuildFacts>,
    /// Show each image's build output (steps and RUN output) on the console, every line prefixed with
    /// the image's name, as kolla-build shows its image logs (`--quiet` turns it off; a failed RUN's last
    /// lines are then part of its error).
    pub echo: bool,
    /// The fleet this run is part of (`--shard`): an image that fails here is published for the shards
    /// waiting for it.
    pub fleet: Option<Arc<Fleet>>,
}

/// Outcome of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Built (or entirely cached).
    Built {
        /// Layers made by this run.
        layers_built: usize,
        /// Steps answered by the cache.
        layers_cached: usize,
    },
    /// Its build failed with this message.
    Failed(String),
    /// Not attempted because an ancestor failed.
    ParentError,
    /// Another shard builds it (`--shard`) and published that its build failed, with this message:
    /// reported as `parent_error`, as its descendants are.
    FailedElsewhere(String),
}

/// The result of a run, one outcome per job (same order).
#[derive(Debug)]
pub struct RunReport {
    /// Outcome per job.
    pub outcomes: Vec<Outcome>,
}

/// kolla-build's summary JSON shape, plus our layer counts.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// `[{"name": …}]`
    pub built: Vec<NameEntry>,
    /// `[{"name": …, "status": "error" | "parent_error"}]`
    pub failed: Vec<FailedEntry>,
    /// Images not selected.
    pub not_matched: Vec<NameEntry>,
    /// Images selected but skipped (`--skip-parents`, `--skip-existing`).
    pub skipped: Vec<NameEntry>,
    /// Images excluded by the unbuildable matrix.
    pub unbuildable: Vec<NameEntry>,
    /// Layers this run produced (0 on a fully cached rebuild).
    pub layers_built: usize,
    /// Steps answered by the cache.
    pub layers_cached: usize,
}

/// An image name in the summary.
#[derive(Debug, Serialize)]
pub struct NameEntry {
    /// The image name.
    pub name: String,
}

/// A failed image in the summary.
#[derive(Debug, Serialize)]
pub struct FailedEntry {
    /// The image name.
    pub name: String,
    /// `error` or `parent_error`, as kolla-build says.
    pub status: String,
}

impl RunReport {
    /// Whether every job was built.
    pub fn all_built(&self) -> bool {
        self.outcomes.iter().all(|o| matches!(o, Outcome::Built { .. }))
    }

    /// Fill `summary`'s built/failed lists and layer counts from this report.
    pub fn fill(&self, jobs: &[Job], summary: &mut Summary) {
        for (job, outcome) in jobs.iter().zip(&self.outcomes) {
            match outcome {
                Outcome::Built { layers_built, layers_cached } => {
                    summary.built.push(NameEntry { name: job.name.clone() });
                    summary.layers_built += layers_built;
                    summary.layers_cached += layers_cached;
                }
                Outcome::Failed(_) => {
                    summary.failed.push(FailedEntry { name: job.name.clone(), status: "error".into() })
                }
                Outcome::ParentError | Outcome::FailedElsewhere(_) => {
                    summary.failed.push(FailedEntry { name: job.name.clone(), status: "parent_error".into() })
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done(bool),
}

struct Shared {
    state: Vec<State>,
    ready: VecDeque<usize>,
    outcomes: Vec<Option<Outcome>>,
    running: usize,
}

/// Build `jobs` (parents listed anywhere; `parent` links must point inside `jobs`).
pub fn run(ws: &Workspace, jobs: &[Job], opts: &BuildOptions, run: &RunOptions) -> RunReport {
    let mut shared = Shared {
        state: vec![State::Waiting; jobs.len()],
        ready: jobs.iter().enumerate().filter(|(_, j)| j.parent.is_none()).map(|(i, _)| i).collect(),
        outcomes: vec![None; jobs.len()],
        running: 0,
    };
    for &i in &shared.ready {
        shared.state[i] = State::Running;
    }
    let shared = Mutex::new(shared);
    let wake = Condvar::new();
    // An image whose steps are done is handed off: its children start while its layers compress.
    let handed_off = |tag: &str| {
        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
        for (c, job) in jobs.iter().enumerate() {
            let parent_is = |p: usize| jobs[p].tag == tag && job.parent_image.as_deref() == Some(tag);
            if job.parent.is_some_and(parent_is) && g.state[c] == State::Waiting {
                g.state[c] = State::Running;
                g.ready.push_back(c);
            }
        }
        wake.notify_all();
    };
    let in_run = InRun::new(&handed_off);
    let progress = Progress::new(jobs.len());
    let workers = run.threads.max(1).min(jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| worker(ws, jobs, opts, run, &in_run, &shared, &wake, &progress));
        }
    });
    progress.finish();
    let outcomes = shared.into_inner().unwrap_or_else(|e| e.into_inner()).outcomes;
    RunReport { outcomes: outcomes.into_iter().map(|o| o.unwrap_or(Outcome::ParentError)).collect() }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    ws: &Workspace,
    jobs: &[Job],
    opts: &BuildOptions,
    run: &RunOptions,
    in_run: &InRun,
    shared: &Mutex<Shared>,
    wake: &Condvar,
    progress: &Progress,
) {
    loop {
        let i = {
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(i) = g.ready.pop_front() {
                    g.running += 1;
                    break i;
                }
                if g.running == 0 {
                    wake.notify_all();
                    return;
                }
                g = wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        };
        progress.start(&jobs[i].name);
        let outcome = build_one(ws, &jobs[i], opts, run, in_run, progress);
        progress.done(&jobs[i].name, &outcome);
        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
        let ok = matches!(outcome, Outcome::Built { .. });
        g.state[i] = State::Done(ok);
        g.outcomes[i] = Some(outcome);
        g.running -= 1;
        for (c, job) in jobs.iter().enumerate() {
            if job.parent == Some(i) && g.state[c] == State::Waiting {
                if ok {
                    g.state[c] = State::Running;
                    g.ready.push_back(c);
                } else {
                    mark_parent_error(jobs, c, &mut g);
                }
            }
        }
        wake.notify_all();
    }
}

/// `c` and all its descendants are not attempted.
fn mark_parent_error(jobs: &[Job], c: usize, g: &mut Shared) {
    let mut stack = vec![c];
    while let Some(n) = stack.pop() {
        g.state[n] = State::Done(false);
        g.outcomes[n] = Some(Outcome::ParentError);
        stack.extend(jobs.iter().enumerate().filter(|(_, j)| j.parent == Some(n)).map(|(k, _)| k));
    }
}

fn build_one(
    ws: &Workspace,
    job: &Job,
    opts: &BuildOptions,
    run: &RunOptions,
    in_run: &InRun,
    progress: &Progress,
) -> Outcome {
    let file = match &run.logs_dir {
        Some(dir) => match open_log(dir, &job.name) {
            Ok(f) => Some(f),
            Err(e) => return Outcome::Failed(format!("opening the log of {}: {e}", job.name)),
        },
        None => None,
    };
    let console = run.echo.then_some((job.name.as_str(), progress));
    let mut log = ImageLog { file, console, partial: Vec::new() };
    let log = &mut log;
    let started_on = attest::build::now();
    let mut prepared = Vec::new();
    if let (Some(spec), Some(sopts)) = (&job.sources, &run.sources) {
        match sources::prepare(&job.context, spec, sopts) {
            Ok(p) => prepared = p,
            Err(e) => {
                let msg = format!("preparing the sources of {}: {e}", job.name);
                publish_failure(run, job, FailureReport::message(msg.clone()));
                return fail(job, run, log, msg);
            }
        }
    }
    let req = BuildRequest { dockerfile: &job.dockerfile, context: &job.context, tag: &job.tag, in_run: Some(in_run) };
    let waiting;
    let opts = match &job.cache_wait {
        Some(w) => {
            waiting = BuildOptions { cache_wait: Some(w.clone()), ..opts.clone() };
            &waiting
        }
        None => opts,
    };
    let o = match build_image(ws, &req, opts, log) {
        Ok(o) => o,
        Err(e) => match failed_elsewhere(&e) {
            Some(owners) => {
                let msg = owners.to_string();
                let _ = writeln!(log, "\nBUILD FAILED: {msg}");
                tracing::error!(image = %job.name, "{msg}");
                return Outcome::FailedElsewhere(msg);
            }
            None => {
                publish_failure(run, job, FailureReport::of(&e));
                let msg = failure_message(job, run, &e);
                return fail(job, run, log, msg);
            }
        },
    };
    tracing::info!(image = %job.name, layers_built = o.layers_built, cached = o.layers_cached, "built {}", job.tag);
    if let Some(facts) = run.attest.as_ref().filter(|_| job.cache_wait.as_ref().is_none_or(|w| w.acts_for_owner())) {
        let sources: Vec<SourceArchive> = prepared.iter().map(source_archive).collect();
        let image = ImageBuild {
            tag: &job.tag,
            outcome: &o,
            kolla_image: Some(&job.name),
            parent: job.parent_image.as_deref(),
            sources: &sources,
            started_on,
            finished_on: attest::build::now(),
        };
        if let Err(e) = attest::record_build(ws, facts, &image) {
            let msg = format!(
                "{} was built ({}) but its SBOM and provenance could not be recorded (--no-attestations skips them): {e}",
                job.tag, o.manifest.digest
            );
            return fail(job, run, log, msg);
        }
    }
    Outcome::Built { layers_built: o.layers_built, layers_cached: o.layers_cached }
}

/// Tell the fleet (`--shard`) that `job` failed here; it publishes that when this shard builds the image.
fn publish_failure(run: &RunOptions, job: &Job, report: FailureReport) {
    if let Some(fleet) = &run.fleet {
        fleet.image_failed(&job.name, job.cache_wait.as_ref().map(|w| w.owner), &report);
    }
}

/// A source archive as the SBOM and provenance name it: `<section>-archive` in the build context,
/// with the digest of the file that went into the context and, for git, the commit it resolved to.
fn source_archive(p: &PreparedSource) -> SourceArchive {
    SourceArchive {
        name: format!("{}-archive", p.name),
        kind: match p.kind {
            config::SourceKind::Url => attest::SourceKind::Url,
            config::SourceKind::Git => attest::SourceKind::Git,
            config::SourceKind::Local => attest::SourceKind::Local,
        },
        // Pushed beside the image: a token in the URL must not go with it.
        location: crate::redact::urls(&p.location),
        reference: p.commit.clone().or_else(|| p.reference.clone()),
        sha256: p.sha256,
    }
}

/// Record a failed image: in its log, as a `000_FAILED_<name>.log` link, and in the run's log.
fn fail(job: &Job, run: &RunOptions, log: &mut ImageLog, msg: String) -> Outcome {
    if let Some(f) = &mut log.file {
        let _ = writeln!(f, "\nBUILD FAILED: {msg}");
    }
    if let Some(dir) = &run.logs_dir {
        let link = dir.join(format!("000_FAILED_{}.log", job.name));
        let _ = fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink(format!("{}.log", job.name), link);
    }
    log.end_line();
    tracing::error!("{} failed: {msg}", job.name);
    Outcome::Failed(msg)
}

/// The message of a failed build. An error in the rendered Dockerfile of a Kolla image names its template
/// (with the template's line, when the failing line is found there as it is), and the rendered
/// Dockerfile's line in a file that outlives the run: the work dir's (`--work-dir`), or a copy kept in
/// `--logs-dir`. A failed RUN's last lines come with it when its output was not shown.
fn failure_message(job: &Job, run: &RunOptions, e: &super::BuildError) -> String {
    let tail = match e.output_tail() {
        Some(t) if !run.echo && !t.is_empty() => format!("\n--- last lines of its output ---\n{t}"),
        _ => String::new(),
    };
    let (Some(template), super::BuildError::At { path, line, error }) = (&job.template, e) else {
        return format!("{e}{tail}");
    };
    if *path != job.dockerfile {
        return format!("{e}{tail}");
    }
    let rendered = fs::read_to_string(path).unwrap_or_default();
    let text = rendered.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    let at = match template_line(&template.path, text) {
        Some(n) => format!("{}:{n}", template.path.display()),
        None => template.path.display().to_string(),
    };
    let kept = if template.rendered_kept {
        Some(path.clone())
    } else {
        run.logs_dir.as_ref().and_then(|dir| {
            let copy = dir.join(format!("{}.Dockerfile", job.name));
            fs::write(&copy, &rendered).ok().map(|()| copy)
        })
    };
    let rendered_at = match kept {
        Some(p) => format!("line {line} of the rendered {}", p.display()),
        None => format!("line {line} of the rendered Dockerfile; --logs-dir keeps it"),
    };
    format!("{at}: {error} ({rendered_at}){tail}")
}

/// The line of `template` that reads `text` (surrounding blanks aside), when exactly one does.
fn template_line(template: &Path, text: &str) -> Option<usize> {
    let text = text.trim();
    let source = fs::read_to_string(template).ok()?;
    let mut hits = source.lines().enumerate().filter(|(_, l)| !text.is_empty() && l.trim() == text);
    match (hits.next(), hits.next()) {
        (Some((n, _)), None) => Some(n + 1),
        _ => None,
    }
}

/// An image's build log: its `--logs-dir` file, and the console with each line prefixed by the image's
/// name (see [`RunOptions::echo`]), either, both or neither.
struct ImageLog<'a> {
    file: Option<fs::File>,
    console: Option<(&'a str, &'a Progress)>,
    /// The console's line so far.
    partial: Vec<u8>,
}

/// The longest line shown on the console before it is broken (a tool printing progress without newlines).
const MAX_CONSOLE_LINE: usize = 16 << 10;

impl ImageLog<'_> {
    /// Show what is left of the current console line.
    fn end_line(&mut self) {
        if let Some((name, progress)) = self.console
            && !self.partial.is_empty()
        {
            progress.println(name, &String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

impl Write for ImageLog<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(f) = &mut self.file {
            f.write_all(data)?;
        }
        if let Some((name, progress)) = self.console {
            self.partial.extend_from_slice(data);
            while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..i]);
                progress.println(name, line.trim_end_matches('\r'));
            }
            if self.partial.len() > MAX_CONSOLE_LINE {
                self.end_line();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for ImageLog<'_> {
    fn drop(&mut self) {
        self.end_line();
    }
}

fn open_log(dir: &Path, name: &str) -> io::Result<fs::File> {
    fs::create_dir_all(dir)?;
    fs::File::create(dir.join(format!("{name}.log")))
}

/// An indicatif bar on a terminal; plain log lines (through `tracing`) otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    fn start(&self, name: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("building {name}")),
            None => tracing::info!("building {name}"),
        }
    }

    /// One line of an image's output, prefixed with the image's name.
    fn println(&self, name: &str, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{name} | {line}")),
            None => {
                let _ = writeln!(io::stderr().lock(), "{name} | {line}");
            }
        }
    }

    fn done(&self, name: &str, outcome: &Outcome) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Outcome::Failed(_) = outcome {
                bar.println(format!("FAILED {name}"));
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
