//! In progress (issue 4): the dedup family.
