//! First-touch: the earliest touch in path order gets everything.

/// Weight 1 on the first touch, 0 elsewhere.
pub(crate) fn weights(touches: usize) -> Vec<u128> {
    let mut weights = vec![0; touches];
    if let Some(first) = weights.first_mut() {
        *first = 1;
    }
    weights
}

#[cfg(test)]
mod tests {
    use crate::attribution::{split_credit, Model};

    #[test]
    fn the_first_touch_takes_everything() {
        assert_eq!(
            split_credit(Model::FirstTouch, &[1, 2, 3], 3, 999),
            vec![999, 0, 0]
        );
        assert_eq!(split_credit(Model::FirstTouch, &[5], 9, 10), vec![10]);
    }
}
