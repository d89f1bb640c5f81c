//! A fleet's liveness and failures (`build --shard I/N --cache-repo …`), kept as small records next to
//! its step entries in the cache repository: no coordinator, only tags every shard writes and reads.
//!
//! - **Heartbeats.** Each shard rewrites `fleet-<plan>-shard-<I>` every few seconds while it runs: its
//!   run id, its phase (`building` its images, `watching` once they are done, `exited`) and the shards
//!   whose images it took over. A heartbeat that a reader has not seen change for `--shard-takeover`
//!   seconds — by the reader's own clock, so machines' clocks need not agree — belongs to a lost shard.
//! - **Failures.** A shard whose image fails writes `fleet-<plan>-failed-<image>`: the image, the failing
//!   instruction and its `Dockerfile:line`, the error, the shard and its run id. A shard waiting for
//!   that image's steps fails it at once with that error. A failure counts only while its run is the
//!   shard's latest (a re-run writes a new heartbeat before anything else, so a later run supersedes
//!   it) and only if it belongs to this fleet run: it appeared while the reader watched, or it is
//!   younger than the takeover limit. An older one is left alone: its owner looks lost, and whoever
//!   takes over retries the step.
//! - **Takeover.** Every shard computes the same plan, and the plan decides who acts for a lost shard:
//!   the next shard in index order (0 after N−1) that is neither lost nor exited. That successor builds
//!   the steps others wait for, and — since a shard stays, `watching`, until the shard before it is
//!   done — takes over all of its images, even those nobody waits for. Steps are write-once and
//!   content-keyed, so a step published twice is harmless.
//!
//! `<plan>` is a digest of the plan (images, their rendered Dockerfiles, their owners), so fleets that
//! build different trees through one repository never read each other's records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use layers::Digest;
use tracing::{debug, info, warn};

use super::{BuildError, RemoteCache};
use crate::shard::Shard;
use crate::store::Store;

/// Prefix of every annotation of a fleet record.
const FIELD: &str = "dev.kolla-oci.fleet.";
/// How far back a record first seen may date and still belong to this fleet run, when takeover is off.
const RECENT_WITHOUT_TAKEOVER: Duration = Duration::from_secs(300);
/// The longest pause between two looks of a waiting shard at the cache: what it waits for (or a failure)
/// is seen within it.
const MAX_POLL: Duration = Duration::from_secs(5);
/// The longest pause between two heartbeats.
const MAX_BEAT: Duration = Duration::from_secs(10);
/// A published error is cut to this many bytes (a RUN's tail is in it).
const MAX_ERROR: usize = 8192;

/// What a shard is doing, as its heartbeat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Building its own images (or those it took over).
    Building,
    /// Its images are done; it stays to take over the shard before it if that one is lost.
    Watching,
    /// Gone for good, with nothing left to take over.
    Exited,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Building => "building",
            Phase::Watching => "watching",
            Phase::Exited => "exited",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        [Phase::Building, Phase::Watching, Phase::Exited].into_iter().find(|p| p.as_str() == s)
    }
}

/// A failed image, as a shard reports it to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    /// `<image dir>/Dockerfile:<line>` of the failing instruction, when an instruction failed.
    pub location: Option<String>,
    /// The failing RUN as written, when a RUN failed.
    pub step: Option<String>,
    /// The error (without the location).
    pub error: String,
}

impl FailureReport {
    /// The report of a build error; an instruction's error keeps its place in the Dockerfile, named by
    /// its last two path components (the owner's work dir means nothing on other machines).
    pub fn of(error: &BuildError) -> FailureReport {
        match error {
            BuildError::At { path, line, error } => {
                let tail: Vec<_> = path.iter().rev().take(2).map(|c| c.to_string_lossy()).collect();
                let file = tail.into_iter().rev().collect::<Vec<_>>().join("/");
                let step = match error.as_ref() {
                    BuildError::RunFailed { command, .. } => Some(command.clone()),
                    _ => None,
                };
                FailureReport { location: Some(format!("{file}:{line}")), step, error: error.to_string() }
            }
            e => FailureReport::message(e.to_string()),
        }
    }

    /// The report of a failure that is not an instruction's (preparing sources, for example).
    pub fn message(error: String) -> FailureReport {
        FailureReport { location: None, step: None, error }
    }

    /// `location: error`, as a waiting shard shows it.
    fn text(&self) -> String {
        match &self.location {
            Some(l) => format!("{l}: {}", self.error),
            None => self.error.clone(),
        }
    }
}

/// A failure as read from the cache repository.
#[derive(Debug, Clone)]
struct Failure {
    image: String,
    shard: usize,
    run: String,
    time: u64,
    report: FailureReport,
}

/// A heartbeat as read from the cache repository.
#[derive(Debug, Clone)]
struct Beat {
    run: String,
    phase: Phase,
    covered: BTreeSet<usize>,
    time: u64,
}

/// What this process saw of another shard's heartbeat.
#[derive(Debug, Clone)]
struct Seen {
    /// The record's manifest digest (a new one at every beat); `None`: no heartbeat.
    digest: Option<Digest>,
    /// When we first saw it as it is now (our clock).
    since: Instant,
    beat: Option<Beat>,
    /// It belongs to this fleet run: it changed while we watched, or it was recent when first seen.
    current: bool,
}

/// Another shard as this one judges it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Status {
    /// Its heartbeat has not changed for the takeover limit (or never appeared within it).
    lost: bool,
    /// Its heartbeat of this fleet run says `exited`.
    exited: bool,
    /// Its heartbeat of this fleet run says its images are done (`watching` or `exited`).
    done: bool,
    /// The shards whose images it took over, while that claim stands (it is alive, or done).
    covers: BTreeSet<usize>,
}

/// The plan's rules for who acts for whom, over every shard's [`Status`] (`me`'s own included).
struct Succession<'a> {
    me: usize,
    status: &'a [Status],
}

impl Succession<'_> {
    /// The shard that acts for `owner`: the first after it in index order (0 after N−1) that is neither
    /// lost nor exited — this shard, if every one between is.
    fn successor(&self, owner: usize) -> usize {
        let n = self.status.len();
        (1..n)
            .map(|k| (owner + k) % n)
            .find(|&s| s == self.me || !(self.status[s].lost || self.status[s].exited))
            .unwrap_or(self.me)
    }

    /// Shard `s`'s images are done: it says so, or a shard whose claim stands took them over.
    fn finished(&self, s: usize) -> bool {
        self.status[s].done || self.status.iter().enumerate().any(|(k, st)| k != s && st.covers.contains(&s))
    }

    /// `owner` is lost and this shard acts for it.
    fn takes_over(&self, owner: usize) -> bool {
        owner != self.me && self.status[owner].lost && self.successor(owner) == self.me
    }

    /// Lost shards whose images are now this shard's to build.
    fn to_adopt(&self) -> Vec<usize> {
        (0..self.status.len()).filter(|&s| !self.finished(s) && self.takes_over(s)).collect()
    }

    /// Some shard whose images are not done would be this shard's to take over if it were lost.
    fn lingers(&self) -> bool {
        (0..self.status.len()).any(|s| s != self.me && !self.finished(s) && self.successor(s) == self.me)
    }
}

/// This shard's own state, as its heartbeat publishes it.
#[derive(Debug)]
struct Own {
    phase: Phase,
    beats: u64,
    covered: BTreeSet<usize>,
}

/// One shard's view of its fleet, and its own heartbeat (see the module docs).
pub struct Fleet {
    cache: Arc<RemoteCache>,
    store: Store,
    /// Start of the plan digest's hex: names this fleet's records.
    plan: String,
    shard: Shard,
    run: String,
    takeover: Option<Duration>,
    started: Instant,
    started_at: u64,
    own: Mutex<Own>,
    seen: Mutex<Vec<Option<Seen>>>,
    /// Per image: the failure record's digest when first looked at (`None`: there was none).
    first_failures: Mutex<HashMap<String, Option<Digest>>>,
    /// Shards whose takeover was announced in the log.
    announced: Mutex<BTreeSet<usize>>,
    /// Held while a heartbeat is written, so that beats land in order.
    ticking: Mutex<()>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet(shard {} run {} plan {} in {})", self.shard, self.run, self.plan, self.cache.name())
    }
}

/// `m` locked; a panic elsewhere while it was held does not make its (plain) data unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since the epoch, as records carry them.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh id for this run of a shard (a re-run gets another).
fn new_run_id() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{} {} {nanos}", uuid.trim(), std::process::id());
    Digest::of_bytes(seed.as_bytes()).hex()[..12].to_owned()
}

/// A tag made of `s`: characters a tag cannot hold become `-`, and it is cut to the 128 a tag may have.
fn tag_safe(s: &str) -> String {
    let clean: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    clean.chars().take(128).collect()
}

impl Fleet {
    /// Shard `shard` of the fleet building `plan` (see [`crate::builder::kolla::plan_digest`]) through
    /// `cache`, losing a shard after `takeover` without a heartbeat (`None`: never). Writes its first
    /// heartbeat and reads the others' before it returns; [`Fleet::keep_alive`] keeps it fresh.
    pub fn start(
        cache: Arc<RemoteCache>,
        store: Store,
        plan: &Digest,
        shard: Shard,
        takeover: Option<Duration>,
    ) -> Fleet {
        let fleet = Fleet {
            cache,
            store,
            plan: plan.hex()[..20].to_owned(),
            shard,
            run: new_run_id(),
            takeover,
            started: Instant::now(),
            started_at: unix_now(),
            own: Mutex::new(Own { phase: Phase::Building, beats: 0, covered: BTreeSet::new() }),
            seen: Mutex::new(vec![None; shard.count]),
            first_failures: Mutex::new(HashMap::new()),
            announced: Mutex::new(BTreeSet::new()),
            ticking: Mutex::new(()),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        };
        info!(shard = %shard, run = %fleet.run, plan = %fleet.plan, "fleet heartbeat in {}", fleet.cache.name());
        fleet.tick();
        fleet
    }

    /// How often the heartbeat is written and the others' read: a tenth of the takeover limit, between
    /// 1 and 10 seconds.
    pub fn interval(&self) -> Duration {
        self.takeover.map_or(MAX_BEAT, |t| (t / 10).clamp(Duration::from_secs(1), MAX_BEAT))
    }

    /// Shard `i` as `I/N`.
    fn name(&self, i: usize) -> String {
        Shard { index: i, count: self.shard.count }.to_string()
    }

    fn beat_tag(&self, i: usize) -> String {
        format!("fleet-{}-shard-{i}", self.plan)
    }

    fn failure_tag(&self, image: &str) -> String {
        tag_safe(&format!("fleet-{}-failed-{image}", self.plan))
    }

    /// Writes this shard's heartbeat and reads the others'.
    fn tick(&self) {
        let _in_order = lock(&self.ticking);
        let fields = {
            let mut own = lock(&self.own);
            own.beats += 1;
            let covered: Vec<String> = own.covered.iter().map(usize::to_string).collect();
            BTreeMap::from([
                (format!("{FIELD}shard"), self.shard.to_string()),
                (format!("{FIELD}run"), self.run.clone()),
                (format!("{FIELD}phase"), own.phase.as_str().to_owned()),
                (format!("{FIELD}beat"), own.beats.to_string()),
                (format!("{FIELD}time"), unix_now().to_string()),
                (format!("{FIELD}covered"), covered.join(",")),
            ])
        };
        if let Err(e) = self.cache.put_record(&self.store, &self.beat_tag(self.shard.index), fields) {
            warn!(cache = self.cache.name(), "writing this shard's heartbeat: {e}");
        }
        for i in (0..self.shard.count).filter(|&i| i != self.shard.index) {
            self.look_at(i);
        }
    }

    /// Reads shard `i`'s heartbeat into the view. One that cannot be read counts as a sign of life:
    /// a registry we cannot reach must not make us take over everyone.
    fn look_at(&self, i: usize) {
        let record = self.cache.record(&self.beat_tag(i));
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                warn!(cache = self.cache.name(), "reading the heartbeat of shard {}: {e}", self.name(i));
                if let Some(s) = seen[i].as_mut() {
                    s.since = now;
                }
                return;
            }
        };
        let digest = record.as_ref().map(|r| r.digest);
        if seen[i].as_ref().is_some_and(|s| s.digest == digest) {
            return;
        }
        let first = seen[i].is_none();
        let beat = record.and_then(|r| Beat::parse(&r.fields)).filter(|b| b.run.len() <= 64);
        let current = !first || beat.as_ref().is_some_and(|b| self.recent(b.time));
        debug!(shard = %self.name(i), ?beat, current, "heartbeat");
        seen[i] = Some(Seen { digest, since: now, beat, current });
    }

    /// `time` (seconds since the epoch, another machine's clock) is recent enough for a record first
    /// seen to belong to this fleet run.
    fn recent(&self, time: u64) -> bool {
        let window = self.takeover.unwrap_or(RECENT_WITHOUT_TAKEOVER).as_secs();
        time.saturating_add(window) >= self.started_at
    }

    /// Every shard as this one judges it now.
    fn statuses(&self) -> Vec<Status> {
        let seen = lock(&self.seen);
        let mut out: Vec<Status> = seen
            .iter()
            .map(|s| {
                let since = s.as_ref().map_or(self.started, |s| s.since);
                let lost = self.takeover.is_some_and(|t| since.elapsed() >= t);
                let beat = s.as_ref().filter(|s| s.current).and_then(|s| s.beat.as_ref());
                let done = beat.is_some_and(|b| b.phase != Phase::Building);
                let covers = beat.filter(|_| !lost || done).map(|b| b.covered.clone()).unwrap_or_default();
                Status { lost, exited: beat.is_some_and(|b| b.phase == Phase::Exited), done, covers }
            })
            .collect();
        out[self.shard.index] = Status { covers: lock(&self.own).covered.clone(), ..Status::default() };
        out
    }

    /// Shard `owner` is lost and this shard acts for it: it builds what `owner` would have.
    pub(crate) fn takes_over(&self, owner: usize) -> bool {
        let status = self.statuses();
        let yes = Succession { me: self.shard.index, status: &status }.takes_over(owner);
        if yes {
            self.announce(owner);
        }
        yes
    }

    /// Lost shards whose images are now this shard's to build (not yet taken over).
    pub fn to_adopt(&self) -> Vec<usize> {
        let status = self.statuses();
        let adopt = Succession { me: self.shard.index, status: &status }.to_adopt();
        adopt.iter().for_each(|&s| self.announce(s));
        adopt
    }

    /// Says once in the log that this shard takes over the lost shard `owner`.
    fn announce(&self, owner: usize) {
        if lock(&self.announced).insert(owner) {
            warn!(
                "shard {} is lost (its heartbeat in {} has not changed for {} s, --shard-takeover): shard {} takes over its images",
                self.name(owner),
                self.cache.name(),
                self.takeover.unwrap_or_default().as_secs(),
                self.shard
            );
        }
    }

    /// Whether this shard, its own images done, must stay: a shard whose images are not done would be
    /// its to take over if it were lost. Always `false` when takeover is off.
    pub fn lingers(&self) -> bool {
        let status = self.statuses();
        self.takeover.is_some() && Succession { me: self.shard.index, status: &status }.lingers()
    }

    /// Publish this shard's phase at once.
    pub fn set_phase(&self, phase: Phase) {
        lock(&self.own).phase = phase;
        self.tick();
    }

    /// Record that this shard takes over `shards`' images, so that no other shard does.
    pub fn cover(&self, shards: &[usize]) {
        lock(&self.own).covered.extend(shards);
        self.set_phase(Phase::Building);
    }

    /// Keeps this shard's heartbeat fresh and its view of the others current until [`Fleet::stop`]: run
    /// it on a thread of its own.
    pub fn keep_alive(&self) {
        let mut stopped = lock(&self.stopped);
        loop {
            stopped = self.wake.wait_timeout(stopped, self.interval()).unwrap_or_else(|e| e.into_inner()).0;
            if *stopped {
                return;
            }
            drop(stopped);
            self.tick();
            stopped = lock(&self.stopped);
        }
    }

    /// Publish `exited` and end [`Fleet::keep_alive`].
    pub fn stop(&self) {
        self.set_phase(Phase::Exited);
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// A guard that calls [`Fleet::stop`] when dropped, so that [`Fleet::keep_alive`] ends even when
    /// the build unwinds.
    pub fn stop_on_drop(&self) -> impl Drop + '_ {
        struct Stop<'a>(&'a Fleet);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        Stop(self)
    }

    /// Publish that `image` failed here, for the shards waiting for it — when this shard builds it: it
    /// owns it (`owner` is `None` or this shard) or acts for its lost owner. A waiting shard that fails
    /// for a reason of its own publishes nothing.
    pub fn image_failed(&self, image: &str, owner: Option<usize>, report: &FailureReport) {
        if owner.is_some_and(|o| o != self.shard.index && !self.takes_over(o)) {
            return;
        }
        let mut error = report.error.clone();
        if error.len() > MAX_ERROR {
            let mut cut = MAX_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push_str(" […]");
        }
        let mut fields = BTreeMap::from([
            (format!("{FIELD}image"), image.to_owned()),
            (format!("{FIELD}shard"), self.shard.to_string()),
            (format!("{FIELD}run"), self.run.clone()),
            (format!("{FIELD}time"), unix_now().to_string()),
            (format!("{FIELD}error"), error),
        ]);
        fields.extend(report.location.clone().map(|l| (format!("{FIELD}location"), l)));
        fields.extend(report.step.clone().map(|s| (format!("{FIELD}step"), s)));
        match self.cache.put_record(&self.store, &self.failure_tag(image), fields) {
            Ok(()) => info!(image, cache = self.cache.name(), "published the failure of {image} for the other shards"),
            Err(e) => warn!(image, cache = self.cache.name(), "publishing the failure of {image}: {e}"),
        }
    }

    /// The published failure of `image`, if it counts (see the module docs).
    fn failure(&self, image: &str) -> Option<Failure> {
        let record = match self.cache.record(&self.failure_tag(image)) {
            Ok(r) => r,
            Err(e) => {
                debug!(image, "reading the failure record: {e}");
                return None;
            }
        };
        let digest = record.as_ref().map(|r| r.digest);
        let appeared = *lock(&self.first_failures).entry(image.to_owned()).or_insert(digest) != digest;
        let failure = Failure::parse(&record?.fields).filter(|f| f.image == image)?;
        if failure.shard >= self.shard.count || failure.shard == self.shard.index {
            return None;
        }
        self.look_at(failure.shard);
        let latest = lock(&self.seen)[failure.shard]
            .as_ref()
            .and_then(|s| s.beat.as_ref())
            .is_some_and(|b| b.run == failure.run);
        counts(latest, appeared, self.recent(failure.time)).then_some(failure)
    }
}

/// Whether a published failure counts: its run is its shard's latest (else a re-run superseded it), and it
/// belongs to this fleet run — it `appeared` while this shard looked, or it is `recent`.
fn counts(latest: bool, appeared: bool, recent: bool) -> bool {
    latest && (appeared || recent)
}

impl Beat {
    fn parse(fields: &BTreeMap<String, String>) -> Option<Beat> {
        let get = |k: &str| fields.get(&format!("{FIELD}{k}"));
        Some(Beat {
            run: get("run")?.clone(),
            phase: Phase::parse(get("phase")?)?,
            covered: get("covered")?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?,
            time: get("time")?.parse().ok()?,
        })
    }
}

impl Failure {
    fn parse(fields: &BTreeMap<String, String>) -> Option<Failure> {
        let get = |k: &str| fields.get(&format!("{FIELD}{k}")).cloned();
        let shard: Shard = get("shard")?.parse().ok()?;
        Some(Failure {
            image: get("image")?,
            shard: shard.index,
            run: get("run")?,
            time: get("time")?.parse().ok()?,
            report: FailureReport { location: get("location"), step: get("step"), error: get("error")? },
        })
    }
}

/// An image another shard builds (`--shard`): its steps come from the cache repository as its owner
/// publishes them. Waiting ends when the step is there, when the owner published that the image
/// failed, when the owner is lost and this shard acts for it (then it builds the step itself), or
/// after `--shard-wait`.
#[derive(Debug, Clone)]
pub struct CacheWait {
    /// The fleet this shard is part of.
    pub fleet: Arc<Fleet>,
    /// The image (its kolla name: names its failure record).
    pub image: String,
    /// The shard that owns it in the plan.
    pub owner: usize,
    /// Give up after this long (`--shard-wait`).
    pub timeout: Duration,
}

/// The error of another shard that `error` (of an image waiting for it) carries, if it is one: the
/// image then failed elsewhere, and its own location adds nothing.
pub(crate) fn failed_elsewhere(error: &BuildError) -> Option<&BuildError> {
    match error {
        BuildError::OwnerFailed { .. } => Some(error),
        BuildError::At { error, .. } => failed_elsewhere(error),
        _ => None,
    }
}

/// How a wait for another shard ended.
pub(crate) enum Waited<T> {
    /// What was waited for.
    Got(T),
    /// The owner is lost and this shard acts for it: build it here.
    TakeOver,
    /// `--shard-wait` ran out, after this long.
    TimedOut(Duration),
}

impl CacheWait {
    /// The owner, as `I/N`.
    pub fn owner_name(&self) -> String {
        self.fleet.name(self.owner)
    }

    /// The owner is lost and this shard builds the image in its stead (and records its attestations).
    pub fn acts_for_owner(&self) -> bool {
        self.fleet.takes_over(self.owner)
    }

    /// Poll for `what` (another shard's work, e.g. a step) until `poll` has it, with a backoff of up to
    /// 5 s between looks; fails with the owner's error when it published one.
    pub(crate) fn wait<T>(
        &self,
        what: &str,
        mut poll: impl FnMut() -> Result<Option<T>, BuildError>,
    ) -> Result<Waited<T>, BuildError> {
        let started = Instant::now();
        let mut pause = Duration::from_secs(1);
        let mut announced = false;
        loop {
            if let Some(v) = poll()? {
                return Ok(Waited::Got(v));
            }
            if let Some(f) = self.fleet.failure(&self.image) {
                return Err(BuildError::OwnerFailed {
                    image: f.image,
                    shard: format!("{} (run {})", self.fleet.name(f.shard), f.run),
                    error: f.report.text(),
                });
            }
            if self.fleet.takes_over(self.owner) {
                return Ok(Waited::TakeOver);
            }
            if !announced {
                info!(owner = %self.owner_name(), "waiting for shard {} to publish {what}", self.owner_name());
                announced = true;
            }
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                return Ok(Waited::TimedOut(elapsed));
            }
            std::thread::sleep(pause.min(self.timeout - elapsed));
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive() -> Status {
        Status::default()
    }
    fn lost() -> Status {
        Status { lost: true, ..Status::default() }
    }
    fn done() -> Status {
        Status { done: true, ..Status::default() }
    }

    #[test]
    fn the_next_shard_that_is_not_lost_acts_for_a_lost_one() {
        let status = [lost(), alive(), alive()];
        let from = |me| Succession { me, status: &status };
        assert_eq!(from(1).successor(0), 1);
        assert!(from(1).takes_over(0) && !from(2).takes_over(0));
        assert_eq!(from(1).to_adopt(), [0]);
        assert!(from(2).to_adopt().is_empty());
        // Shard 1 lost too: shard 2 acts for both; an exited shard is skipped like a lost one.
        let status = [lost(), lost(), alive()];
        assert_eq!(Succession { me: 2, status: &status }.to_adopt(), [0, 1]);
        let status = [lost(), Status { exited: true, done: true, ..done() }, alive()];
        assert_eq!(Succession { me: 2, status: &status }.to_adopt(), [0]);
        // Round the end: shard 0 acts for a lost shard 2.
        let status = [alive(), alive(), lost()];
        assert!(Succession { me: 0, status: &status }.takes_over(2));
    }

    #[test]
    fn done_or_covered_shards_are_not_taken_over() {
        let status = [Status { lost: true, done: true, ..Status::default() }, alive(), alive()];
        assert!(Succession { me: 1, status: &status }.to_adopt().is_empty(), "its images are done");
        let covered = Status { covers: BTreeSet::from([0]), ..done() };
        let status = [lost(), covered, alive()];
        assert!(Succession { me: 2, status: &status }.finished(0));
        assert!(Succession { me: 2, status: &status }.to_adopt().is_empty(), "shard 1 took it over");
        // A step of a lost owner is still built by its successor (the owner may have died mid-image).
        assert!(Succession { me: 1, status: &[lost(), alive(), alive()] }.takes_over(0));
    }

    #[test]
    fn a_shard_stays_while_the_one_before_it_builds() {
        let me = |me, status: &[Status]| Succession { me, status }.lingers();
        assert!(me(1, &[alive(), alive(), alive()]), "shard 0 is still building");
        assert!(!me(1, &[done(), alive(), done()]));
        assert!(!me(2, &[alive(), done(), alive()]), "shard 1 is there for shard 0");
        assert!(me(2, &[alive(), lost(), alive()]), "shard 1 is lost: shard 2 is next for shard 0");
        assert!(!me(0, &[alive()]), "one shard has no one to watch");
    }

    #[test]
    fn a_failure_counts_for_the_owners_latest_run_of_this_fleet_run_only() {
        assert!(counts(true, true, false), "it appeared while we waited");
        assert!(counts(true, false, true), "it was there already, but recent: the owner failed before we looked");
        assert!(!counts(true, false, false), "a failure of an earlier fleet run: its owner looks lost instead");
        assert!(!counts(false, true, true), "the owner runs again: its new run supersedes the failure");
    }

    #[test]
    fn reports_keep_the_place_in_the_dockerfile_without_the_work_dir() {
        let e = BuildError::At {
            path: "/tmp/work-x/docker/base/Dockerfile".into(),
            line: 3,
            error: Box::new(BuildError::RunFailed { command: "RUN exit 7".into(), code: 7, tail: String::new() }),
        };
        let r = FailureReport::of(&e);
        assert_eq!(r.location.as_deref(), Some("base/Dockerfile:3"));
        assert_eq!(r.step.as_deref(), Some("RUN exit 7"));
        assert!(r.text().starts_with("base/Dockerfile:3: `RUN exit 7` returned a non-zero code: 7"), "{}", r.text());
        assert_eq!(FailureReport::message("sources".into()).text(), "sources");
        assert_eq!(tag_safe("fleet-ab-failed-nova/api:x"), "fleet-ab-failed-nova-api-x");
        assert_eq!(tag_safe(&"x".repeat(200)).len(), 128);
    }
}
