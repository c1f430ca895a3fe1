//! Time arithmetic of the retention window, in milliseconds since the Unix epoch.
//!
//! A mark made at `t0` is *live* at `now` while `now - t0 <= window` (in whole milliseconds).
//! With millisecond readings this keeps the contract for real times: `t - t0 < W` is always a
//! duplicate, `t - t0 >= W + S` always new. Both tiers use [`Window::is_live`], so they agree.

/// Window length and slot length of an open store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// The retention window `W`.
    pub window_ms: u64,
    /// The slot length `S = W / slots`: the granularity at which memory is reclaimed.
    pub slot_ms: u64,
}

impl Window {
    pub(crate) fn new(window_ms: u64, slots: u32) -> Self {
        debug_assert!(window_ms >= u64::from(slots) && slots > 0);
        Self {
            window_ms,
            slot_ms: window_ms / u64::from(slots),
        }
    }

    /// Whether a mark made at `first_seen` still counts as a duplicate at `now`.
    ///
    /// A `first_seen` after `now` (a clock that went back) is live.
    pub(crate) fn is_live(self, first_seen: u64, now: u64) -> bool {
        now.saturating_sub(first_seen) <= self.window_ms
    }

    /// The earliest mark time still live at `now`.
    pub(crate) fn oldest_live(self, now: u64) -> u64 {
        now.saturating_sub(self.window_ms)
    }

    /// The slot that holds time `t`.
    pub(crate) fn slot(self, t: u64) -> u64 {
        t / self.slot_ms
    }

    /// Whether every mark made in slot `slot` is dead at `now`.
    pub(crate) fn slot_expired(self, slot: u64, now: u64) -> bool {
        // The slot's last millisecond is (slot + 1) * S - 1, dead once now - it > W.
        (slot + 1)
            .saturating_mul(self.slot_ms)
            .saturating_add(self.window_ms)
            <= now
    }

    /// Whether every mark made before `end` (exclusive) is dead at `now`.
    pub(crate) fn range_expired(self, end: u64, now: u64) -> bool {
        end.saturating_add(self.window_ms) <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_matches_the_contract() {
        let w = Window::new(60_000, 60);
        assert!(w.is_live(1_000, 1_000 + 59_999));
        assert!(w.is_live(1_000, 1_000 + 60_000));
        assert!(!w.is_live(1_000, 1_000 + 60_001));
        assert!(w.is_live(5_000, 1_000), "a mark from the future is live");
    }

    #[test]
    fn a_slot_expires_only_when_all_its_marks_are_dead() {
        let w = Window::new(60_000, 60);
        // Slot 3 holds 3_000..=3_999; its last mark dies at 3_999 + 60_001.
        assert_eq!(w.slot(3_999), 3);
        assert!(!w.slot_expired(3, 3_999 + 60_000));
        assert!(w.is_live(3_999, 3_999 + 60_000));
        assert!(w.slot_expired(3, 3_999 + 60_001));
        assert!(!w.is_live(3_999, 3_999 + 60_001));
    }
}
