//! Push a set of images that share blobs, uploading every blob once.
//!
//! Plan: one task per (repository, blob). The first repository of the run that needs a blob *owns* it:
//! it HEADs and, if missing, uploads it. Every other repository HEADs, then waits for the owner and
//! mounts the blob from the owner's repository (`POST …?mount=&from=`), falling back to an upload only
//! if the registry refuses the mount (202) or the owner failed. Owner tasks are queued before all others,
//! so with any number of workers an owner is always running or done when someone waits for it: no
//! deadlock, and no blob is uploaded twice. Manifests go last, with their exact stored bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use layers::Digest;
use tracing::{debug, info};

use super::client::{Client, MountOutcome};
use super::{Reference, RegistryError, RegistryOptions};
use crate::store::{self, Manifest, Store};

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
}

/// One image to push, resolved from the store.
struct Job {
    target: Reference,
    manifest_bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    /// `(digest, size)` of the config and every layer, without repeats.
    blobs: Vec<(Digest, u64)>,
}

/// Where a blob stands in this run, per registry.
#[derive(Clone)]
enum BlobState {
    /// Its owner task has not finished.
    Pending,
    /// This repository holds it (uploaded or found there).
    In(String),
    /// The owner failed; others upload it themselves.
    Failed,
}

struct Task {
    job: usize,
    digest: Digest,
    size: u64,
    owner: bool,
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
}

/// Push each local tag to its target reference (see the module docs for the order of operations).
///
/// Images are read from the store as they are; targets may be on several registries. The target's tag
/// (or, for a digest-only reference, its digest) names the pushed manifest.
pub fn push(
    store: &Store,
    images: &[(String, Reference)],
    opts: &RegistryOptions,
) -> Result<PushReport, RegistryError> {
    let jobs = images.iter().map(|(tag, target)| load_job(store, tag, target)).collect::<Result<Vec<_>, _>>()?;
    let mut clients = HashMap::new();
    for job in &jobs {
        let r = &job.target;
        if !clients.contains_key(r.registry()) {
            clients.insert(r.registry().to_string(), Client::new(r.registry(), r.api_host(), opts)?);
        }
    }
    // Owners first (in image order, so a base's blobs go up before its children's), then the rest.
    let mut owners: BTreeMap<(String, Digest), usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (i, job) in jobs.iter().enumerate() {
        for &(digest, size) in &job.blobs {
            let r = &job.target;
            if !seen.insert((r.registry().to_string(), r.repository().to_string(), digest)) {
                continue; // another tag of the same repository already covers it
            }
            let key = (r.registry().to_string(), digest);
            let owner = !owners.contains_key(&key);
            if owner {
                owners.insert(key, i);
                first.push(Task { job: i, digest, size, owner });
            } else {
                rest.push(Task { job: i, digest, size, owner });
            }
        }
    }
    let states = owners.keys().map(|k| (k.clone(), BlobState::Pending)).collect();
    let tasks: Vec<Task> = first.into_iter().chain(rest).collect();
    info!(images = jobs.len(), blob_tasks = tasks.len(), unique_blobs = owners.len(), "pushing");
    let run = Run {
        store,
        jobs: &jobs,
        clients: &clients,
        chunk_size: opts.chunk_size,
        states: Mutex::new(states),
        changed: Condvar::new(),
        uploaded_blobs: AtomicUsize::new(0),
        uploaded_bytes: AtomicU64::new(0),
        mounted_blobs: AtomicUsize::new(0),
        existing_blobs: AtomicUsize::new(0),
    };
    parallel(opts.threads, &tasks, |t| run.blob_task(t))?;
    parallel(opts.threads, &jobs, |job| {
        let client = &clients[job.target.registry()];
        let tag = job.target.tag().map_or_else(|| job.digest.to_string(), str::to_string);
        client.put_manifest(job.target.repository(), &tag, &job.media_type, &job.manifest_bytes, &job.digest)?;
        info!(target = %job.target, digest = %job.digest, "pushed");
        Ok(())
    })?;
    Ok(PushReport {
        uploaded_blobs: run.uploaded_blobs.into_inner(),
        uploaded_bytes: run.uploaded_bytes.into_inner(),
        mounted_blobs: run.mounted_blobs.into_inner(),
        existing_blobs: run.existing_blobs.into_inner(),
        manifests: jobs.len(),
    })
}

fn load_job(store: &Store, tag: &str, target: &Reference) -> Result<Job, RegistryError> {
    let desc = store.resolve(tag)?.ok_or_else(|| RegistryError::NotInStore(tag.to_string()))?;
    let manifest_bytes = store.read_blob_bytes(&desc.digest, store::MAX_MANIFEST_SIZE)?;
    let media_type =
        if desc.media_type.is_empty() { store::MEDIA_OCI_MANIFEST.to_string() } else { desc.media_type.clone() };
    if !store::is_manifest(&media_type) {
        return Err(RegistryError::Protocol {
            what: format!("pushing {tag}"),
            reason: format!("only single-image manifests can be pushed, {tag:?} is {media_type}"),
        });
    }
    let manifest: Manifest = store.read_manifest(&desc)?;
    let mut blobs = Vec::with_capacity(manifest.layers.len() + 1);
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if !blobs.iter().any(|(x, _)| *x == d.digest) {
            blobs.push((d.digest, d.size));
        }
    }
    Ok(Job { target: target.clone(), manifest_bytes, media_type, digest: desc.digest, blobs })
}

/// Run `f` over `items` on at most `threads` workers; stops taking new items after the first error.
fn parallel<T: Sync>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<(), RegistryError> + Sync,
) -> Result<(), RegistryError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::SeqCst);
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Run<'_> {
    fn blob_task(&self, t: &Task) -> Result<(), RegistryError> {
        let target = &self.jobs[t.job].target;
        let key = (target.registry().to_string(), t.digest);
        let result = self.blob_task_inner(t);
        if t.owner {
            let state = match &result {
                Ok(()) => BlobState::In(target.repository().to_string()),
                Err(_) => BlobState::Failed,
            };
            self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(key, state);
            self.changed.notify_all();
        }
        result
    }

    fn blob_task_inner(&self, t: &Task) -> Result<(), RegistryError> {
        let target = &self.jobs[t.job].target;
        let client = &self.clients[target.registry()];
        let repo = target.repository();
        if client.blob_exists(repo, &t.digest)? {
            debug!(digest = %t.digest, repo, "already there");
            self.existing_blobs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut session = None;
        if !t.owner {
            match self.wait_for_owner(target.registry(), &t.digest) {
                BlobState::In(from) => match client.mount_blob(repo, &t.digest, &from)? {
                    MountOutcome::Mounted => {
                        debug!(digest = %t.digest, repo, from, "mounted");
                        self.mounted_blobs.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    MountOutcome::Upload(url) => {
                        debug!(digest = %t.digest, repo, from, "mount refused, uploading");
                        session = Some(url);
                    }
                },
                BlobState::Failed | BlobState::Pending => {}
            }
        }
        let path = self.store.blob_path(&t.digest);
        let size = self.store.blob_size(&t.digest)?;
        if size != t.size {
            return Err(RegistryError::Store(store::StoreError::SizeMismatch {
                digest: t.digest,
                expected: t.size,
                actual: size,
            }));
        }
        client.upload_blob(repo, &t.digest, &path, size, session, self.chunk_size)?;
        debug!(digest = %t.digest, repo, size, "uploaded");
        self.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
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
                Some(s) => return s.clone(),
                None => return BlobState::Failed,
            }
        }
    }
}
