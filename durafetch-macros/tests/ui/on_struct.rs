use durafetch_sdk::durafetch;

#[durafetch]
pub struct Counter;

fn main() {}
