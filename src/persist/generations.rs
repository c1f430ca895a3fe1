//! Generations: the time-partitioned column families that hold marks on disk.
//!
//! Generation `marks-<start>-<end>` holds marks made in `[start, end)` milliseconds since the
//! Unix epoch (and, after a clock went back, marks made earlier than `start`: writes always go to
//! the newest generation while their time is before its end). Once `end + W <= now` every mark in
//! it is dead, and the whole column family is dropped: expiry costs O(1) per generation.

use crate::window::Window;

/// How many generations a window is split into: disk holds at most this many plus two (the
/// current one and one dead but not yet dropped), so about `1 + 2/8` windows of marks.
pub(crate) const PER_WINDOW: u64 = 8;
const PREFIX: &str = "marks-";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

impl Generation {
    pub(crate) fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            name: format!("{PREFIX}{start}-{end}"),
        }
    }

    /// The generation a column family name denotes; `None` if it is not a generation's name,
    /// `Some(Err)` if it looks like one but does not parse.
    pub(crate) fn parse(name: &str) -> Option<Result<Self, String>> {
        let rest = name.strip_prefix(PREFIX)?;
        let parsed = rest.split_once('-').and_then(|(s, e)| {
            let (start, end) = (s.parse().ok()?, e.parse().ok()?);
            (start < end).then(|| Self::new(start, end))
        });
        Some(
            parsed
                .filter(|g| g.name == name)
                .ok_or_else(|| format!("malformed generation name {name:?}")),
        )
    }

    /// The generation a mark made at `t` opens when `t` is past the newest one's end: aligned to
    /// `span`, never overlapping `newest`.
    pub(crate) fn next(t: u64, span: u64, newest: Option<&Self>) -> Self {
        let aligned = t - t % span;
        let start = newest.map_or(aligned, |n| n.end.max(aligned));
        Self::new(start, aligned + span)
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

    #[test]
    fn names_round_trip_and_strangers_are_told_apart() {
        let g = Generation::new(1_000, 2_000);
        assert_eq!(g.name, "marks-1000-2000");
        assert_eq!(Generation::parse(&g.name), Some(Ok(g)));
        assert_eq!(Generation::parse("default"), None);
        assert!(matches!(Generation::parse("marks-2000-1000"), Some(Err(_))));
        assert!(matches!(Generation::parse("marks-10x-20"), Some(Err(_))));
        assert!(matches!(Generation::parse("marks-010-20"), Some(Err(_))));
    }

    #[test]
    fn new_generations_align_and_never_overlap() {
        assert_eq!(
            Generation::next(2_500, 1_000, None),
            Generation::new(2_000, 3_000)
        );
        let newest = Generation::new(2_000, 3_000);
        assert_eq!(
            Generation::next(3_000, 1_000, Some(&newest)),
            Generation::new(3_000, 4_000)
        );
        assert_eq!(
            Generation::next(9_999, 1_000, Some(&newest)),
            Generation::new(9_000, 10_000)
        );
        // After reopening with a shorter span, the new one starts where the old one ended.
        let wide = Generation::new(0, 3_500);
        assert_eq!(
            Generation::next(3_600, 1_000, Some(&wide)),
            Generation::new(3_500, 4_000)
        );
    }

    #[test]
    fn span_is_whole_slots() {
        assert_eq!(span(Window::new(86_400_000, 128)), 16 * 675_000);
        assert_eq!(span(Window::new(10_000, 3)), 3_333);
        assert_eq!(span(Window::new(1_000, 1)), 1_000);
    }
}
