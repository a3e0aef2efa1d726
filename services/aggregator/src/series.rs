//! The series table: every (app, route, provider, model) with windows held, and those windows.
//!
//! Each event touches one series and up to `1 + size / hop` of its windows, so the windows live
//! inside their series (a small ordered map) and the series is found with a single hash of its
//! key. Series ids are slab indices: internal only, never part of an output, so they need not
//! survive a restore.

use std::collections::{BTreeMap, HashMap};

use crate::window::{SeriesKey, WindowBounds, WindowMetrics};

/// Index of a series in the table.
pub(crate) type SeriesId = usize;

/// A window held in the state.
#[derive(Debug)]
pub(crate) struct WindowState {
    /// Window id, shared by all its revisions.
    pub(crate) id: String,
    pub(crate) bounds: WindowBounds,
    pub(crate) metrics: WindowMetrics,
    /// Last emitted revision; `None` while the window is open.
    pub(crate) revision: Option<i32>,
}

/// Where a window sits within its series: (is hopping, start).
pub(crate) type WindowPos = (bool, i64);

/// One series and its windows.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) key: SeriesKey,
    pub(crate) id_prefix: String,
    pub(crate) partition_key: String,
    /// The input partition its calls arrive on (its key, app/route, decides it): what its
    /// windows are checkpointed with. -1 until the first call.
    pub(crate) input_partition: i32,
    lookup_key: Vec<u8>,
    pub(crate) windows: BTreeMap<WindowPos, WindowState>,
}

/// Slab of series plus a hash index from their key.
#[derive(Debug, Default)]
pub(crate) struct SeriesTable {
    slots: Vec<Option<Series>>,
    free: Vec<SeriesId>,
    index: HashMap<Vec<u8>, SeriesId>,
    scratch: Vec<u8>,
}

impl SeriesTable {
    /// Id of the series with these key fields (app, route, provider, model), added if new.
    pub(crate) fn intern(&mut self, fields: [&str; 4]) -> SeriesId {
        write_lookup_key(&mut self.scratch, fields);
        if let Some(&id) = self.index.get(self.scratch.as_slice()) {
            return id;
        }
        let [app, route, provider, model] = fields;
        let key = SeriesKey {
            app: app.to_string(),
            route: route.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
        };
        let series = Series {
            id_prefix: key.id_prefix(),
            partition_key: key.partition_key(),
            input_partition: -1,
            key,
            lookup_key: self.scratch.clone(),
            windows: BTreeMap::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(series);
                id
            }
            None => {
                self.slots.push(Some(series));
                self.slots.len() - 1
            }
        };
        self.index.insert(self.scratch.clone(), id);
        id
    }

    #[cfg(test)]
    pub(crate) fn get(&self, id: SeriesId) -> Option<&Series> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, id: SeriesId) -> Option<&mut Series> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    /// Removes a window; forgets the series once it holds none, so keys that stop sending do
    /// not grow the state forever.
    pub(crate) fn remove_window(&mut self, id: SeriesId, pos: WindowPos) {
        let Some(series) = self.get_mut(id) else {
            return;
        };
        series.windows.remove(&pos);
        if series.windows.is_empty() {
            if let Some(series) = self.slots.get_mut(id).and_then(Option::take) {
                self.index.remove(&series.lookup_key);
                self.free.push(id);
            }
        }
    }

    /// Every series with windows, in slab order (callers sort what they output).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Series> {
        self.slots.iter().flatten()
    }
}

/// An unambiguous key: each field's length (8 bytes, little endian) then its bytes, so that
/// `a/b` + `c` and `a` + `b/c` differ. Reuses `buf`, so lookups do not allocate.
fn write_lookup_key(buf: &mut Vec<u8>, fields: [&str; 4]) {
    buf.clear();
    for field in fields {
        buf.extend_from_slice(&(field.len() as u64).to_le_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_slashes_do_not_collide_and_ids_are_reused() {
        let mut t = SeriesTable::default();
        let a = t.intern(["a/b", "c", "p", "m"]);
        let b = t.intern(["a", "b/c", "p", "m"]);
        assert_ne!(a, b);
        assert_eq!(t.intern(["a/b", "c", "p", "m"]), a);
        // A series without windows is forgotten; its slot is reused.
        t.remove_window(a, (false, 0));
        assert!(t.get(a).is_none());
        let c = t.intern(["x", "y", "p", "m"]);
        assert_eq!(c, a);
        assert_eq!(t.get(c).map(|s| s.key.app.as_str()), Some("x"));
        assert_eq!(t.iter().count(), 2);
    }
}
