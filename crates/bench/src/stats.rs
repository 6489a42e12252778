//! Counting and timing: a mergeable latency histogram with percentiles,
//! the per-subscriber receipt accounting that tells lost from duplicated,
//! and [`Merge`], how every share of an outcome adds up with the others.

use serde::{Deserialize, Serialize};

/// A share of an outcome (one process's, one task's, one client's) that
/// adds up with the others'.
pub trait Merge: Default {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &Self);
}

/// Counts add.
impl Merge for u64 {
    fn merge(&mut self, other: &Self) {
        *self += other;
    }
}

/// A first-seen value (an error, a reason, the one publisher's account):
/// the first share that has one sets it.
impl<T: Clone> Merge for Option<T> {
    fn merge(&mut self, other: &Self) {
        if self.is_none() {
            self.clone_from(other);
        }
    }
}

/// Merges the named fields of `other` into those of `me`, each by its own
/// [`Merge`]: a struct's field-by-field merge, written as its list of fields.
macro_rules! merge_fields {
    ($me:expr, $other:expr; $($field:ident),+ $(,)?) => {
        $($crate::stats::Merge::merge(&mut $me.$field, &$other.$field);)+
    };
}
pub(crate) use merge_fields;

/// Moves `mine` to `theirs` when that is earlier; 0 is "not yet" for both.
pub fn earliest(mine: &mut u64, theirs: u64) {
    if theirs > 0 && (*mine == 0 || theirs < *mine) {
        *mine = theirs;
    }
}

/// Values below this are kept exactly; above it, in buckets 1/64 of an octave wide.
const EXACT: u64 = 128;
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of microseconds: exact below 128 µs, then within
/// 1.6 %. Small (a few KiB), so workers send theirs to the parent to merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    #[serde(with = "sparse")]
    buckets: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS; // ≥ 1: value >> shift lies in [64, 128)
    let top = value >> shift;
    (EXACT + (u64::from(shift) - 1) * SUB + (top - SUB)) as usize
}

/// The middle of bucket `index`: what a percentile falling in it reports.
fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let shift = (index - EXACT) / SUB + 1;
    let top = (index - EXACT) % SUB + SUB;
    let low = top << shift;
    low + ((1u64 << shift) - 1) / 2
}

impl Histogram {
    /// Records one value in microseconds.
    pub fn record(&mut self, micros: u64) {
        let i = index(micros);
        if i >= self.buckets.len() {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += 1;
        self.sum += u128::from(micros);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest value, exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest value, exact.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Mean, exact.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The nearest-rank percentile `p` (0–100): the smallest value with at
    /// least p % of values at or below it; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_value(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

impl Merge for Histogram {
    /// Adds every value of `other`.
    fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if other.buckets.len() > self.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// Stores buckets as `[[index, count], …]` for the non-empty ones only.
mod sparse {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(buckets: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, u64)> = buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i, *n))
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let pairs = Vec::<(usize, u64)>::deserialize(d)?;
        let len = pairs.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        let mut buckets = vec![0; len];
        for (i, n) in pairs {
            buckets[i] += n;
        }
        Ok(buckets)
    }
}

/// What one receipt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// The first copy of a message this subscriber should get.
    Fresh,
    /// A message it already had.
    Duplicate,
    /// A sequence number that was never sent.
    Stray,
}

/// One subscriber's view of a run of `expected` messages numbered 0..expected.
#[derive(Debug, Clone)]
pub struct Receipts {
    seen: Vec<u64>,
    expected: u64,
    tally: Tally,
}

impl Receipts {
    /// Nothing received yet out of `expected`.
    pub fn new(expected: u64) -> Self {
        Self {
            seen: vec![0; expected.div_ceil(64) as usize],
            expected,
            tally: Tally {
                subscribers: 1,
                expected,
                ..Tally::default()
            },
        }
    }

    /// Accounts for a receipt of message `seq`.
    pub fn record(&mut self, seq: u64) -> Receipt {
        if seq >= self.expected {
            self.tally.stray += 1;
            return Receipt::Stray;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.tally.duplicates += 1;
            Receipt::Duplicate
        } else {
            self.seen[word] |= bit;
            self.tally.unique += 1;
            Receipt::Fresh
        }
    }

    /// Whether every message has arrived.
    pub fn complete(&self) -> bool {
        self.tally.unique == self.expected
    }

    /// The totals so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }
}

/// Receipt totals over one or more subscribers; adds up across workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Subscribers counted.
    pub subscribers: u64,
    /// Messages each subscriber should have got.
    pub expected: u64,
    /// First copies received, over all subscribers.
    pub unique: u64,
    /// Extra copies of messages already received.
    pub duplicates: u64,
    /// Receipts of sequence numbers that were never sent.
    pub stray: u64,
}

/// Another subscriber's (or worker's) totals.
impl Merge for Tally {
    fn merge(&mut self, other: &Tally) {
        merge_fields!(self, other; subscribers, unique, duplicates, stray);
        self.expected = self.expected.max(other.expected);
    }
}

impl Tally {
    /// Deliveries that never came: every subscriber should have `sent` messages.
    pub fn lost(&self, sent: u64) -> u64 {
        (self.subscribers * sent).saturating_sub(self.unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_exact_values_follow_nearest_rank() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(95.0), 95);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(99.9), 100);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!((h.min(), h.max(), h.count()), (1, 100, 100));
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution_find_the_tail() {
        let mut h = Histogram::default();
        for _ in 0..990 {
            h.record(10);
        }
        for _ in 0..10 {
            h.record(5_000);
        }
        assert_eq!(h.percentile(50.0), 10);
        assert_eq!(h.percentile(99.0), 10, "990 of 1000 values are 10");
        let p999 = h.percentile(99.9);
        assert!(
            p999.abs_diff(5_000) <= 5_000 / 64,
            "p99.9 {p999} is 5000 within 1/64"
        );
        assert_eq!(h.max(), 5_000);
    }

    #[test]
    fn large_values_land_within_one_sixty_fourth() {
        for v in [128, 129, 1_000, 12_345, 999_999, 60_000_000, 1 << 40] {
            let mut h = Histogram::default();
            h.record(v);
            h.record(v + 1); // two values, so the clamp to min/max does not hide the bucket
            let got = h.percentile(50.0);
            assert!(
                got.abs_diff(v) as f64 <= v as f64 / 64.0 + 1.0,
                "{v} reported as {got}"
            );
        }
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let i = index(v);
            assert!(i == last || i == last + 1, "index jumps at {v}");
            assert!(bucket_value(i).abs_diff(v) as f64 <= v as f64 / 64.0 + 1.0);
            last = i;
        }
    }

    #[test]
    fn merged_histograms_equal_one_fed_everything() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..5_000u64 {
            let v = v * 37 % 20_011;
            if v % 2 == 0 { &mut a } else { &mut b }.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let json = serde_json::to_string(&a).unwrap();
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
        assert_eq!(back.percentile(99.0), all.percentile(99.0));
    }

    #[test]
    fn an_empty_histogram_reports_zero() {
        let h = Histogram::default();
        assert_eq!((h.percentile(99.0), h.max(), h.count()), (0, 0, 0));
        let mut m = Histogram::default();
        m.merge(&h);
        m.record(7);
        assert_eq!((m.min(), m.max()), (7, 7));
    }

    #[test]
    fn receipts_count_gaps_as_lost_and_repeats_as_duplicated() {
        let mut r = Receipts::new(10);
        let fed = [0, 1, 1, 3, 4, 4, 4, 9, 12];
        let kinds: Vec<Receipt> = fed.iter().map(|&s| r.record(s)).collect();
        use Receipt::*;
        assert_eq!(
            kinds,
            [
                Fresh, Fresh, Duplicate, Fresh, Fresh, Duplicate, Duplicate, Fresh, Stray
            ]
        );
        let t = r.tally();
        assert_eq!((t.unique, t.duplicates, t.stray), (5, 3, 1));
        assert_eq!(t.lost(10), 5, "2, 5, 6, 7 and 8 never came");
        assert!(!r.complete());
    }

    #[test]
    fn a_complete_run_has_nothing_lost() {
        let mut r = Receipts::new(130); // spans three words of the bitset
        for seq in (0..130).rev() {
            assert_eq!(r.record(seq), Receipt::Fresh);
        }
        assert!(r.complete());
        assert_eq!(r.tally().lost(130), 0);
        assert_eq!(r.record(129), Receipt::Duplicate);
    }

    #[test]
    fn tallies_add_up_across_subscribers() {
        let mut a = Receipts::new(4);
        let mut b = Receipts::new(4);
        for s in [0, 1, 2, 3] {
            a.record(s);
        }
        for s in [0, 0, 2] {
            b.record(s);
        }
        let mut total = Tally::default();
        total.merge(&a.tally());
        total.merge(&b.tally());
        assert_eq!(total.subscribers, 2);
        assert_eq!(total.unique, 6);
        assert_eq!(total.duplicates, 1);
        assert_eq!(total.lost(4), 2, "b missed 1 and 3");
    }

    #[test]
    fn merged_fields_sum_counts_and_keep_the_first_error() {
        #[derive(Default)]
        struct Share {
            sent: u64,
            first_error: Option<String>,
        }
        let shares = [
            (3, None),
            (4, Some("refused".to_owned())),
            (5, Some("reset".to_owned())),
        ];
        let mut total = Share::default();
        for (sent, first_error) in shares {
            let share = Share { sent, first_error };
            merge_fields!(total, share; sent, first_error);
        }
        assert_eq!(total.sent, 12);
        assert_eq!(total.first_error.as_deref(), Some("refused"));
        let mut first = 0;
        for t in [0, 9, 0, 7, 8] {
            earliest(&mut first, t);
        }
        assert_eq!(first, 7, "0 is not yet, never the earliest");
    }
}
