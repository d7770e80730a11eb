use durafetch_sdk::durafetch;

pub struct Counter;

#[durafetch]
impl Counter {
    pub fn new() -> Self {
        Counter
    }
}

fn main() {}
