//! In progress (issue 4): the metrics family.
