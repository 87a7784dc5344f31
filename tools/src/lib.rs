//! Torture and load tools for Sealgate, shared by the long-running binaries
//! in `src/bin/` and the end-to-end tests in the root `tests/`.

pub mod crash;
pub mod fast_upstream;
pub mod golden;
pub mod otlp;
pub mod table;
pub mod traffic;
