//! The push plan: which repository uploads which blob, and which repositories mount it from there.
//!
//! One task per (repository, blob). The first repository of the run that needs a blob on a registry
//! *owns* it: it checks for it and, if missing, uploads it. Every other repository of that registry checks,
//! then waits for the owner and mounts the blob from the owner's repository, uploading it itself only if
//! the registry refuses the mount or the owner failed. Owner tasks come before all others, so with any
//! number of workers an owner is always running or done when someone waits for it: no deadlock, and no
//! blob is uploaded twice. A pure function of the images, so its rules are tested without a registry.

use std::collections::{HashMap, HashSet};

use layers::Digest;

/// What the plan needs to know of one image to push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanImage<'a> {
    /// Registry of the target (as written in references).
    pub registry: &'a str,
    /// Repository of the target.
    pub repository: &'a str,
    /// `(digest, size)` of its config and layers.
    pub blobs: &'a [(Digest, u64)],
}

/// Where a task gets its blob from when its repository lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Upload the bytes: this is the blob's first repository on the registry.
    Upload,
    /// Mount it from the repository of image `owner` (the blob's first repository on the registry).
    MountFrom {
        /// Index of the owning image.
        owner: usize,
    },
}

/// One (repository, blob) task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    /// Index of the image whose target repository this is.
    pub image: usize,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// How it gets there when missing.
    pub source: Source,
}

/// The tasks of a push, owners first (in image order, so a base's blobs go up before its children's),
/// then the mounts. A blob listed twice for one repository (two tags of it) gets one task.
pub(crate) fn plan(images: &[PlanImage<'_>]) -> Vec<Task> {
    let mut owners: HashMap<(&str, Digest), usize> = HashMap::new();
    let mut seen: HashSet<(&str, &str, Digest)> = HashSet::new();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (i, img) in images.iter().enumerate() {
        for &(digest, size) in img.blobs {
            if !seen.insert((img.registry, img.repository, digest)) {
                continue;
            }
            match owners.get(&(img.registry, digest)) {
                Some(&owner) => rest.push(Task { image: i, digest, size, source: Source::MountFrom { owner } }),
                None => {
                    owners.insert((img.registry, digest), i);
                    first.push(Task { image: i, digest, size, source: Source::Upload });
                }
            }
        }
    }
    first.into_iter().chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn shared_blobs_are_uploaded_once_and_mounted_elsewhere() {
        let base = [(d("b1"), 10), (d("b2"), 20)];
        let a = [base[0], base[1], (d("a"), 1)];
        let b = [base[0], base[1], (d("b"), 2)];
        let images = [
            PlanImage { registry: "r", repository: "ns/a", blobs: &a },
            PlanImage { registry: "r", repository: "ns/b", blobs: &b },
        ];
        let t = plan(&images);
        let up = |image, digest, size| Task { image, digest, size, source: Source::Upload };
        let mount = |image, digest, size, owner| Task { image, digest, size, source: Source::MountFrom { owner } };
        assert_eq!(
            t,
            [
                up(0, d("b1"), 10),
                up(0, d("b2"), 20),
                up(0, d("a"), 1),
                up(1, d("b"), 2),
                mount(1, d("b1"), 10, 0),
                mount(1, d("b2"), 20, 0),
            ]
        );
    }

    #[test]
    fn every_owner_comes_before_the_tasks_that_wait_for_it() {
        let blobs: Vec<Vec<(Digest, u64)>> =
            (0..6).map(|i| (0..=i).map(|j| (d(&format!("l{j}")), j as u64)).collect()).collect();
        let images: Vec<PlanImage> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| PlanImage { registry: "r", repository: ["x", "y", "z"][i % 3], blobs: b })
            .collect();
        let t = plan(&images);
        let last_owner = t.iter().rposition(|t| t.source == Source::Upload).unwrap();
        let first_mount = t.iter().position(|t| t.source != Source::Upload).unwrap();
        assert!(last_owner < first_mount);
        // Exactly one upload per distinct blob; one task per (repository, blob).
        assert_eq!(t.iter().filter(|t| t.source == Source::Upload).count(), 6);
        let pairs: HashSet<(&str, Digest)> = t.iter().map(|t| (images[t.image].repository, t.digest)).collect();
        assert_eq!(pairs.len(), t.len());
        assert_eq!(t.len(), 6 + 5 + 4, "repository x needs l0..l3, y l0..l4, z l0..l5");
        for task in &t {
            if let Source::MountFrom { owner } = task.source {
                assert_ne!(images[owner].repository, images[task.image].repository);
                assert!(images[owner].blobs.iter().any(|(x, _)| *x == task.digest));
            }
        }
    }

    #[test]
    fn tags_of_one_repository_share_tasks_and_registries_do_not() {
        let l = [(d("l"), 5)];
        let images = [
            PlanImage { registry: "r1", repository: "ns/a", blobs: &l },
            PlanImage { registry: "r1", repository: "ns/a", blobs: &l }, // another tag, same repository
            PlanImage { registry: "r2", repository: "ns/a", blobs: &l }, // another registry: its own upload
            PlanImage { registry: "r2", repository: "ns/b", blobs: &l },
        ];
        let t = plan(&images);
        assert_eq!(
            t.iter().map(|t| (t.image, t.source)).collect::<Vec<_>>(),
            [(0, Source::Upload), (2, Source::Upload), (3, Source::MountFrom { owner: 2 })]
        );
        assert!(plan(&[]).is_empty());
    }
}
