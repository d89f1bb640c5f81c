//! Many images at once: parents first, independent images in parallel, as kolla-build schedules them —
//! an image is queued the moment its parent is built (not level by level). A failed build is tried
//! again up to `--retries` times; when an image still fails, its descendants are not attempted (kolla-build
//! reports them as still `matched`); the rest go on. With `--push`, each image built is queued for
//! `--push-threads` push workers at once, so pushes run while the other images build.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::fleet::failed_elsewhere;
pub use super::summary::{FailedEntry, NameEntry, Summary};
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
    /// The labels kolla-build gives the image at build time (see [`BuildOptions::labels`]).
    pub labels: std::collections::BTreeMap<String, super::Label>,
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
    /// Further attempts of an image whose build failed (`--retries`): kolla-build's build task runs up
    /// to `retries + 1` times, and so does a push.
    pub retries: u32,
    /// `--quiet`: no progress bar and no per-image lines on the console (logs still go to `logs_dir`).
    /// Otherwise each image's build output (steps and RUN output) is shown, every line prefixed with the
    /// image's name, as kolla-build shows its image logs (a failed RUN's last lines are then part of its
    /// error only when quiet).
    pub quiet: bool,
    /// The fleet this run is part of (`--shard`): an image that fails here is published for the shards
    /// waiting for it.
    pub fleet: Option<Arc<Fleet>>,
    /// A build for several platforms, one run each at once: this run's platform as the console shows it
    /// (`arm64`), after each image's name (`memcached (arm64) | …`) and on the run's log lines.
    pub platform: Option<String>,
    /// The progress bars of runs going on at once (a build for several platforms): this run's bar joins
    /// them, so that the bars and the lines printed above them do not garble each other.
    pub bars: Option<indicatif::MultiProgress>,
    /// The build slots of runs going on at once (a build for several platforms): a worker holds one for
    /// each image it builds, so the runs together build at most `--threads` images at a time.
    pub slots: Option<Arc<Slots>>,
}

/// `--threads` shared by the runs of a build for several platforms. Each run has `--threads` workers,
/// and a worker takes a slot for each image it builds: a platform that finishes early (amd64, native)
/// leaves all the slots to the others (arm64, emulated), which a fixed split of the threads would not.
#[derive(Debug)]
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// `n` slots (at least 1).
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    /// Wait for a free slot; it is given back when the guard drops.
    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

/// A slot of [`Slots`], held while one image builds.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The push queue of a run (`--push`): images are pushed as soon as they are built, by `threads`
/// workers of their own, while the other images build.
pub struct Pushes<'a> {
    /// Push workers (`--push-threads`); at least 1.
    pub threads: usize,
    /// Pushes one built image; an error makes that image's status `push_error` (after the retries).
    pub push: &'a (dyn Fn(&Job) -> Result<(), String> + Sync),
    /// Told of each image built (that is this run's to push); it is queued only if this says so. A build
    /// for several platforms pushes an image once, when its last platform has built it: the index whole.
    pub ready: &'a (dyn Fn(&Job) -> bool + Sync),
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
    /// Not attempted because an ancestor failed (kolla-build's status stays `matched`).
    NotAttempted,
    /// Another shard builds it (`--shard`) and published that its build failed, with this message:
    /// reported as `parent_error`, as are its descendants here.
    FailedElsewhere(String),
    /// Built, but its push failed with this message.
    PushFailed {
        /// Layers made by this run.
        layers_built: usize,
        /// Steps answered by the cache.
        layers_cached: usize,
        /// Why the push failed.
        error: String,
    },
}

/// The result of a run, one outcome per job (same order).
#[derive(Debug)]
pub struct RunReport {
    /// Outcome per job.
    pub outcomes: Vec<Outcome>,
}

impl RunReport {
    /// Whether every job was built.
    pub fn all_built(&self) -> bool {
        self.outcomes.iter().all(|o| matches!(o, Outcome::Built { .. }))
    }

    /// Fill `summary`'s built/failed lists and layer counts from this report, with kolla-build's
    /// statuses (`error`, `push_error`, and `matched` for an image not attempted).
    pub fn fill(&self, jobs: &[Job], summary: &mut Summary) {
        for (job, outcome) in jobs.iter().zip(&self.outcomes) {
            let failed = |status: &str| FailedEntry { name: job.name.clone(), status: status.into(), platforms: None };
            match outcome {
                Outcome::Built { layers_built, layers_cached } => {
                    summary.built.push(NameEntry { name: job.name.clone() });
                    summary.layers_built += layers_built;
                    summary.layers_cached += layers_cached;
                }
                Outcome::PushFailed { layers_built, layers_cached, .. } => {
                    summary.failed.push(failed("push_error"));
                    summary.layers_built += layers_built;
                    summary.layers_cached += layers_cached;
                }
                Outcome::Failed(_) => summary.failed.push(failed("error")),
                Outcome::NotAttempted => summary.failed.push(failed("matched")),
                Outcome::FailedElsewhere(_) => summary.failed.push(failed("parent_error")),
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

/// The images waiting for a push worker, and whether the builds are over (then the workers stop once
/// the queue is empty).
#[derive(Default)]
struct PushQueue {
    waiting: Mutex<(VecDeque<usize>, bool)>,
    wake: Condvar,
}

impl PushQueue {
    fn add(&self, job: usize) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).0.push_back(job);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.wake.notify_all();
    }

    /// The next image to push; `None` once the builds are over and nothing is left.
    fn next(&self) -> Option<usize> {
        let mut g = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = g.0.pop_front() {
                return Some(job);
            }
            if g.1 {
                return None;
            }
            g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Build `jobs` (parents listed anywhere; `parent` links must point inside `jobs`), pushing each one
/// built through `pushes` if given.
pub fn run(ws: &Workspace, jobs: &[Job], opts: &BuildOptions, run: &RunOptions, pushes: Option<&Pushes>) -> RunReport {
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
    let progress = Progress::new(jobs.len(), run);
    let workers = run.threads.max(1).min(jobs.len().max(1));
    let queue = PushQueue::default();
    let push_errors: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        if let Some(p) = pushes {
            for _ in 0..p.threads.max(1) {
                s.spawn(|| {
                    let _platform = platform_span(run);
                    push_worker(jobs, p, run.retries, &queue, &push_errors)
                });
            }
        }
        let (queue, in_run, shared, wake, progress) = (pushes.map(|p| (p, &queue)), &in_run, &shared, &wake, &progress);
        let builders: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(move || {
                    let _platform = platform_span(run);
                    worker(ws, jobs, opts, run, in_run, shared, wake, progress, queue)
                })
            })
            .collect();
        let panicked = builders.into_iter().filter_map(|b| b.join().err()).next();
        progress.finish();
        if let Some((_, q)) = queue {
            q.close();
        }
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
    });
    let mut outcomes: Vec<Outcome> = shared
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NotAttempted))
        .collect();
    for (i, error) in push_errors.into_inner().unwrap_or_else(|e| e.into_inner()) {
        if let Outcome::Built { layers_built, layers_cached } = outcomes[i] {
            outcomes[i] = Outcome::PushFailed { layers_built, layers_cached, error };
        }
    }
    RunReport { outcomes }
}

/// The log lines of a thread of a run for one of several platforms name the platform (a span
/// `build{platform=arm64}`, entered until the guard is dropped).
fn platform_span(run: &RunOptions) -> Option<tracing::span::EnteredSpan> {
    run.platform.as_ref().map(|p| tracing::info_span!("build", platform = %p).entered())
}

/// Pushes the images the builds queue until the builds are over and the queue is empty; a push is
/// tried `retries + 1` times, and a push that still fails is recorded in `errors`.
fn push_worker(jobs: &[Job], pushes: &Pushes, retries: u32, queue: &PushQueue, errors: &Mutex<Vec<(usize, String)>>) {
    while let Some(i) = queue.next() {
        let job = &jobs[i];
        let mut failure = None;
        for attempt in 1..=retries + 1 {
            tracing::info!(image = %job.name, attempt, "pushing {}", job.tag);
            match (pushes.push)(job) {
                Ok(()) => {
                    tracing::info!(image = %job.name, "pushed {}", job.tag);
                    failure = None;
                    break;
                }
                Err(e) => {
                    tracing::error!(image = %job.name, attempt, of = retries + 1, "push of {} failed: {e}", job.tag);
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            errors.lock().unwrap_or_else(|e| e.into_inner()).push((i, e));
        }
    }
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
    pushes: Option<(&Pushes, &PushQueue)>,
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
        let shown = shown_name(&jobs[i], run);
        let slot = run.slots.as_deref().map(Slots::take);
        progress.start(&shown);
        let outcome = build_attempts(ws, &jobs[i], &shown, opts, run, in_run, progress);
        progress.done(&shown, &outcome);
        drop(slot);
        let ok = matches!(outcome, Outcome::Built { .. });
        // An image another shard builds is that shard's to push, unless this one acts for it (lost).
        if ok
            && jobs[i].cache_wait.as_ref().is_none_or(|w| w.acts_for_owner())
            && let Some((p, q)) = pushes
            && (p.ready)(&jobs[i])
        {
            q.add(i);
        }
        // The children of an image another shard failed fail with it (`parent_error`); those of one
        // that failed here are not attempted (kolla's `matched`).
        let unattempted = match &outcome {
            Outcome::FailedElsewhere(msg) => Outcome::FailedElsewhere(msg.clone()),
            _ => Outcome::NotAttempted,
        };
        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
        g.state[i] = State::Done(ok);
        g.outcomes[i] = Some(outcome);
        g.running -= 1;
        for (c, job) in jobs.iter().enumerate() {
            if job.parent == Some(i) && g.state[c] == State::Waiting {
                if ok {
                    g.state[c] = State::Running;
                    g.ready.push_back(c);
                } else {
                    mark_not_attempted(jobs, c, &mut g, &unattempted);
                }
            }
        }
        wake.notify_all();
    }
}

/// `c` and all its descendants are not attempted: each gets `outcome`.
fn mark_not_attempted(jobs: &[Job], c: usize, g: &mut Shared, outcome: &Outcome) {
    let mut stack = vec![c];
    while let Some(n) = stack.pop() {
        g.state[n] = State::Done(false);
        g.outcomes[n] = Some(outcome.clone());
        stack.extend(jobs.iter().enumerate().filter(|(_, j)| j.parent == Some(n)).map(|(k, _)| k));
    }
}

/// How the console names `job`: its name, and its platform when the build is for several.
fn shown_name(job: &Job, run: &RunOptions) -> String {
    match &run.platform {
        Some(p) => format!("{} ({p})", job.name),
        None => job.name.clone(),
    }
}

/// Build `job` up to `retries + 1` times, until it is built; every attempt goes to the image's one log
/// (and, unless quiet, to the console, as `shown`). An image another shard failed is not tried again.
fn build_attempts(
    ws: &Workspace,
    job: &Job,
    shown: &str,
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
    let console = (!run.quiet).then_some((shown, progress));
    let mut log = ImageLog { file, console, partial: Vec::new() };
    let attempts = run.retries + 1;
    let mut outcome = Outcome::NotAttempted;
    for attempt in 1..=attempts {
        if attempts > 1 {
            let _ = writeln!(log, "=== attempt {attempt} of {attempts} to build {} ===", job.name);
        }
        if attempt > 1 {
            tracing::info!(image = %job.name, "building {} again: attempt {attempt} of {attempts}", job.name);
        }
        outcome = build_one(ws, job, opts, run, in_run, &mut log, attempt == attempts);
        if matches!(outcome, Outcome::Built { .. } | Outcome::FailedElsewhere(_)) {
            break;
        }
    }
    if let (Outcome::Failed(_), Some(dir)) = (&outcome, &run.logs_dir) {
        let link = dir.join(format!("000_FAILED_{}.log", job.name));
        let _ = fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink(format!("{}.log", job.name), link);
    }
    outcome
}

/// One attempt at `job`; the fleet hears of a failure only on the `last` attempt.
fn build_one(
    ws: &Workspace,
    job: &Job,
    opts: &BuildOptions,
    run: &RunOptions,
    in_run: &InRun,
    log: &mut ImageLog,
    last: bool,
) -> Outcome {
    let started_on = attest::build::now();
    let mut prepared = Vec::new();
    if let (Some(spec), Some(sopts)) = (&job.sources, &run.sources) {
        match sources::prepare(&job.context, spec, sopts) {
            Ok(p) => prepared = p,
            Err(e) => {
                let msg = format!("preparing the sources of {}: {e}", job.name);
                if last {
                    publish_failure(run, job, FailureReport::message(msg.clone()));
                }
                return fail(job, log, msg);
            }
        }
    }
    let req = BuildRequest { dockerfile: &job.dockerfile, context: &job.context, tag: &job.tag, in_run: Some(in_run) };
    // What is the job's own: the wait for another shard, kolla's labels, and `--pull`, which (as in
    // kolla-build) refreshes only the base of a root image, never a parent of the tree.
    let opts = BuildOptions {
        cache_wait: job.cache_wait.clone(),
        labels: job.labels.clone(),
        pull: opts.pull && job.parent_image.is_none(),
        ..opts.clone()
    };
    let o = match build_image(ws, &req, &opts, log) {
        Ok(o) => o,
        Err(e) => match failed_elsewhere(&e) {
            Some(owners) => {
                let msg = owners.to_string();
                if let Some(f) = &mut log.file {
                    let _ = writeln!(f, "\nBUILD FAILED: {msg}");
                }
                tracing::error!("{} failed: {msg}", job.name);
                return Outcome::FailedElsewhere(msg);
            }
            None => {
                if last {
                    publish_failure(run, job, FailureReport::of(&e));
                }
                let msg = failure_message(job, run, &e);
                return fail(job, log, msg);
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
            return fail(job, log, msg);
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

/// Record a failed attempt: in its log file (its output is on the console already) and in the run's
/// log (an image that fails every attempt also gets its `000_FAILED_<name>.log` link, see
/// [`build_attempts`]).
fn fail(job: &Job, log: &mut ImageLog, msg: String) -> Outcome {
    if let Some(f) = &mut log.file {
        let _ = writeln!(f, "\nBUILD FAILED: {msg}");
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
        Some(t) if run.quiet && !t.is_empty() => format!("\n--- last lines of its output ---\n{t}"),
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
/// name (unless [`RunOptions::quiet`]), either, both or neither.
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

/// An indicatif bar on a terminal; plain log lines (through `tracing`) otherwise; nothing when quiet.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A bar for `total` images unless the run is quiet or stderr no terminal; it joins the run's
    /// [`RunOptions::bars`], if any.
    fn new(total: usize, run: &RunOptions) -> Progress {
        let quiet = run.quiet;
        let bar = (!quiet && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            let bar = match &run.bars {
                Some(bars) => bars.add(bar),
                None => bar,
            };
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress { bar, quiet }
    }

    fn start(&self, name: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("building {name}")),
            None if self.quiet => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// With every slot taken, a worker waits until one is given back, then gets it.
    #[test]
    fn slots_bound_the_builds_of_runs_together() {
        let slots = Slots::new(2);
        let (a, b) = (slots.take(), slots.take());
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _c = slots.take();
                tx.send(()).unwrap();
            });
            assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "a third build while two run");
            drop(a);
            rx.recv_timeout(Duration::from_secs(30)).expect("the slot given back is taken");
        });
        drop(b);
        assert_eq!(*slots.free.lock().unwrap(), 2, "every slot given back");
    }
}
