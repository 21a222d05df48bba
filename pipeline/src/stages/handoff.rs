//! What a stage hands to the next one in memory, within one build.
//!
//! Each stage reads its inputs from the store, and must: a stage reruns
//! alone when only it is stale. But when consecutive stages run in the
//! same build, the later one would decode again what the earlier one had
//! in hand (the vocab stage reading and hashing every token of the
//! `tokens` table that the tokenize stage has just written). A stage may
//! therefore offer, next to an object it published, the decoded form of
//! it; a later stage takes it instead of reading the object. The offer is
//! keyed by the object's id, so a stage takes only what stands for the
//! exact bytes it would read, and whatever it computes from it is what it
//! computes from the object (`tests/incremental.rs` compares each stage
//! rerun alone, reading the store, with the same stage fed by its
//! predecessor).
//!
//! An offer lives until the end of the next stage, taken or not (the
//! driver calls [`Handoff::end_stage`]): a decoded input that nobody
//! takes (the next stage was fresh) does not stay in memory through the
//! rest of the build. A value that several later stages read, small
//! beside the build's memory (the documents' names, splits and labels,
//! which the graph and splits stages read), can instead be shared for
//! the rest of the build ([`Handoff::share`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use textgcn_artifacts::ObjectId;

/// The offers of one build. See the module docs.
#[derive(Default)]
pub struct Handoff {
    offers: Mutex<Offers>,
}

#[derive(Default)]
struct Offers {
    /// The offers of the stage running now.
    current: HashMap<(ObjectId, std::any::TypeId), Box<dyn Any + Send>>,
    /// The offers of the stage before it.
    previous: HashMap<(ObjectId, std::any::TypeId), Box<dyn Any + Send>>,
    /// What is shared with every later stage of the build.
    shared: HashMap<(ObjectId, std::any::TypeId), Arc<dyn Any + Send + Sync>>,
}

impl Handoff {
    /// Offers `value` as the decoded form of object `id`, to the next stage.
    pub fn offer<T: Any + Send>(&self, id: &ObjectId, value: T) {
        self.offers.lock().expect("not poisoned").current.insert((id.clone(), std::any::TypeId::of::<T>()), Box::new(value));
    }

    /// Takes the decoded form of `id` that the previous stage offered as a
    /// `T`, if it did.
    pub fn take<T: Any + Send>(&self, id: &ObjectId) -> Option<T> {
        let key = (id.clone(), std::any::TypeId::of::<T>());
        let found = self.offers.lock().expect("not poisoned").previous.remove(&key)?;
        Some(*found.downcast::<T>().expect("keyed by its type"))
    }

    /// Shares `value` as the decoded form of object `id` with every later
    /// stage of this build (it stays in memory until the build ends: for
    /// small values only).
    pub fn share<T: Any + Send + Sync>(&self, id: &ObjectId, value: T) {
        self.offers.lock().expect("not poisoned").shared.insert((id.clone(), std::any::TypeId::of::<T>()), Arc::new(value));
    }

    /// The decoded form of `id` that an earlier stage of this build shared
    /// as a `T`, if one did.
    pub fn shared<T: Any + Send + Sync>(&self, id: &ObjectId) -> Option<Arc<T>> {
        let found = self.offers.lock().expect("not poisoned").shared.get(&(id.clone(), std::any::TypeId::of::<T>()))?.clone();
        Some(found.downcast::<T>().expect("keyed by its type"))
    }

    /// Ends a stage: what the stage before it offered goes, what it
    /// offered is for the next one.
    pub fn end_stage(&self) {
        let mut o = self.offers.lock().expect("not poisoned");
        o.previous = std::mem::take(&mut o.current);
    }

    /// Whether anything is on offer (for tests).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        let o = self.offers.lock().expect("not poisoned");
        o.current.is_empty() && o.previous.is_empty() && o.shared.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> ObjectId {
        ObjectId::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn an_offer_is_for_the_next_stage_only_and_by_type() {
        let h = Handoff::default();
        h.offer(&id('a'), vec![1u32, 2]);
        h.offer(&id('b'), String::from("x"));
        // Another type or another id is not the offer.
        assert_eq!(h.take::<Vec<u64>>(&id('a')), None);
        assert_eq!(h.take::<Vec<u32>>(&id('c')), None);
        h.end_stage();
        assert_eq!(h.take::<Vec<u32>>(&id('a')), Some(vec![1, 2]));
        assert_eq!(h.take::<Vec<u32>>(&id('a')), None, "taken once");
        // Not taken by the next stage: gone after it.
        h.end_stage();
        assert_eq!(h.take::<String>(&id('b')), None);
        assert!(h.is_empty());
    }

    #[test]
    fn a_shared_value_is_for_every_later_stage_and_by_type() {
        let h = Handoff::default();
        h.share(&id('a'), vec![1u32, 2]);
        assert_eq!(h.shared::<Vec<u64>>(&id('a')), None);
        assert_eq!(h.shared::<Vec<u32>>(&id('b')), None);
        assert_eq!(h.take::<Vec<u32>>(&id('a')), None, "not an offer to the next stage");
        for _ in 0..3 {
            assert_eq!(h.shared::<Vec<u32>>(&id('a')).as_deref(), Some(&vec![1, 2]));
            h.end_stage();
        }
        assert!(!h.is_empty());
    }
}
