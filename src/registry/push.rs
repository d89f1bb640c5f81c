//! Push a set of images that share blobs, uploading every blob once (who uploads and who mounts is the
//! plan's, see `plan.rs`), then their manifests with their exact stored bytes. Referrers (artifacts whose
//! `subject` is an image) go the same way, after the images, and where the registry has no referrers API
//! the subject's referrers tag is brought up to date.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use layers::Digest;
use tracing::{debug, info};

use super::client::{Client, MountOutcome};
use super::plan::{self, PlanImage, Source, Task};
use super::progress::{BlobOutcome, PushProgress};
use super::referrers::Referrer;
use super::{Reference, RegistryError, RegistryOptions, parallel};
use crate::store::{self, Descriptor, Manifest, Store};

/// What a push did. Blob counts are per (repository, blob) pair.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs whose bytes were sent (monolithic or chunked upload).
    pub uploaded_blobs: usize,
    /// Bytes of those blobs.
    pub uploaded_bytes: u64,
    /// Blobs made available by a cross-repository mount (no bytes sent).
    pub mounted_blobs: usize,
    /// Blobs the target repository already had (HEAD answered 200).
    pub existing_blobs: usize,
    /// Manifests put.
    pub manifests: usize,
    /// Referrers tags (`sha256-<hex>`) written for registries without the referrers API.
    pub referrers_tags: usize,
}

impl PushReport {
    /// Add what another push did.
    pub fn add(&mut self, other: &PushReport) {
        self.uploaded_blobs += other.uploaded_blobs;
        self.uploaded_bytes += other.uploaded_bytes;
        self.mounted_blobs += other.mounted_blobs;
        self.existing_blobs += other.existing_blobs;
        self.manifests += other.manifests;
        self.referrers_tags += other.referrers_tags;
    }
}

/// Where earlier pushes of a run put each blob: (registry, blob) → a repository that holds it. A push
/// that finds its repository lacks a blob held elsewhere mounts it from there instead of uploading
/// it again, as a daemon remembers where it pushed a layer; so images pushed one at a time (while
/// the rest build) send each shared layer once.
#[derive(Debug, Default)]
pub struct BlobLocations {
    held: Mutex<HashMap<(String, Digest), String>>,
}

impl BlobLocations {
    fn get(&self, registry: &str, digest: &Digest) -> Option<String> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).get(&(registry.to_string(), *digest)).cloned()
    }

    fn record(&self, registry: &str, digest: &Digest, repository: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.entry((registry.to_string(), *digest)).or_insert_with(|| repository.to_string());
    }
}

/// One manifest to push, resolved from the store.
struct Job {
    target: Reference,
    manifest_bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    /// `(digest, size)` of the config and every layer, without repeats.
    blobs: Vec<(Digest, u64)>,
    /// The manifest this one refers to, and how it is listed among that manifest's referrers.
    subject: Option<(Digest, Referrer)>,
    /// An image index: put after the manifests it lists (pushed by digest in the same run).
    index: bool,
}

/// Where a blob stands in this run, per registry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlobState {
    /// Its owner task has not finished.
    Pending,
    /// The owner's repository holds it (uploaded or found there).
    Ready,
    /// The owner failed; others upload it themselves.
    Failed,
}

/// Shared state of one push run.
struct Run<'a> {
    store: &'a Store,
    jobs: &'a [Job],
    clients: &'a HashMap<String, Client>,
    chunk_size: Option<u64>,
    states: Mutex<HashMap<(String, Digest), BlobState>>,
    changed: Condvar,
    uploaded_blobs: AtomicUsize,
    uploaded_bytes: AtomicU64,
    mounted_blobs: AtomicUsize,
    existing_blobs: AtomicUsize,
    progress: PushProgress,
    /// Blobs earlier pushes of the run left in other repositories (see [`BlobLocations`]).
    locations: Option<&'a BlobLocations>,
}

/// Push each local tag to its target reference: blobs first (see `plan.rs`), then the manifests. A tag
/// holding an image index (one image per platform) pushes each of its images by digest, then the index.
///
/// Images are read from the store as they are; targets may be on several registries. The target's tag
/// (or, for a digest-only reference, its digest) names the pushed manifest.
pub fn push(
    store: &Store,
    images: &[(String, Reference)],
    opts: &RegistryOptions,
) -> Result<PushReport, RegistryError> {
    push_remembering(store, images, opts, None)
}

/// [`push`], mounting blobs from where earlier pushes of the run put them and recording where this
/// one puts them (`locations`, shared by the pushes of one run).
pub fn push_remembering(
    store: &Store,
    images: &[(String, Reference)],
    opts: &RegistryOptions,
    locations: Option<&BlobLocations>,
) -> Result<PushReport, RegistryError> {
    let mut jobs = Vec::new();
    for (tag, target) in images {
        let desc = store.resolve(tag)?.ok_or_else(|| RegistryError::NotInStore(tag.to_string()))?;
        tag_jobs(store, tag, &desc, target, &mut jobs)?;
    }
    run(store, &jobs, opts, locations)
}

/// The pushes of tag `tag` (`desc`) to `target`: its image; for an image index, each image it lists (by
/// digest, into the same repository), then the index itself under the target's tag.
fn tag_jobs(
    store: &Store,
    tag: &str,
    desc: &Descriptor,
    target: &Reference,
    jobs: &mut Vec<Job>,
) -> Result<(), RegistryError> {
    if !store::is_index(&desc.media_type) {
        jobs.push(load_job(store, tag, desc, target.clone())?);
        return Ok(());
    }
    for m in store.read_index(desc)?.manifests {
        let by_digest = Reference::parse(&format!("{}/{}@{}", target.registry(), target.repository(), m.digest))?;
        let platform = m.platform.as_ref().map_or_else(|| "no platform".to_owned(), ToString::to_string);
        jobs.push(load_job(store, &format!("{tag} ({platform})"), &m, by_digest)?);
    }
    jobs.push(Job {
        target: target.clone(),
        manifest_bytes: store.read_blob_bytes(&desc.digest, store::MAX_MANIFEST_SIZE)?,
        media_type: desc.media_type.clone(),
        digest: desc.digest,
        blobs: Vec::new(),
        subject: None,
        index: true,
    });
    Ok(())
}

/// Push `artifacts` (manifests in the store whose `subject` is the image `image` names, such as an SBOM
/// or a provenance attestation) into the image's repository, by digest, after their blobs. Where the
/// registry does not answer with `OCI-Subject` (no referrers API), the subject's referrers tag
/// (`sha256-<hex>`) is updated to list them. Push the image itself first.
pub fn push_referrers(
    store: &Store,
    image: &Reference,
    artifacts: &[Descriptor],
    opts: &RegistryOptions,
) -> Result<PushReport, RegistryError> {
    let jobs = artifacts.iter().map(|a| referrer_job(store, image, a)).collect::<Result<Vec<_>, _>>()?;
    run(store, &jobs, opts, None)
}

/// Push every referrer the store keeps for each local tag's image (its SBOM, its provenance; for an
/// image index, those of each image it lists) into the target's repository, in one run, as [`push_referrers`] does for one image. Push the images first.
/// Tags whose image has no referrers are skipped; with none at all nothing is contacted.
pub fn push_referrers_of(
    store: &Store,
    images: &[(String, Reference)],
    opts: &RegistryOptions,
) -> Result<PushReport, RegistryError> {
    let mut jobs = Vec::new();
    for (tag, target) in images {
        let desc = store.resolve(tag)?.ok_or_else(|| RegistryError::NotInStore(tag.to_string()))?;
        // An index has none itself: each image it lists has its own.
        let subjects = match store::is_index(&desc.media_type) {
            true => store.read_index(&desc)?.manifests,
            false => vec![desc],
        };
        for subject in subjects {
            for a in store.referrers(&subject.digest, None)? {
                jobs.push(referrer_job(store, target, &a)?);
            }
        }
    }
    if jobs.is_empty() {
        return Ok(PushReport::default());
    }
    run(store, &jobs, opts, None)
}

/// The push of artifact `a` into `image`'s repository, by digest; an error if it has no subject.
fn referrer_job(store: &Store, image: &Reference, a: &Descriptor) -> Result<Job, RegistryError> {
    let target = Reference::parse(&format!("{}/{}@{}", image.registry(), image.repository(), a.digest))?;
    let job = load_job(store, &format!("artifact {}", a.digest), a, target)?;
    match &job.subject {
        Some(_) => Ok(job),
        None => Err(RegistryError::Protocol {
            what: format!("pushing artifact {} as a referrer of {image}", a.digest),
            reason: "the manifest has no subject".into(),
        }),
    }
}

fn load_job(store: &Store, what: &str, desc: &Descriptor, target: Reference) -> Result<Job, RegistryError> {
    let manifest_bytes = store.read_blob_bytes(&desc.digest, store::MAX_MANIFEST_SIZE)?;
    let media_type =
        if desc.media_type.is_empty() { store::MEDIA_OCI_MANIFEST.to_string() } else { desc.media_type.clone() };
    if !store::is_manifest(&media_type) {
        return Err(RegistryError::Protocol {
            what: format!("pushing {what}"),
            reason: format!("only single-image manifests can be pushed, {what} is {media_type}"),
        });
    }
    let manifest: Manifest = store.read_manifest(desc)?;
    let mut blobs = Vec::with_capacity(manifest.layers.len() + 1);
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if !blobs.iter().any(|(x, _)| *x == d.digest) {
            blobs.push((d.digest, d.size));
        }
    }
    let subject = match manifest.extra.get("subject") {
        None => None,
        Some(s) => {
            let s: Descriptor = serde_json::from_value(s.clone()).map_err(|e| RegistryError::Protocol {
                what: format!("pushing {what}"),
                reason: format!("invalid subject: {e}"),
            })?;
            Some((s.digest, Referrer::of_manifest(&media_type, &manifest_bytes, &manifest)))
        }
    };
    Ok(Job { target, manifest_bytes, media_type, digest: desc.digest, blobs, subject, index: false })
}

/// Blobs, then manifests (referrers after the rest), then referrers tags where needed.
fn run(
    store: &Store,
    jobs: &[Job],
    opts: &RegistryOptions,
    locations: Option<&BlobLocations>,
) -> Result<PushReport, RegistryError> {
    let mut clients = HashMap::new();
    for job in jobs {
        let r = &job.target;
        if !clients.contains_key(r.registry()) {
            clients.insert(r.registry().to_string(), Client::new(r.registry(), r.api_host(), opts)?);
        }
    }
    let images: Vec<PlanImage> = jobs
        .iter()
        .map(|j| PlanImage { registry: j.target.registry(), repository: j.target.repository(), blobs: &j.blobs })
        .collect();
    let tasks = plan::plan(&images);
    let owned = tasks.iter().filter(|t| t.source == Source::Upload);
    let planned_bytes = owned.clone().map(|t| t.size).sum();
    let states = owned.map(|t| ((jobs[t.image].target.registry().to_string(), t.digest), BlobState::Pending)).collect();
    let progress = PushProgress::new(planned_bytes, tasks.len(), jobs.len());
    for client in clients.values_mut() {
        client.progress = progress.counter();
    }
    info!(images = jobs.len(), blob_tasks = tasks.len(), planned_bytes, "pushing");
    let run = Run {
        store,
        jobs,
        clients: &clients,
        chunk_size: opts.chunk_size,
        states: Mutex::new(states),
        changed: Condvar::new(),
        uploaded_blobs: AtomicUsize::new(0),
        uploaded_bytes: AtomicU64::new(0),
        mounted_blobs: AtomicUsize::new(0),
        existing_blobs: AtomicUsize::new(0),
        progress,
        locations,
    };
    let result = run.blobs_then_manifests(&tasks, opts.threads);
    run.progress.finish();
    let referrers_tags = result?;
    Ok(PushReport {
        uploaded_blobs: run.uploaded_blobs.into_inner(),
        uploaded_bytes: run.uploaded_bytes.into_inner(),
        mounted_blobs: run.mounted_blobs.into_inner(),
        existing_blobs: run.existing_blobs.into_inner(),
        manifests: jobs.len(),
        referrers_tags,
    })
}

impl Run<'_> {
    /// The push proper; returns how many referrers tags were written.
    fn blobs_then_manifests(&self, tasks: &[Task], threads: usize) -> Result<usize, RegistryError> {
        parallel(threads, tasks, |t| self.blob_task(t))?;
        let (referrers, images): (Vec<usize>, Vec<usize>) =
            (0..self.jobs.len()).partition(|&i| self.jobs[i].subject.is_some());
        let (indexes, images): (Vec<usize>, Vec<usize>) = images.into_iter().partition(|&i| self.jobs[i].index);
        let untracked = Mutex::new(Vec::new());
        // A registry refuses an index whose manifests it does not have yet.
        for group in [images, indexes, referrers] {
            parallel(threads, &group, |&i| {
                let job = &self.jobs[i];
                let tag = job.target.tag().map_or_else(|| job.digest.to_string(), str::to_string);
                let client = &self.clients[job.target.registry()];
                let oci_subject = client.put_manifest(
                    job.target.repository(),
                    &tag,
                    &job.media_type,
                    &job.manifest_bytes,
                    &job.digest,
                )?;
                self.progress.image(&job.target.to_string(), &job.digest);
                if job.subject.is_some() && oci_subject.is_none() {
                    untracked.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                }
                Ok(())
            })?;
        }
        // Referrers the registry did not index itself go into their subject's referrers tag, one tag
        // update per subject, listed in the order they were given (not the order their PUTs finished).
        let mut untracked = untracked.into_inner().unwrap_or_else(|p| p.into_inner());
        untracked.sort_unstable();
        let mut by_subject: BTreeMap<(&str, &str, Digest), Vec<Referrer>> = BTreeMap::new();
        for i in untracked {
            let job = &self.jobs[i];
            if let Some((subject, entry)) = &job.subject {
                by_subject
                    .entry((job.target.registry(), job.target.repository(), *subject))
                    .or_default()
                    .push(entry.clone());
            }
        }
        let mut written = 0;
        for ((registry, repo, subject), entries) in by_subject {
            if self.clients[registry].add_to_referrers_tag(repo, &subject, &entries)? {
                written += 1;
            }
        }
        Ok(written)
    }

    fn blob_task(&self, t: &Task) -> Result<(), RegistryError> {
        let result = self.blob_task_inner(t);
        if let (Ok(()), Some(locations)) = (&result, self.locations) {
            let target = &self.jobs[t.image].target;
            locations.record(target.registry(), &t.digest, target.repository());
        }
        if t.source == Source::Upload {
            let key = (self.jobs[t.image].target.registry().to_string(), t.digest);
            let state = if result.is_ok() { BlobState::Ready } else { BlobState::Failed };
            self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(key, state);
            self.changed.notify_all();
        }
        result
    }

    fn blob_task_inner(&self, t: &Task) -> Result<(), RegistryError> {
        let target = &self.jobs[t.image].target;
        let client = &self.clients[target.registry()];
        let repo = target.repository();
        let planned = if t.source == Source::Upload { t.size } else { 0 };
        if client.blob_exists(repo, &t.digest)? {
            debug!(digest = %t.digest, repo, "already there");
            self.existing_blobs.fetch_add(1, Ordering::Relaxed);
            self.progress.blob(repo, &t.digest, t.size, planned, BlobOutcome::Present);
            return Ok(());
        }
        let mut session = None;
        let earlier = self.locations.and_then(|l| l.get(target.registry(), &t.digest)).filter(|r| r != repo);
        let from = match t.source {
            Source::MountFrom { owner } if self.wait_for_owner(target.registry(), &t.digest) == BlobState::Ready => {
                Some(self.jobs[owner].target.repository())
            }
            _ => earlier.as_deref(),
        };
        if let Some(from) = from {
            match client.mount_blob(repo, &t.digest, from)? {
                MountOutcome::Mounted => {
                    self.mounted_blobs.fetch_add(1, Ordering::Relaxed);
                    self.progress.blob(repo, &t.digest, t.size, planned, BlobOutcome::Mounted { from });
                    return Ok(());
                }
                MountOutcome::Upload(url) => {
                    debug!(digest = %t.digest, repo, from, "mount refused, uploading");
                    session = Some(url);
                }
            }
        }
        let size = self.store.blob_size(&t.digest)?;
        if size != t.size {
            return Err(RegistryError::Store(store::StoreError::SizeMismatch {
                digest: t.digest,
                expected: t.size,
                actual: size,
            }));
        }
        client.upload_blob(repo, &t.digest, self.store, size, session, self.chunk_size)?;
        self.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.blob(repo, &t.digest, size, planned, BlobOutcome::Uploaded);
        Ok(())
    }

    /// Block until the owner of `digest` on `registry` has finished.
    fn wait_for_owner(&self, registry: &str, digest: &Digest) -> BlobState {
        let key = (registry.to_string(), *digest);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match states.get(&key) {
                Some(BlobState::Pending) => {
                    states = self.changed.wait(states).unwrap_or_else(|p| p.into_inner());
                }
                Some(s) => return *s,
                None => return BlobState::Failed,
            }
        }
    }
}
