//! `index.json` and the store lock: tags are read without a lock and changed under it, by an atomic
//! replace of the whole index.

use std::fs::{self, File};

use super::{ANNOTATION_REF_NAME, Descriptor, Index, Result, Store, StoreError, canonical_json, io_err};

/// Tag names are stored verbatim as the ref.name annotation; refuse only what no tool could match.
pub(super) fn check_tag(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 512 {
        "longer than 512 bytes"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidTag { name: name.to_owned(), reason })
}

/// The exclusive store lock; released when dropped. See [`Store::lock`].
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Take the exclusive store lock (`flock` on `<root>/.lock`), waiting for it. Needed for every
    /// `index.json` read-modify-write; the store's own methods take it themselves, so callers only need it
    /// to make several updates atomic together. Not re-entrant: do not call `set_tag` while holding it.
    pub fn lock(&self) -> Result<StoreLock> {
        let file = self.lock_file()?;
        file.lock().map_err(io_err(self.root.join(".lock")))?;
        self.clean_tmp();
        Ok(StoreLock { _file: file })
    }

    /// Take the store lock if nobody holds it; `Ok(None)` if another holder has it.
    pub fn try_lock(&self) -> Result<Option<StoreLock>> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => {
                self.clean_tmp();
                Ok(Some(StoreLock { _file: file }))
            }
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::Io { path: self.root.join(".lock"), source: e }),
        }
    }

    pub(super) fn lock_file(&self) -> Result<File> {
        let path = self.root.join(".lock");
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(path))
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Json { what: path.display().to_string(), source })?;
        if index.schema_version != 2 {
            return Err(StoreError::Layout { path, reason: format!("schemaVersion {}", index.schema_version) });
        }
        Ok(index)
    }

    /// Replace `index.json`; the caller holds the lock.
    pub(super) fn write_index(&self, index: &Index) -> Result<()> {
        self.replace_file(&self.index_path(), &canonical_json(index))
    }

    /// Point tag `name` at `manifest` (a manifest or index descriptor): the `index.json` entry of that name
    /// is replaced, or appended. Takes the store lock.
    pub fn set_tag(&self, name: &str, manifest: &Descriptor) -> Result<()> {
        check_tag(name)?;
        let lock = self.lock()?;
        self.set_tag_locked(&lock, name, manifest)
    }

    /// [`Store::set_tag`] for a caller that holds the store lock (`_lock` proves it).
    fn set_tag_locked(&self, _lock: &StoreLock, name: &str, manifest: &Descriptor) -> Result<()> {
        let mut entry = manifest.clone();
        entry.annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        let mut index = self.index()?;
        // Keep the tag's place in the index; drop any duplicate entries of the same name.
        let at = index.manifests.iter().position(|d| d.ref_name() == Some(name));
        index.manifests.retain(|d| d.ref_name() != Some(name));
        index.manifests.insert(at.unwrap_or(index.manifests.len()), entry);
        self.write_index(&index)?;
        tracing::debug!(name, digest = %manifest.digest, "tagged");
        Ok(())
    }

    /// Tag `name` with `manifest` (whose descriptor names its platform) for that platform only: what the
    /// tag held for other platforms stays, the tag then pointing to an image index of them all (sorted by
    /// platform); alone, `manifest` is tagged as itself. Root images of builds for several platforms
    /// share their `FROM` name this way. A tagged image whose platform is not known is replaced.
    ///
    /// The tag is read and written under one hold of the store lock: platforms finishing the same image
    /// at once (threads of one build, or other processes) each add their entry, none lost.
    pub fn set_platform_tag(&self, name: &str, manifest: &Descriptor) -> Result<Descriptor> {
        let Some(platform) = manifest.platform.clone() else {
            self.set_tag(name, manifest)?;
            return Ok(manifest.clone());
        };
        check_tag(name)?;
        let lock = self.lock()?;
        let mut entries = match self.resolve(name)? {
            None => Vec::new(),
            Some(d) if self.doc_kind(&d)? == super::DocKind::Index => self.read_index(&d)?.manifests,
            Some(d) => vec![d],
        };
        entries.retain(|d| d.platform.as_ref().is_some_and(|p| !p.matches(&platform) && !platform.matches(p)));
        if entries.is_empty() {
            self.set_tag_locked(&lock, name, manifest)?;
            return Ok(manifest.clone());
        }
        entries.push(manifest.clone());
        for e in &mut entries {
            e.annotations.remove(ANNOTATION_REF_NAME);
        }
        entries.sort_by_key(|d| d.platform.as_ref().map(ToString::to_string));
        let index = Index { manifests: entries, ..Index::default() };
        let (digest, size) = self.put_json(&index)?;
        let desc = Descriptor::new(super::MEDIA_OCI_INDEX, digest, size);
        self.set_tag_locked(&lock, name, &desc)?;
        Ok(desc)
    }

    /// Remove tag `name`; returns whether it existed. The blobs stay (see [`Store::gc`]). Takes the lock.
    pub fn untag(&self, name: &str) -> Result<bool> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| d.ref_name() != Some(name));
        if index.manifests.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    /// The descriptor tagged `name`, if any.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self.index()?.manifests.into_iter().find(|d| d.ref_name() == Some(name)))
    }

    /// Every tag with its descriptor, sorted by tag.
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        let mut tags: Vec<(String, Descriptor)> = self
            .index()?
            .manifests
            .into_iter()
            .filter_map(|d| d.ref_name().map(str::to_owned).map(|n| (n, d)))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ImageConfig;
    use super::*;

    /// Platforms finishing the same image at once (one thread each, all released together) each leave
    /// their entry in the tag's index: the read-modify-write happens under one hold of the lock.
    #[test]
    fn platform_tags_set_at_once_keep_every_platform() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let arches = ["amd64", "arm64", "ppc64le", "s390x", "riscv64", "386"];
        let images: Vec<Descriptor> = arches
            .iter()
            .map(|arch| {
                let config = ImageConfig { architecture: (*arch).into(), os: "linux".into(), ..ImageConfig::default() };
                store.write_image(&config, &[]).unwrap()
            })
            .collect();
        for round in 0..10 {
            let tag = format!("kolla/base:{round}");
            let start = std::sync::Barrier::new(images.len());
            std::thread::scope(|s| {
                for image in &images {
                    let (store, tag, start) = (&store, &tag, &start);
                    s.spawn(move || {
                        start.wait();
                        store.set_platform_tag(tag, image).unwrap();
                    });
                }
            });
            let tagged = store.resolve(&tag).unwrap().unwrap();
            let mut listed: Vec<String> =
                store.read_index(&tagged).unwrap().manifests.iter().map(|d| d.digest.to_string()).collect();
            listed.sort();
            let mut want: Vec<String> = images.iter().map(|d| d.digest.to_string()).collect();
            want.sort();
            assert_eq!(listed, want, "round {round}: every platform's image in the index");
        }
    }
}
