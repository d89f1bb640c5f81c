//! Child images start as soon as their parent's steps are done, while the parent's last layers are
//! still being compressed (see [`super::background`]).
//!
//! What a child needs to run its steps is its parent's config and extracted layer dirs, and a `FROM`
//! step key — which is made of the parent's diff_ids, not of its manifest digest, for exactly this
//! reason. Only to write its own manifest does the child need the parent's compressed layer
//! descriptors (and the parent's manifest digest, which its provenance names): it waits for them
//! then. A parent that fails after handing off (a background compression failed) fails its children
//! with its own error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::BuildError;
use crate::store::{Descriptor, ImageConfig};

/// The images of one run that children may start from before they are in the store, by tag.
pub struct InRun<'a> {
    images: Mutex<HashMap<String, Arc<Handoff>>>,
    /// Told the tag of each image handed off, so that its children can be scheduled.
    notify: &'a (dyn Fn(&str) + Sync),
}

/// One parent: what its children start from, and its result once its manifest is written.
pub(crate) struct Handoff {
    /// The config as the store will hold it.
    pub config: ImageConfig,
    /// Where its extracted layer dirs are, base first.
    pub dirs: Vec<PathBuf>,
    /// Its layers' descriptors where they are known at hand-off (not those still being compressed, whose
    /// dirs are there): a child extracts a missing dir from them.
    pub layers: Vec<Option<Descriptor>>,
    done: Mutex<Option<Result<Written, String>>>,
    cond: Condvar,
}

/// A parent's manifest, once written.
#[derive(Clone)]
pub(crate) struct Written {
    /// The manifest (as tagged in the store).
    pub descriptor: Descriptor,
    /// The manifest's layer descriptors.
    pub layers: Vec<Descriptor>,
}

impl std::fmt::Debug for InRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("InRun").field("images", &images.keys().collect::<Vec<_>>()).finish()
    }
}

impl<'a> InRun<'a> {
    /// `notify` is called with each tag handed off (from the parent's build thread).
    pub fn new(notify: &'a (dyn Fn(&str) + Sync)) -> InRun<'a> {
        InRun { images: Mutex::new(HashMap::new()), notify }
    }

    /// Hands off image `tag`: its config (round-tripped through JSON, so a child sees exactly what it
    /// would read from the store), its layer dirs and the layer descriptors known so far. The caller completes it through the returned
    /// [`Parent`].
    pub(crate) fn publish(
        &self,
        tag: &str,
        config: &ImageConfig,
        dirs: Vec<PathBuf>,
        layers: Vec<Option<Descriptor>>,
    ) -> Result<Parent, BuildError> {
        let json = serde_json::to_vec(config).map_err(|e| BuildError::Input(format!("image config of {tag}: {e}")))?;
        let config =
            serde_json::from_slice(&json).map_err(|e| BuildError::Input(format!("image config of {tag}: {e}")))?;
        let handoff = Arc::new(Handoff { config, dirs, layers, done: Mutex::new(None), cond: Condvar::new() });
        self.images.lock().unwrap_or_else(|e| e.into_inner()).insert(tag.to_owned(), Arc::clone(&handoff));
        (self.notify)(tag);
        Ok(Parent { handoff, tag: tag.to_owned() })
    }

    /// The image handed off under `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Handoff>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
}

/// The parent's side of a hand-off. Dropped without [`Parent::complete`] (its build unwound), it fails
/// the hand-off, so that no child waits forever.
pub(crate) struct Parent {
    handoff: Arc<Handoff>,
    tag: String,
}

impl Parent {
    /// Records the parent's result and wakes the children waiting for it.
    pub(crate) fn complete(self, result: Result<Written, String>) {
        self.handoff.set(result);
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        self.handoff.set(Err(format!("the build of {} stopped", self.tag)));
    }
}

impl Handoff {
    /// The first result set is the one children see.
    fn set(&self, result: Result<Written, String>) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.is_none() {
            *done = Some(result);
            self.cond.notify_all();
        }
    }

    /// Waits for the parent's result.
    pub(crate) fn wait(&self) -> Result<Written, String> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = done.as_ref() {
                return r.clone();
            }
            done = self.cond.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_wait_for_the_result_and_see_a_failure() {
        let told = Mutex::new(Vec::new());
        let notify = |tag: &str| told.lock().unwrap().push(tag.to_owned());
        let run = InRun::new(&notify);
        let parent =
            run.publish("kolla/base:1", &ImageConfig::default(), vec![PathBuf::from("/l/1")], vec![None]).unwrap();
        assert_eq!(*told.lock().unwrap(), vec!["kolla/base:1".to_owned()]);
        let child = run.get("kolla/base:1").expect("published");
        assert!(run.get("kolla/other:1").is_none());
        std::thread::scope(|s| {
            let waiter = s.spawn(|| child.wait());
            std::thread::sleep(std::time::Duration::from_millis(20));
            parent.complete(Err("layer of RUN x: No space left on device".into()));
            assert_eq!(waiter.join().unwrap().err().unwrap(), "layer of RUN x: No space left on device");
        });
    }

    #[test]
    fn a_parent_that_stops_without_a_result_fails_its_children() {
        let notify = |_: &str| {};
        let run = InRun::new(&notify);
        drop(run.publish("kolla/base:1", &ImageConfig::default(), vec![], vec![]).unwrap());
        let child = run.get("kolla/base:1").unwrap();
        assert_eq!(child.wait().err().unwrap(), "the build of kolla/base:1 stopped");
    }
}
