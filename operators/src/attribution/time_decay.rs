//! Time-decay: a touch's weight halves with every half-life between it and
//! the conversion, `2^(−Δt/half-life)` with `Δt = conversion ts − touch ts`.

use adflow::timestamp::Millis;

/// Weights are `2^(−Δt/h)` relative to the most recent touch (so the
/// largest is exactly 1 and none underflows before quantising), scaled to
/// 2^53 and rounded to integers; the split is then exact integer
/// arithmetic. A half-life of zero or less puts all weight on the touches
/// closest to the conversion.
pub(crate) fn weights(
    touch_times: &[Millis],
    conversion_ts: Millis,
    half_life: Millis,
) -> Vec<u128> {
    const SCALE: f64 = (1u64 << 53) as f64;
    let deltas: Vec<Millis> = touch_times
        .iter()
        .map(|&ts| conversion_ts.saturating_sub(ts))
        .collect();
    let Some(&closest) = deltas.iter().min() else {
        return Vec::new();
    };
    deltas
        .iter()
        .map(|&delta| {
            let behind = delta.saturating_sub(closest);
            if half_life <= 0 {
                return u128::from(behind == 0);
            }
            let halvings = behind as f64 / half_life as f64;
            // In [0, 2^53]: a float-to-int `as` saturates and maps NaN to 0.
            ((-halvings).exp2() * SCALE).round() as u128
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::weights;
    use crate::attribution::{split_credit, Model};
    use adflow::timestamp::{DAY_MS, HOUR_MS};

    const WEEK: Model = Model::TimeDecay {
        half_life: 7 * DAY_MS,
    };

    #[test]
    fn weights_halve_every_half_life() {
        let scale = 1u128 << 53;
        assert_eq!(
            weights(&[0, 7 * DAY_MS, 14 * DAY_MS], 14 * DAY_MS, 7 * DAY_MS),
            vec![scale / 4, scale / 2, scale]
        );
    }

    #[test]
    fn a_touch_one_half_life_older_gets_half_as_much() {
        // Weights 1 : 2 → one third and two thirds. Of 1_000: 333.33 and
        // 666.67; the leftover unit goes to the larger remainder, the newer.
        assert_eq!(
            split_credit(WEEK, &[0, 7 * DAY_MS], 7 * DAY_MS, 3_000),
            vec![1_000, 2_000]
        );
        assert_eq!(
            split_credit(WEEK, &[0, 7 * DAY_MS], 7 * DAY_MS, 1_000),
            vec![333, 667]
        );
        // Weights 1 : 2 : 4 over 700 → 100, 200, 400.
        assert_eq!(
            split_credit(WEEK, &[0, 7 * DAY_MS, 14 * DAY_MS], 14 * DAY_MS, 700),
            vec![100, 200, 400]
        );
    }

    #[test]
    fn equal_times_split_equally_and_far_touches_vanish() {
        assert_eq!(split_credit(WEEK, &[5, 5], 10, 1_001), vec![501, 500]);
        let hour = Model::TimeDecay { half_life: HOUR_MS };
        // 200 half-lives back: weight 2^-200 rounds to zero at 53 bits.
        assert_eq!(
            split_credit(hour, &[0, 200 * HOUR_MS], 200 * HOUR_MS, 1_000),
            vec![0, 1_000]
        );
    }

    #[test]
    fn non_positive_half_life_credits_the_closest_touches() {
        let instant = Model::TimeDecay { half_life: 0 };
        assert_eq!(
            split_credit(instant, &[1, 2, 9, 9], 10, 11),
            vec![0, 0, 6, 5]
        );
    }
}
