use durafetch_sdk::durafetch;

pub struct Counter;

#[durafetch]
impl Default for Counter {
    fn default() -> Self {
        Counter
    }
}

fn main() {}
