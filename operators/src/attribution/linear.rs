//! Linear: every touch gets an equal share.

/// Weight 1 on every touch.
pub(crate) fn weights(touches: usize) -> Vec<u128> {
    vec![1; touches]
}

#[cfg(test)]
mod tests {
    use crate::attribution::{split_credit, Model};

    #[test]
    fn equal_shares_with_the_remainder_to_the_earliest() {
        assert_eq!(
            split_credit(Model::Linear, &[1, 2, 3, 4], 4, 1_000),
            vec![250; 4]
        );
        // 1_000_000 micro-conversions over 3 touches: 333_333.33 each.
        assert_eq!(
            split_credit(Model::Linear, &[1, 2, 3], 4, 1_000_000),
            vec![333_334, 333_333, 333_333]
        );
        // 2 units over 3 touches: the first two get one each.
        assert_eq!(split_credit(Model::Linear, &[1, 2, 3], 4, 2), vec![1, 1, 0]);
    }
}
