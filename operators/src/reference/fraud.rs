//! In progress (issue 4): sequential reference of the fraud family.
