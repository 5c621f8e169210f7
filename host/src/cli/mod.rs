//! Client-side commands of the `weir` binary that talk to a running
//! pipeline (`tap`, `top`) or work on plugin crates (`plugin ...`).

pub mod plugin;
pub mod tap;
pub mod top;
