//! Integration tests: one binary (one link), one module per area.

mod helpers;

mod errors;
mod operations;
mod signup;
