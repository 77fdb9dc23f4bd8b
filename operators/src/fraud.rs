//! In progress (issue 4): the fraud family.
