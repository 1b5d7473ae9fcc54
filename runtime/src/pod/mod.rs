//! Pods on the node: the state machine that decides, and the worker that does.

pub mod machine;
