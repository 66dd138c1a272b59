//! Invisible QA: the similarity method the comparator scores outputs with, the verdict rules
//! ([`judge`]), the shipped benchmark set, and the QaComparator actor that
//! puts them to work. The penalty ladder is a rule of the engine: [`crate::rules::penalty`]. QA copies are created by the store in the same transaction as the post or
//! submit that starts them; the hidden fields never leave the store's internal types.

pub mod benchmarks;
pub mod comparator;
pub mod judge;
pub mod similarity;
