//! Sliding-window click counts: click flooding per IP and per user, click
//! velocity per device.
//!
//! A click is flagged when some window `[s, s + window)` that holds it
//! holds more than `threshold` clicks of its key; its verdict's `count` is
//! `threshold + 1` ("more than the threshold"), not the window's size.
//! Were it the size, every click added to a flood would change the verdict
//! of every click already flagged in its window: a flood of `N` clicks
//! arriving in order would make `O(N²)` verdict updates downstream (and as
//! many upserts of a fraud-flags topic), where this way it makes `N`.
//! A flood's size is the number of its flagged clicks. Sliding rather than
//! tumbling: a flood is caught whether or not it straddles a minute
//! boundary.
//!
//! State is grouped by `(key, bucket)` with buckets as long as the window.
//! Group `b` holds the clicks of buckets `b` and `b + 1` (each click goes to
//! its own bucket and the one before) and judges the windows that *start*
//! in bucket `b`, which end before bucket `b + 2`. Every window starts in
//! some bucket, so every window is judged once; a click in windows starting
//! in two buckets gets the same candidate from both, and the verdicts
//! reduce keeps one.

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
                for (ts, event_id) in flooded(start, window, threshold, &clicks) {
                    output.push(((ts, event_id), 1isize));
                }
            },
        )
        .map(move |((key, _bucket), (ts, event_id))| Verdict {
            event_id,
            ts,
            kind: EventKind::Click,
            rule,
            key: render(&key),
            count: threshold.saturating_add(1),
            threshold,
        })
}

/// Judges the windows `[s, s + window)` that start at a click time `s` in
/// `[bucket_start, bucket_start + window)`: returns every click inside a
/// window holding more than `threshold` clicks. `clicks` are sorted by
/// time, with their multiplicities; a window that starts between two
/// clicks holds no more than the one starting at the later click, so
/// click times are the only starts to try.
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
) -> Vec<(Millis, EventId)> {
    let mut prefix = Vec::with_capacity(clicks.len() + 1);
    let mut total = 0i64;
    prefix.push(total);
    for &(_, _, copies) in clicks {
        total = total.saturating_add(copies);
        prefix.push(total);
    }

    // Both ends of a window grow with its start, so the clicks inside
    // windows over the threshold are those before the furthest end seen.
    let bucket_end = bucket_start.saturating_add(window);
    let mut flagged = Vec::new();
    let mut covered_until = 0;
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
        if start >= bucket_start && prefix[end] - prefix[first] > threshold {
            let from = covered_until.max(first);
            flagged.extend(clicks[from..end].iter().map(|&(ts, id, _)| (ts, id)));
            covered_until = end;
        }
        while first < clicks.len() && clicks[first].0 == start {
            first += 1;
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

    fn times(flagged: &[(Millis, EventId)]) -> Vec<Millis> {
        flagged.iter().map(|(ts, _)| *ts).collect()
    }

    #[test]
    fn windows_start_in_the_bucket_and_flag_every_click_inside() {
        // Bucket [0, 10), window 10, more than 2 clicks.
        let seen = clicks(&[1, 2, 9, 12, 18, 25]);
        // [1, 11) holds 3; [2, 12) holds 2; [9, 19) holds 3 (9, 12, 18).
        assert_eq!(times(&flooded(0, 10, 2, &seen)), vec![1, 2, 9, 12, 18]);
        // The same clicks judged from bucket [10, 20): [12, 22) holds 2, [18, 28) holds 2.
        assert!(flooded(10, 10, 2, &seen[3..]).is_empty());
    }

    #[test]
    fn copies_count_and_equal_times_share_a_window() {
        let mut seen = clicks(&[5, 5, 7]);
        seen[2].2 = 3;
        assert_eq!(flooded(0, 10, 4, &seen).len(), 3);
        assert!(flooded(0, 10, 5, &seen).is_empty());
    }

    #[test]
    fn overlapping_windows_flag_each_click_once() {
        // Window 10, more than 3: [0, 10), [1, 11) and [2, 12) hold 4,
        // [9, 19) holds 5 (9 to 13); 20 is in no window over the threshold.
        let seen = clicks(&[0, 1, 2, 9, 10, 11, 12, 13, 20]);
        assert_eq!(
            times(&flooded(0, 10, 3, &seen)),
            vec![0, 1, 2, 9, 10, 11, 12, 13]
        );
    }
}
