//! Splitting an amount over a conversion's touches: model weights, then
//! exact integer apportionment by the largest-remainder rule.
//!
//! This one function is what both the dataflow and the reference use to
//! divide revenue (and the conversion itself, in micro-conversions), so the
//! two agree bit for bit even where a model's weights are floats.

use adflow::money::Micros;
use adflow::timestamp::Millis;

use super::{first, last, linear, position, time_decay, Model};

/// Splits `amount` over the touches of one conversion under `model`.
///
/// `touch_times` are the touches' event times in path order (ascending
/// `(ts, event_id)`); `conversion_ts` is the conversion's time. The result
/// has one entry per touch and always sums exactly to `amount`:
///
/// 1. each model gives each touch an integer weight `w_i` (see [`Model`];
///    time-decay's `2^(-Δt/half-life)` is quantised to 53 bits relative to
///    the most recent touch);
/// 2. each touch gets `floor(amount · w_i / Σw)`;
/// 3. the units left over (fewer than the number of touches) go one each
///    to the touches with the **largest remainders**
///    `amount · w_i mod Σw`, ties to the **earliest touch** in path order.
///
/// A touch with weight zero never receives a unit. A negative amount is
/// split as its magnitude, then negated. No touches give an empty split.
///
/// ```
/// use adflow_operators::attribution::{split_credit, Model};
/// let times = [0, 10, 20, 30];
/// // 40/20/40 over four touches: the middle two share 20%.
/// assert_eq!(split_credit(Model::PositionBased, &times, 30, 1_000), vec![400, 100, 100, 400]);
/// // 10 over three touches: 3.33 each, the remaining unit to the earliest.
/// assert_eq!(split_credit(Model::Linear, &times[..3], 30, 10), vec![4, 3, 3]);
/// assert_eq!(split_credit(Model::LastTouch, &times, 30, 7), vec![0, 0, 0, 7]);
/// ```
pub fn split_credit(
    model: Model,
    touch_times: &[Millis],
    conversion_ts: Millis,
    amount: Micros,
) -> Vec<Micros> {
    let weights = match model {
        Model::LastTouch => last::weights(touch_times.len()),
        Model::FirstTouch => first::weights(touch_times.len()),
        Model::Linear => linear::weights(touch_times.len()),
        Model::TimeDecay { half_life } => {
            time_decay::weights(touch_times, conversion_ts, half_life)
        }
        Model::PositionBased => position::weights(touch_times.len()),
    };
    apportion(amount, &weights)
}

/// Divides `amount` in proportion to `weights` by the largest-remainder
/// rule (ties to the lowest index). All-zero weights split equally.
pub(crate) fn apportion(amount: Micros, weights: &[u128]) -> Vec<Micros> {
    if weights.is_empty() {
        return Vec::new();
    }
    let equal;
    let mut weights = weights;
    let mut total: u128 = weights.iter().sum();
    if total == 0 {
        equal = vec![1u128; weights.len()];
        weights = &equal;
        total = u128::try_from(weights.len()).unwrap_or(u128::MAX);
    }
    let magnitude = u128::from(amount.unsigned_abs());
    // magnitude < 2^64 and every weight is far below 2^64 (time-decay's are
    // at most 2^53, the others at most twice the number of touches), so the
    // products fit in u128.
    let mut shares: Vec<u128> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let product = magnitude * weight;
        shares.push(product / total);
        remainders.push((product % total, index));
    }
    let given: u128 = shares.iter().sum();
    let left = usize::try_from(magnitude - given).unwrap_or(0);
    // Largest remainder first; among equal remainders the earliest touch.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, index) in remainders.iter().take(left) {
        shares[index] += 1;
    }
    shares
        .into_iter()
        .map(|share| {
            // Each share is at most the magnitude (≤ 2^63), so the signed
            // value fits in i64 whichever the sign.
            let signed = i128::try_from(share).unwrap_or(0);
            let signed = if amount < 0 { -signed } else { signed };
            Micros::try_from(signed).unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_then_earliest_touch() {
        // 100 over weights 1:1:1 → 33.33 each; the one unit left goes to the
        // earliest of the three equal remainders.
        assert_eq!(apportion(100, &[1, 1, 1]), vec![34, 33, 33]);
        // 100 over 1:2:3 → 16.67, 33.33, 50: remainders 4/6, 2/6, 0; the
        // unit goes to the largest remainder (the first touch).
        assert_eq!(apportion(100, &[1, 2, 3]), vec![17, 33, 50]);
        // 5 over 3:3:1:1 → 1.875, 1.875, 0.625, 0.625 (floors 1,1,0,0); three
        // units left: remainders 7/8, 7/8, 5/8, 5/8 → first three.
        assert_eq!(apportion(5, &[3, 3, 1, 1]), vec![2, 2, 1, 0]);
    }

    #[test]
    fn zero_weights_never_get_units() {
        assert_eq!(apportion(7, &[0, 1, 0, 1]), vec![0, 4, 0, 3]);
        assert_eq!(apportion(1, &[0, 0, 5]), vec![0, 0, 1]);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(apportion(10, &[]), Vec::<Micros>::new());
        assert_eq!(apportion(10, &[0, 0]), vec![5, 5]);
        assert_eq!(apportion(0, &[1, 2]), vec![0, 0]);
        assert_eq!(apportion(-10, &[1, 1, 1]), vec![-4, -3, -3]);
        let extreme = apportion(Micros::MIN, &[1, 1]);
        assert_eq!(
            extreme.iter().map(|&x| i128::from(x)).sum::<i128>(),
            i128::from(Micros::MIN)
        );
        let extreme = apportion(Micros::MAX, &[1 << 53, 3, 1]);
        assert_eq!(
            extreme.iter().map(|&x| i128::from(x)).sum::<i128>(),
            i128::from(Micros::MAX)
        );
    }
}
