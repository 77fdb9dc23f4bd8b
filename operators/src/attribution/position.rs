//! Position-based (U-shaped): 40% to the first touch, 40% to the last,
//! the remaining 20% shared equally by the touches in between. One touch
//! gets 100%, two get 50/50.

/// Integer weights with those proportions: for `n ≥ 3` touches the ends
/// weigh `2(n−2)` and each middle touch 1, a total of `5(n−2)`, so the ends
/// get exactly 2/5 each and the middle `(n−2)/5(n−2)` = 1/5 together.
pub(crate) fn weights(touches: usize) -> Vec<u128> {
    match touches {
        0 => Vec::new(),
        1 => vec![1],
        2 => vec![1, 1],
        n => {
            let middle = n - 2;
            let end = 2 * u128::try_from(middle).unwrap_or(u128::MAX / 4);
            let mut weights = vec![1; n];
            weights[0] = end;
            weights[n - 1] = end;
            weights
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::attribution::{split_credit, Model};

    #[test]
    fn forty_twenty_forty() {
        assert_eq!(
            split_credit(Model::PositionBased, &[1, 2, 3], 3, 1_000),
            vec![400, 200, 400]
        );
        assert_eq!(
            split_credit(Model::PositionBased, &[1, 2, 3, 4, 5], 5, 1_000_000),
            vec![400_000, 66_667, 66_667, 66_666, 400_000]
        );
    }

    #[test]
    fn one_touch_takes_all_two_share_equally() {
        assert_eq!(
            split_credit(Model::PositionBased, &[1], 3, 1_234),
            vec![1_234]
        );
        assert_eq!(
            split_credit(Model::PositionBased, &[1, 2], 3, 1_000),
            vec![500, 500]
        );
        // An odd unit goes to the earlier of two equal remainders.
        assert_eq!(
            split_credit(Model::PositionBased, &[1, 2], 3, 1_001),
            vec![501, 500]
        );
    }
}
