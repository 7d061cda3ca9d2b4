//! novalite's placement core: Nova's filters, weighers, selection and claims,
//! vectorized over a columnar host table.
//!
//! `core` is pure Rust (no pyo3) and is what `cargo test --no-default-features`
//! exercises; `py` is the thin binding layer behind the default `python` feature.

pub mod core;

#[cfg(feature = "python")]
mod py;
