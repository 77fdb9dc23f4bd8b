//! In progress (issue 4): the attribution family.
