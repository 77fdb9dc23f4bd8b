//! Last-touch: the most recent touch in path order gets everything.

/// Weight 1 on the last touch, 0 elsewhere.
pub(crate) fn weights(touches: usize) -> Vec<u128> {
    let mut weights = vec![0; touches];
    if let Some(last) = weights.last_mut() {
        *last = 1;
    }
    weights
}

#[cfg(test)]
mod tests {
    use crate::attribution::{split_credit, Model};

    #[test]
    fn the_last_touch_takes_everything() {
        assert_eq!(
            split_credit(Model::LastTouch, &[1, 2, 3], 3, 999),
            vec![0, 0, 999]
        );
        assert_eq!(split_credit(Model::LastTouch, &[5], 9, 10), vec![10]);
        assert_eq!(
            split_credit(Model::LastTouch, &[], 9, 10),
            Vec::<i64>::new()
        );
    }
}
