#![no_std]
// This library target exists so that the agent can build-depend on this
// crate: cargo then rebuilds the agent when the kernel programs change.
