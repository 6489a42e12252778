//! One client's transcript: the `seq`s it has shown, in order, and those it
//! got twice, early or never.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::stats::{Merge, merge_fields};

/// What one client received, accounted as a chat client shows it.
///
/// The client keeps a position: the last `seq` it has shown, in order. A
/// frame one past the position is shown; a frame further ahead waits until
/// the ones before it arrive. After each (re)subscription the client asks
/// `catch_up` for everything after its position. Live frames arrive
/// meanwhile, so a `seq` may come twice in one subscription, once replayed
/// and once live: that second copy is *overlap*, skipped by `seq`. Any other
/// repeat is a *duplicate*.
#[derive(Debug)]
pub(super) struct Transcript {
    position: u64,
    /// Frames received ahead of a missing `seq`, waiting for it.
    early: BTreeSet<u64>,
    sub: Subscription,
    tally: TranscriptTally,
}

/// The current subscription's catch-up.
#[derive(Debug)]
struct Subscription {
    /// The position when it began: what `catch_up` was first asked after.
    after: u64,
    /// `catch_up` asked and its final `caught_up` (`more: false`) not read yet.
    catching_up: bool,
    /// The final `caught_up`'s `last_seq`: nothing above it is replayed.
    replayed_to: u64,
    /// Copies received of `seq` `after + 1 + i`, for the `seq`s a replay may
    /// have covered (everything during the catch-up, then up to `replayed_to`).
    copies: Vec<u8>,
}

impl Subscription {
    fn settled(position: u64) -> Self {
        Self {
            after: position,
            catching_up: false,
            replayed_to: position,
            copies: Vec::new(),
        }
    }

    /// Counts one receipt of `seq`; its copies so far, if a replay may cover it.
    fn count(&mut self, seq: u64) -> Option<u8> {
        if seq <= self.after || (!self.catching_up && seq > self.replayed_to) {
            return None;
        }
        let i = (seq - self.after - 1) as usize;
        if self.copies.len() <= i {
            self.copies.resize(i + 1, 0);
        }
        self.copies[i] = self.copies[i].saturating_add(1);
        Some(self.copies[i])
    }
}

/// How one client's (or all clients') receipts went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TranscriptTally {
    /// Messages shown, each `seq` once and in order.
    pub shown: u64,
    /// Second copies of a `seq` in one subscription, replayed and live.
    pub overlap: u64,
    /// Any other repeat.
    pub duplicates: u64,
    /// Live frames that came ahead of a missing `seq` while no catch-up was
    /// pending: a gap in the live stream (filled later only by a catch-up).
    pub out_of_order: u64,
    /// `seq`s up to the last stored that never arrived.
    pub missing: u64,
    /// Clients that ended with something missing.
    pub incomplete_clients: u64,
}

/// Another client's (or process's) tally.
impl Merge for TranscriptTally {
    fn merge(&mut self, other: &TranscriptTally) {
        merge_fields!(self, other; shown, overlap, duplicates, out_of_order, missing, incomplete_clients);
    }
}

impl Transcript {
    /// A client subscribed when the room's last `seq` was `position`.
    pub(super) fn new(position: u64) -> Self {
        Self {
            position,
            early: BTreeSet::new(),
            sub: Subscription::settled(position),
            tally: TranscriptTally::default(),
        }
    }

    /// The last `seq` shown.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    /// Whether a catch-up is under way.
    pub(super) fn catching_up(&self) -> bool {
        self.sub.catching_up
    }

    /// A new subscription is confirmed; returns the `after` to ask `catch_up`
    /// for. Frames held early are dropped: the catch-up sends them again.
    pub(super) fn resubscribed(&mut self) -> u64 {
        self.early.clear();
        self.sub = Subscription {
            catching_up: true,
            ..Subscription::settled(self.position)
        };
        self.position
    }

    /// A message frame of room `seq` arrived.
    pub(super) fn receive(&mut self, seq: u64) {
        let copies = self.sub.count(seq);
        if seq <= self.position || self.early.contains(&seq) {
            match copies {
                Some(2) => self.tally.overlap += 1,
                _ => self.tally.duplicates += 1,
            }
            return;
        }
        if seq == self.position + 1 {
            self.position = seq;
            self.tally.shown += 1;
            while self.early.remove(&(self.position + 1)) {
                self.position += 1;
                self.tally.shown += 1;
            }
        } else {
            if !self.sub.catching_up {
                self.tally.out_of_order += 1;
            }
            self.early.insert(seq);
        }
    }

    /// `{"type":"caught_up","last_seq":…,"more":…}` arrived; returns the
    /// `after` to ask again with while `more`.
    pub(super) fn caught_up(&mut self, last_seq: u64, more: bool) -> Option<u64> {
        if more {
            return Some(last_seq);
        }
        let sub = &mut self.sub;
        sub.catching_up = false;
        sub.replayed_to = last_seq.max(sub.after);
        // Two copies above what the replay covered were both live: a
        // duplicate, though it looked like overlap when it came.
        let covered = (sub.replayed_to - sub.after) as usize;
        for &copies in sub.copies.iter().skip(covered) {
            if copies >= 2 {
                self.tally.overlap -= 1;
                self.tally.duplicates += 1;
            }
        }
        sub.copies.truncate(covered);
        None
    }

    /// The tally once the room's last `seq` is `last`.
    pub(super) fn finish(mut self, last: u64) -> TranscriptTally {
        let waiting = if last > self.position {
            self.early.range(self.position + 1..=last).count() as u64
        } else {
            0
        };
        self.tally.missing = last.saturating_sub(self.position) - waiting;
        self.tally.incomplete_clients = u64::from(self.tally.missing > 0);
        self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_never_leaves_shows_every_message_once() {
        let mut t = Transcript::new(10);
        for seq in 11..=20 {
            t.receive(seq);
        }
        let tally = t.finish(20);
        assert_eq!(tally.shown, 10);
        assert_eq!((tally.missing, tally.duplicates, tally.overlap), (0, 0, 0));
    }

    #[test]
    fn a_catch_up_fills_the_gap_and_its_overlap_with_live_frames_is_skipped() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(2);
        // Away for 3..=7; live frames 5 and 6 arrive before the replay.
        assert_eq!(t.resubscribed(), 2);
        t.receive(5);
        t.receive(6);
        assert_eq!(t.position(), 2, "5 and 6 wait for 3 and 4");
        for seq in 3..=7 {
            t.receive(seq);
        }
        assert_eq!(t.caught_up(7, false), None);
        // The live copy of 7, broadcast after the replay read it; then 8.
        t.receive(7);
        t.receive(8);
        // A third copy of 6 is one too many.
        t.receive(6);
        let tally = t.finish(8);
        assert_eq!(tally.shown, 8);
        assert_eq!(
            tally.overlap, 3,
            "5 and 6 came live then replayed, 7 the other way"
        );
        assert_eq!(tally.duplicates, 1);
        assert_eq!((tally.missing, tally.out_of_order), (0, 0));
    }

    #[test]
    fn repeats_outside_a_catch_up_are_duplicates() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(1);
        t.resubscribed();
        t.receive(1); // older than the subscription: a replay never sends it
        assert_eq!(t.caught_up(1, false), None);
        t.receive(2);
        t.receive(2); // above the replay: both copies are live
        let tally = t.finish(2);
        assert_eq!((tally.duplicates, tally.overlap), (3, 0));
    }

    #[test]
    fn two_live_copies_during_a_catch_up_are_duplicates_once_its_end_is_known() {
        let mut t = Transcript::new(4);
        t.resubscribed();
        t.receive(6);
        t.receive(6);
        t.receive(5);
        assert_eq!(t.caught_up(5, false), None, "the replay only had 5");
        let tally = t.finish(6);
        assert_eq!((tally.duplicates, tally.overlap, tally.shown), (1, 0, 2));
    }

    #[test]
    fn a_paged_catch_up_asks_again_from_where_the_answer_ended() {
        let mut t = Transcript::new(0);
        assert_eq!(t.resubscribed(), 0);
        for seq in 1..=3 {
            t.receive(seq);
        }
        assert_eq!(t.caught_up(3, true), Some(3));
        assert!(t.catching_up());
        t.receive(4);
        assert_eq!(t.caught_up(4, false), None);
        assert!(!t.catching_up());
        assert_eq!(t.finish(4).shown, 4);
    }

    #[test]
    fn what_never_arrives_is_missing_and_a_live_gap_is_out_of_order() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(3); // 2 skipped by the live stream
        t.receive(5);
        let tally = t.finish(6);
        assert_eq!(tally.shown, 1);
        assert_eq!(tally.out_of_order, 2);
        assert_eq!(tally.missing, 3, "2, 4 and 6 never came");
        assert_eq!(tally.incomplete_clients, 1);
    }
}
