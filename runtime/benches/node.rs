//! Node benchmarks (being written).
fn main() {}
