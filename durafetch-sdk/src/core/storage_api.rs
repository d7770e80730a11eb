//! The storage API's limits, and how durafetch sizes its storage reads within them. Not part
//! of the wire protocol: they bound what one storage call carries, on the object's side.

/// Multi-key gets, puts and deletes carry at most this many keys: the storage API's per-call
/// limit in production (local workerd does not enforce it, so durafetch chunks itself).
pub const MAX_KEYS_PER_CALL: usize = 128;
/// A storage read of an export aims at about this many bytes of values.
pub const READ_TARGET_BYTES: usize = 1024 * 1024;
/// Entries in an export's first storage read, before it knows the object's value sizes.
pub const FIRST_READ_ENTRIES: usize = 16;
/// Entries of a snapshot's first read, which takes the whole storage when it holds no more: a
/// small object's user keys and durafetch's few rows for it. Twice the first ranged read, as
/// durafetch's rows (a marker or two and a short log) take some of it.
pub const WHOLE_READ_ENTRIES: usize = 2 * FIRST_READ_ENTRIES;

/// Sizes an export's storage reads (`list` pages, multi-key `get`s) so that each holds about
/// [`READ_TARGET_BYTES`], learning value sizes from the previous read: 100-byte values are read
/// 4,000 at a time, 100 KiB values 10 at a time. The limit at most doubles from one read to the
/// next, so a run of small values followed by large ones overshoots by at most one read.
#[derive(Debug, Clone)]
pub struct ReadSizer {
    max: usize,
    limit: usize,
}

impl ReadSizer {
    pub fn new(max: usize) -> Self {
        ReadSizer { max, limit: FIRST_READ_ENTRIES.min(max).max(1) }
    }

    /// How many entries the next read may ask for.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records a read of `entries` entries that encoded to `bytes` bytes.
    pub fn observe(&mut self, entries: usize, bytes: usize) {
        if entries == 0 {
            return;
        }
        let per_entry = (bytes / entries).max(1);
        let fits = (READ_TARGET_BYTES / per_entry).max(1);
        self.limit = fits.min(self.limit * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::MAX_PAGE_CHANGES;

    #[test]
    fn reads_size_themselves_to_the_values() {
        let mut small = ReadSizer::new(MAX_PAGE_CHANGES);
        assert_eq!(small.limit(), FIRST_READ_ENTRIES);
        let mut limits = vec![];
        for _ in 0..9 {
            let n = small.limit();
            small.observe(n, n * 120);
            limits.push(small.limit());
        }
        assert_eq!(limits, [32, 64, 128, 256, 512, 1024, 2048, 4000, 4000], "grows by doubling up to the cap");

        let mut large = ReadSizer::new(MAX_PAGE_CHANGES);
        large.observe(16, 16 * 140 * 1024);
        assert_eq!(large.limit(), 7, "100 KiB values (140 KiB as base64 JSON): about 1 MiB a read");
        large.observe(7, 7 * 3 * 1024 * 1024);
        assert_eq!(large.limit(), 1, "never below one entry");
        large.observe(0, 0);
        assert_eq!(large.limit(), 1);
    }
}
