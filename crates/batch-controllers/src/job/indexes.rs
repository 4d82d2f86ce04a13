//! Completion indexes of Indexed jobs: the `completedIndexes` text of the status (`1,3-5`),
//! kept as a sorted set, and the lowest indexes still to run.

use std::collections::BTreeSet;

/// Parses `1,3-5` into its indexes below `completions`; malformed parts are skipped, as
/// upstream does with what it did not write itself.
pub(super) fn parse(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend((lo.max(0)..=hi.min(completions - 1)).filter(|i| *i >= lo));
        }
    }
    out
}

/// Formats a set as intervals: `0,2-4`.
pub(super) fn format(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The lowest `count` indexes below `completions` that are neither done nor running.
pub(super) fn pending(
    completions: i32,
    done: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    count: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !done.contains(i) && !running.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let set = parse("0,2-4,7", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format(&set), "0,2-4,7");
        assert_eq!(format(&BTreeSet::new()), "");
        // Indexes past completions and junk are dropped.
        assert_eq!(format(&parse("1-12,x,3-a", 5)), "1-4");
    }

    #[test]
    fn lowest_pending_indexes() {
        let done = parse("0,2", 6);
        let running: BTreeSet<i32> = [1].into();
        assert_eq!(pending(6, &done, &running, 2), vec![3, 4]);
        assert_eq!(pending(6, &done, &running, 10), vec![3, 4, 5]);
    }
}
