//! Loads and attaches the dnslens BPF object and reads its ring buffer (needs root).
mod event;
pub use event::*;
