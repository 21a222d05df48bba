//! Test support shared by the pipeline's integration tests.
pub mod readers;
