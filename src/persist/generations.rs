//! Generations: the time-partitioned column families that hold marks on disk.
//!
//! Generation `marks-<start>-<end>` of the store's own ID space (`ns<id>.marks-<start>-<end>` of
//! namespace `<id>`) holds marks made in `[start, end)` milliseconds since the Unix epoch (and,
//! after a clock went back, marks made earlier than `start`: writes always go to the newest
//! generation while their time is before its end). Once `end + W <= now` every mark in it is
//! dead, and the whole column family is dropped: expiry costs O(1) per generation.

use super::filter::{FIRST_SEGMENT, Filter};
use crate::window::Window;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::sync::Arc;

/// How many generations a window is split into: disk holds at most this many plus two (the
/// current one and one dead but not yet dropped), so about `1 + 2/8` windows of marks.
pub(crate) const PER_WINDOW: u64 = 8;
const PREFIX: &str = "marks-";
/// Namespaces' generations are `ns<id>.marks-<start>-<end>`.
const SPACE_PREFIX: &str = "ns";

/// The store's own ID space; namespaces are numbered from 1.
pub(crate) const STORE_SPACE: u32 = 0;

#[derive(Clone, Debug)]
pub(crate) struct Generation {
    /// The ID space it belongs to: [`STORE_SPACE`] or a namespace's number.
    pub space: u32,
    pub start: u64,
    pub end: u64,
    pub name: String,
    /// The filter of its marks, if one holds them all: one made with the generation, or one
    /// saved and loaded at open. Without one, every lookup reads RocksDB.
    pub filter: Option<Arc<Filter>>,
}

impl Generation {
    pub(crate) fn new(space: u32, start: u64, end: u64) -> Self {
        let name = if space == STORE_SPACE {
            format!("{PREFIX}{start}-{end}")
        } else {
            format!("{SPACE_PREFIX}{space}.{PREFIX}{start}-{end}")
        };
        Self {
            space,
            start,
            end,
            name,
            filter: None,
        }
    }

    /// The generation a column family name denotes; `None` if it is not a generation's name,
    /// `Some(Err)` if it looks like one but does not parse.
    pub(crate) fn parse(name: &str) -> Option<Result<Self, String>> {
        let (space, rest) = if let Some(rest) = name.strip_prefix(PREFIX) {
            (Some(STORE_SPACE), rest)
        } else {
            let (space, rest) = name.strip_prefix(SPACE_PREFIX)?.split_once('.')?;
            (space.parse().ok(), rest.strip_prefix(PREFIX)?)
        };
        let parsed = space.zip(rest.split_once('-')).and_then(|(space, (s, e))| {
            let (start, end) = (s.parse().ok()?, e.parse().ok()?);
            (start < end && (space == STORE_SPACE) == name.starts_with(PREFIX))
                .then(|| Self::new(space, start, end))
        });
        Some(
            parsed
                .filter(|g| g.name == name)
                .ok_or_else(|| format!("malformed generation name {name:?}")),
        )
    }

    /// The generation a mark made at `t` opens when `t` is past the newest one's end: aligned to
    /// `span`, never overlapping `newest`, with an empty filter sized for a quarter more marks
    /// than `newest` received.
    pub(crate) fn next(space: u32, t: u64, span: u64, newest: Option<&Self>) -> Self {
        let aligned = t - t % span;
        let start = newest.map_or(aligned, |n| n.end.max(aligned));
        // A quarter more than the last one received: about as many again fit in one segment.
        let expected = newest
            .and_then(|n| n.filter.as_ref())
            .map_or(FIRST_SEGMENT, |f| (f.marks() / 4 * 5).max(FIRST_SEGMENT));
        Self {
            filter: Some(Arc::new(Filter::new(expected))),
            ..Self::new(space, start, aligned + span)
        }
    }
}

/// The generations of one ID space (the store's own, or a namespace's), oldest first, and the
/// window that judges their marks.
#[derive(Debug)]
pub(crate) struct Generations {
    pub space: u32,
    pub window: Window,
    pub span: u64,
    list: RwLock<List>,
}

#[derive(Debug, Default)]
pub(crate) struct List {
    pub live: Vec<Generation>,
    /// Set when the space's namespace is dropped: nothing is written to it after.
    pub dropped: bool,
}

impl Generations {
    /// The generations `found` of `space` (in any order), judged by `window`.
    pub(crate) fn new(space: u32, window: Window, mut found: Vec<Generation>) -> Self {
        debug_assert!(found.iter().all(|g| g.space == space));
        found.sort_by_key(|g| g.start);
        Self {
            space,
            window,
            span: span(window),
            list: RwLock::new(List {
                live: found,
                dropped: false,
            }),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, List> {
        self.list.read()
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, List> {
        self.list.write()
    }

    /// How many generations are on disk.
    pub(crate) fn count(&self) -> usize {
        self.read().live.len()
    }

    /// The memory held by the generations' filters.
    pub(crate) fn filter_bytes(&self) -> u64 {
        let list = self.read();
        let filters = list.live.iter().filter_map(|g| g.filter.as_ref());
        filters.map(|f| f.bytes()).sum()
    }

    /// The end of the newest generation: every mark made at or after it is yet to be written.
    pub(crate) fn complete_from(&self) -> u64 {
        self.read().live.iter().map(|g| g.end).max().unwrap_or(0)
    }
}

/// The time a generation spans: a whole number of slots, about `W / PER_WINDOW`.
pub(crate) fn span(window: Window) -> u64 {
    let slots = window.window_ms / window.slot_ms;
    slots.div_ceil(PER_WINDOW) * window.slot_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Fingerprint;

    #[test]
    fn names_round_trip_and_strangers_are_told_apart() {
        let parsed = |name: &str| Generation::parse(name).map(|g| g.map(|g| g.name));
        let g = Generation::new(STORE_SPACE, 1_000, 2_000);
        assert_eq!(g.name, "marks-1000-2000");
        assert_eq!(parsed(&g.name), Some(Ok(g.name)));
        let g = Generation::new(7, 1_000, 2_000);
        assert_eq!(g.name, "ns7.marks-1000-2000");
        assert_eq!(parsed(&g.name), Some(Ok(g.name)));
        assert!(Generation::parse("default").is_none());
        assert!(Generation::parse("table.nsx").is_none());
        assert!(matches!(Generation::parse("marks-2000-1000"), Some(Err(_))));
        assert!(matches!(Generation::parse("marks-10x-20"), Some(Err(_))));
        assert!(matches!(Generation::parse("marks-010-20"), Some(Err(_))));
        for bad in [
            "ns0.marks-1-2",
            "ns07.marks-1-2",
            "nsx.marks-1-2",
            "ns7.marks-2-1",
        ] {
            assert!(matches!(Generation::parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn new_generations_align_and_never_overlap() {
        let g = |start, end| Generation::new(3, start, end).name;
        let next = |t, newest: Option<&Generation>| Generation::next(3, t, 1_000, newest).name;
        assert_eq!(next(2_500, None), g(2_000, 3_000));
        let newest = Generation::new(3, 2_000, 3_000);
        assert_eq!(next(3_000, Some(&newest)), g(3_000, 4_000));
        assert_eq!(next(9_999, Some(&newest)), g(9_000, 10_000));
        // After reopening with a shorter span, the new one starts where the old one ended.
        let wide = Generation::new(3, 0, 3_500);
        assert_eq!(next(3_600, Some(&wide)), g(3_500, 4_000));
    }

    #[test]
    fn a_new_generation_has_a_filter_sized_for_what_the_newest_received() {
        let first = Generation::next(3, 2_500, 1_000, None);
        let filter = first.filter.as_ref().unwrap();
        assert_eq!(filter.marks(), 0);
        let marks = 200_000u64;
        filter.insert((0..marks).map(|i| Fingerprint::of(1, &i.to_be_bytes(), None).unwrap()));
        let next = Generation::next(3, 3_000, 1_000, Some(&first));
        let bytes = next.filter.unwrap().bytes();
        assert!(bytes >= marks * 5 / 4 * 12 / 8, "{bytes} bytes");
        assert!(
            Generation::new(3, 0, 1_000).filter.is_none(),
            "found at open: none yet"
        );
    }

    #[test]
    fn span_is_whole_slots() {
        assert_eq!(span(Window::new(86_400_000, 128)), 16 * 675_000);
        assert_eq!(span(Window::new(10_000, 3)), 3_333);
        assert_eq!(span(Window::new(1_000, 1)), 1_000);
    }
}
