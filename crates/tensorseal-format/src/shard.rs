//! Split and merge.
