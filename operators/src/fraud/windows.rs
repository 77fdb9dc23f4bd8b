//! Sliding-window click counts: click flooding per IP and per user, click
//! velocity per device.
//!
//! A click is flagged when some window `[s, s + window)` that holds it
//! holds more than `threshold` clicks of its key; its verdict's `count` is
//! that largest window count capped at `threshold + 1` ("more than the
//! threshold"). Uncapped, every click added to a flood would change the
//! verdict of every click already flagged in its window: a flood of `N`
//! clicks arriving in order would make `O(N²)` verdict updates downstream
//! (and as many upserts of a fraud-flags topic), where capped it makes `N`.
//! A flood's size is the number of its flagged clicks. Sliding rather than
//! tumbling: a flood is caught whether or not it straddles a minute
//! boundary.
//!
//! State is grouped by `(key, bucket)` with buckets as long as the window.
//! Group `b` holds the clicks of buckets `b` and `b + 1` (each click goes to
//! its own bucket and the one before) and judges the windows that *start*
//! in bucket `b`, which end before bucket `b + 2`. Every window starts in
//! some bucket, so every window is judged once; a click in windows starting
//! in two buckets gets a candidate from both, and the verdicts reduce keeps
//! the larger.

use std::collections::VecDeque;
use std::hash::Hash;

use adflow::event::{Event, EventId, EventKind};
use adflow::pipeline::Time;
use adflow::timestamp::Millis;
use differential_dataflow::collection::VecCollection;
use differential_dataflow::ExchangeData;

use super::{CountRule, Rule, Rules, Verdict};

/// The verdicts of the enabled window-count rules.
pub(super) fn flag<'scope>(rules: &Rules<'_, 'scope>) -> Vec<VecCollection<'scope, Time, Verdict>> {
    let config = rules.config;
    let mut verdicts = Vec::new();
    if config.click_flood_ip.enabled {
        verdicts.push(count_rule(
            rules,
            Rule::ClickFloodIp,
            config.click_flood_ip,
            |click| click.ip,
            |ip| ip.to_string(),
        ));
    }
    if config.click_flood_user.enabled {
        verdicts.push(count_rule(
            rules,
            Rule::ClickFloodUser,
            config.click_flood_user,
            |click| click.user_id,
            |user| format!("user {user:?}"),
        ));
    }
    if config.device_velocity.enabled {
        verdicts.push(count_rule(
            rules,
            Rule::DeviceVelocity,
            config.device_velocity,
            |click| click.device_id,
            |device| format!("device {device:?}"),
        ));
    }
    verdicts
}

/// One window-count rule over the clicks that have a key.
fn count_rule<'scope, K>(
    rules: &Rules<'_, 'scope>,
    rule: Rule,
    settings: CountRule,
    key_of: fn(&Event) -> Option<K>,
    render: fn(&K) -> String,
) -> VecCollection<'scope, Time, Verdict>
where
    K: ExchangeData + Hash,
{
    let window = settings.sliding_window();
    let threshold = settings.threshold;
    let clicks = rules.of_kind(EventKind::Click).flat_map(move |click| {
        let bucket = click.ts.div_euclid(window);
        let seen = (click.ts, click.event_id);
        key_of(&click).into_iter().flat_map(move |key| {
            let earlier = bucket.saturating_sub(1);
            [((key.clone(), bucket), seen), ((key, earlier), seen)]
        })
    });
    // A click's count depends on the clicks within one window either side.
    let span = window.saturating_mul(2);
    rules
        .retire(rule.code(), clicks, span, |(_, (ts, _))| *ts)
        .reduce_named(
            &rules.operator(&format!("{rule} windows")),
            move |(_, bucket), input, output| {
                // Most keys click far less than the threshold: nothing to judge.
                let total: isize = input.iter().map(|(_, diff)| (*diff).max(0)).sum();
                if i64::try_from(total).unwrap_or(i64::MAX) <= threshold {
                    return;
                }
                let clicks: Vec<(Millis, EventId, i64)> = input
                    .iter()
                    .filter(|(_, diff)| *diff > 0)
                    .map(|(&(ts, event_id), diff)| {
                        (ts, event_id, i64::try_from(*diff).unwrap_or(i64::MAX))
                    })
                    .collect();
                let start = bucket.saturating_mul(window);
                let cap = threshold.saturating_add(1);
                for (ts, event_id, count) in flooded(start, window, threshold, &clicks) {
                    output.push(((ts, event_id, count.min(cap)), 1isize));
                }
            },
        )
        .map(move |((key, _bucket), (ts, event_id, count))| Verdict {
            event_id,
            ts,
            kind: EventKind::Click,
            rule,
            key: render(&key),
            count,
            threshold,
        })
}

/// Judges the windows `[s, s + window)` that start at a click time `s` in
/// `[bucket_start, bucket_start + window)`: returns every click inside a
/// window holding more than `threshold` clicks, with the largest such
/// count. `clicks` are sorted by time, with their multiplicities; a window
/// that starts between two clicks holds no more than the one starting at
/// the later click, so click times are the only starts to try.
///
/// ```text
/// bucket b          bucket b+1
/// |---s1---s2-------|----------|      windows start in b, end before b+2
///     [s1 ......... s1+w)
/// ```
pub(super) fn flooded(
    bucket_start: Millis,
    window: Millis,
    threshold: i64,
    clicks: &[(Millis, EventId, i64)],
) -> Vec<(Millis, EventId, i64)> {
    let mut prefix = Vec::with_capacity(clicks.len() + 1);
    let mut total = 0i64;
    prefix.push(total);
    for &(_, _, copies) in clicks {
        total = total.saturating_add(copies);
        prefix.push(total);
    }

    // The windows over the threshold, as `[first, end)` index ranges; both
    // ends grow with the start, which the sliding maximum below relies on.
    let bucket_end = bucket_start.saturating_add(window);
    let mut windows: Vec<(usize, usize, i64)> = Vec::new();
    let mut first = 0;
    let mut end = 0;
    while first < clicks.len() {
        let start = clicks[first].0;
        if start >= bucket_end {
            break;
        }
        let limit = start.saturating_add(window);
        end = end.max(first);
        while end < clicks.len() && clicks[end].0 < limit {
            end += 1;
        }
        let count = prefix[end] - prefix[first];
        if start >= bucket_start && count > threshold {
            windows.push((first, end, count));
        }
        while first < clicks.len() && clicks[first].0 == start {
            first += 1;
        }
    }

    // Each click takes the largest count of the windows holding it: a
    // sliding maximum, since windows enter and leave in index order.
    let mut flagged = Vec::new();
    let mut holding: VecDeque<usize> = VecDeque::new();
    let mut entering = 0;
    for (index, &(ts, event_id, _)) in clicks.iter().enumerate() {
        while entering < windows.len() && windows[entering].0 <= index {
            let count = windows[entering].2;
            while holding.back().is_some_and(|&w| windows[w].2 <= count) {
                holding.pop_back();
            }
            holding.push_back(entering);
            entering += 1;
        }
        while holding.front().is_some_and(|&w| windows[w].1 <= index) {
            holding.pop_front();
        }
        if let Some(&w) = holding.front() {
            flagged.push((ts, event_id, windows[w].2));
        }
    }
    flagged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clicks(times: &[Millis]) -> Vec<(Millis, EventId, i64)> {
        times
            .iter()
            .enumerate()
            .map(|(n, &ts)| (ts, EventId(n as u128), 1))
            .collect()
    }

    #[test]
    fn windows_start_in_the_bucket_and_each_click_takes_its_largest_count() {
        // Bucket [0, 10), window 10, more than 2 clicks.
        let seen = clicks(&[1, 2, 9, 12, 18, 25]);
        // [1, 11) holds 3; [2, 12) holds 2; [9, 19) holds 3 (9, 12, 18).
        let flagged = flooded(0, 10, 2, &seen);
        let counts: Vec<(Millis, i64)> = flagged.iter().map(|(ts, _, c)| (*ts, *c)).collect();
        assert_eq!(counts, vec![(1, 3), (2, 3), (9, 3), (12, 3), (18, 3)]);
        // The same clicks judged from bucket [10, 20): [12, 22) holds 2, [18, 28) holds 2.
        assert!(flooded(10, 10, 2, &seen[3..]).is_empty());
    }

    #[test]
    fn copies_count_and_equal_times_share_a_window() {
        let mut seen = clicks(&[5, 5, 7]);
        seen[2].2 = 3;
        let flagged = flooded(0, 10, 4, &seen);
        assert_eq!(flagged.len(), 3);
        assert!(flagged.iter().all(|(_, _, count)| *count == 5));
        assert!(flooded(0, 10, 5, &seen).is_empty());
    }

    #[test]
    fn a_dense_window_beats_a_sparse_one() {
        // Window 10, more than 3: [0, 10), [1, 11) and [2, 12) hold 4,
        // [9, 19) holds 5 (9 to 13).
        let seen = clicks(&[0, 1, 2, 9, 10, 11, 12, 13]);
        let flagged = flooded(0, 10, 3, &seen);
        let counts: Vec<(Millis, i64)> = flagged.iter().map(|(ts, _, c)| (*ts, *c)).collect();
        assert_eq!(
            counts,
            vec![
                (0, 4),
                (1, 4),
                (2, 4),
                (9, 5),
                (10, 5),
                (11, 5),
                (12, 5),
                (13, 5)
            ]
        );
    }
}
