//! berth binary
fn main() {}
