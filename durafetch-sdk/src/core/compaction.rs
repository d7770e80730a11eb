//! Keeps the change log O(distinct keys): when a key is written again, the older log row's entry
//! for it is dead, since a reader only needs the newest row naming each key. The compactor
//! remembers dead entries and plans, in bounded batches, which rows to rewrite or delete.
//!
//! A dead entry is dropped only once the row that superseded it has been read back from storage
//! and still names the key, so a write that failed, or a transaction that rolled back, can never
//! cost a key its last log row.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::core::cursor::Cursor;
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// Dead entries gathered before a compaction step is worth running.
pub const BATCH: usize = 256;
/// Keys whose newest row the compactor remembers; past this it forgets and starts again, which
/// only makes compaction less thorough, never wrong.
pub const MEMORY_KEYS: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dead {
    row: Cursor,
    key: String,
    superseded_by: Cursor,
}

#[derive(Debug, Default)]
pub struct Compactor {
    /// Newest row per key: a 32-bit hash of the key to the row's distance past `base`. Eight
    /// bytes a key keep the map of a bulk load's 65,536 keys within a core's cache, which three
    /// times that did not (the map was half of durafetch's own cost in a bulk load). A collision
    /// can only propose a dead entry the row does not hold, which the plan then ignores, or
    /// forget a key's row, which leaves one entry uncompacted.
    newest_row: FxHashMap<u32, u32>,
    /// The first row recorded since the map was last emptied; every row in it is past this one,
    /// in its epoch.
    base: Cursor,
    dead: Vec<Dead>,
}

/// One pass of a fast hash per key written: this runs for every key of every write call, and
/// a keyed hash buys nothing here (the worst a collision does is noted above). The low half:
/// on wasm32 the hasher works in 32 bits and the high half is always zero.
fn key_hash(key: &str) -> u32 {
    FxBuildHasher.hash_one(key) as u32
}

/// One step's work: the log rows to read, and the dead entries they settle.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub epoch: u32,
    pub rows: BTreeSet<Cursor>,
    dead: Vec<Dead>,
}

/// What to write back after reading a batch's rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Rows left with no live entry.
    pub delete: Vec<Cursor>,
    /// Rows that keep some entries, with the entries they keep.
    pub put: Vec<(Cursor, Vec<String>)>,
}

impl Compactor {
    /// Notes that the log row at `at` names `keys` (written outside a transaction).
    pub fn record<'k>(&mut self, at: Cursor, keys: impl IntoIterator<Item = &'k str>) {
        let distance = at.seq.checked_sub(self.base.seq).and_then(|d| u32::try_from(d).ok());
        let distance = match distance {
            Some(d) if at.epoch == self.base.epoch && !self.newest_row.is_empty() => d,
            _ => {
                self.newest_row.clear();
                self.base = at;
                0
            }
        };
        for key in keys {
            if let Some(previous) = self.newest_row.insert(key_hash(key), distance) {
                if previous < distance {
                    let row = Cursor::new(at.epoch, self.base.seq + u64::from(previous));
                    self.dead.push(Dead { row, key: key.to_owned(), superseded_by: at });
                }
            }
        }
        if self.newest_row.len() > MEMORY_KEYS {
            self.newest_row.clear();
        }
    }

    /// How many keys' newest rows it remembers now.
    pub fn remembered_keys(&self) -> usize {
        self.newest_row.len()
    }

    /// Forgets the keys it remembers and frees their memory, keeping the dead entries already
    /// found: compaction goes on, less thorough for keys written before, never wrong.
    pub fn forget_keys(&mut self) {
        self.newest_row = FxHashMap::default();
    }

    /// `delete_all` removed every row: nothing is left to compact.
    pub fn reset(&mut self) {
        self.newest_row.clear();
        self.dead.clear();
    }

    pub fn is_due(&self) -> bool {
        self.dead.len() >= BATCH
    }

    /// Takes dead entries whose rows (both the dead one and its superseder) fit in one storage
    /// read of at most [`MAX_KEYS_PER_CALL`] keys, all from the current `epoch`.
    pub fn take_batch(&mut self, epoch: u32) -> Batch {
        self.dead.retain(|d| d.row.epoch == epoch);
        let mut batch = Batch { epoch, ..Batch::default() };
        let mut rest = Vec::new();
        for dead in self.dead.drain(..) {
            let mut needed = batch.rows.clone();
            needed.insert(dead.row);
            needed.insert(dead.superseded_by);
            if needed.len() <= MAX_KEYS_PER_CALL {
                batch.rows = needed;
                batch.dead.push(dead);
            } else {
                rest.push(dead);
            }
        }
        self.dead = rest;
        batch
    }
}

impl Batch {
    /// Plans the rewrite given the rows as read back from storage (absent rows are absent).
    pub fn plan(&self, stored: &BTreeMap<Cursor, Vec<String>>) -> Rewrite {
        let mut rows: BTreeMap<Cursor, Vec<String>> = BTreeMap::new();
        for dead in &self.dead {
            let confirmed = stored.get(&dead.superseded_by).is_some_and(|keys| keys.contains(&dead.key));
            let Some(original) = stored.get(&dead.row) else { continue };
            if !confirmed {
                continue;
            }
            rows.entry(dead.row).or_insert_with(|| original.clone()).retain(|k| k != &dead.key);
        }
        let mut rewrite = Rewrite::default();
        for (row, keys) in rows {
            if keys.is_empty() {
                rewrite.delete.push(row);
            } else if keys.len() != stored[&row].len() {
                rewrite.put.push((row, keys));
            }
        }
        rewrite
    }
}

/// Readers further behind than this many log rows get a full snapshot instead of the changes,
/// which lets the log forget deletions older than that.
pub const DEFAULT_TOMBSTONE_HORIZON: u64 = 100_000;

/// The result of sweeping a page of old rows for tombstones (entries naming keys that no
/// longer exist).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub rewrite: Rewrite,
    /// The new floor, when a tombstone was dropped: readers below it need a snapshot.
    pub floor: Option<Cursor>,
}

/// Plans the removal of tombstones from `rows` (oldest first, all before the horizon), given
/// which of their keys still exist.
pub fn sweep_tombstones(rows: &[(Cursor, Vec<String>)], exists: impl Fn(&str) -> bool) -> Sweep {
    let mut sweep = Sweep::default();
    for (row, keys) in rows {
        let live: Vec<String> = keys.iter().filter(|k| exists(k)).cloned().collect();
        if live.len() == keys.len() {
            continue;
        }
        // Position 0 of an epoch is its start marker, which carries no keys and stays.
        sweep.floor = Some(*row);
        if live.is_empty() {
            sweep.rewrite.delete.push(*row);
        } else {
            sweep.rewrite.put.push((*row, live));
        }
    }
    sweep
}

#[cfg(test)]
mod tests {
    //! The compactor against a model: random writes, deletes, delete_all, transactions with and
    //! without rollback, failed writes and compaction steps; after each step, a reader starting
    //! from any earlier cursor must reconstruct the current state exactly from the log.

    use super::*;
    use crate::core::cursor::ReadPlan;

    /// A deterministic generator, so that a failing seed replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Storage as the object sees it: user keys and log rows.
    #[derive(Default, Clone)]
    struct Store {
        user: BTreeMap<String, u64>,
        log: BTreeMap<Cursor, Vec<String>>,
    }

    struct World {
        store: Store,
        head: Cursor,
        floor: Cursor,
        compactor: Compactor,
        /// (cursor, user state right after it): where readers may stand.
        history: Vec<(Cursor, BTreeMap<String, u64>)>,
    }

    impl World {
        fn new() -> Self {
            World {
                store: Store::default(),
                head: Cursor::default(),
                floor: Cursor::default(),
                compactor: Compactor::default(),
                history: vec![(Cursor::default(), BTreeMap::new())],
            }
        }

        fn write(&mut self, keys: &[String], value: Option<u64>, logged_outside_txn: bool, lands: bool) {
            self.head = self.head.next_seq();
            if lands {
                for k in keys {
                    match value {
                        Some(v) => self.store.user.insert(k.clone(), v),
                        None => self.store.user.remove(k),
                    };
                }
                self.store.log.insert(self.head, keys.to_vec());
                self.history.push((self.head, self.store.user.clone()));
            }
            if logged_outside_txn {
                self.compactor.record(self.head, keys.iter().map(String::as_str));
            }
        }

        fn delete_all(&mut self) {
            self.head = self.head.next_epoch();
            self.floor = self.head;
            self.store = Store::default();
            self.store.log.insert(self.head, vec![]);
            self.compactor.reset();
            self.history.push((self.head, BTreeMap::new()));
        }

        fn compact(&mut self) {
            let batch = self.compactor.take_batch(self.head.epoch);
            let stored: BTreeMap<Cursor, Vec<String>> =
                batch.rows.iter().filter_map(|r| self.store.log.get(r).map(|k| (*r, k.clone()))).collect();
            let rewrite = batch.plan(&stored);
            for row in rewrite.delete {
                self.store.log.remove(&row);
            }
            for (row, keys) in rewrite.put {
                self.store.log.insert(row, keys);
            }
        }

        /// Drops tombstones from the oldest rows more than `horizon` writes behind the head.
        fn sweep(&mut self, horizon: u64) {
            let limit = Cursor::new(self.head.epoch, self.head.seq.saturating_sub(horizon));
            let rows: Vec<(Cursor, Vec<String>)> = self
                .store
                .log
                .range(Cursor::new(self.head.epoch, 0)..limit)
                .take(MAX_KEYS_PER_CALL)
                .map(|(c, k)| (*c, k.clone()))
                .collect();
            let user = self.store.user.clone();
            let sweep = sweep_tombstones(&rows, |k| user.contains_key(k));
            for row in sweep.rewrite.delete {
                self.store.log.remove(&row);
            }
            for (row, keys) in sweep.rewrite.put {
                self.store.log.insert(row, keys);
            }
            if let Some(floor) = sweep.floor {
                self.floor = self.floor.max(floor);
            }
        }

        /// What a reader holding `state` as of `since` ends with after one export.
        fn read_from(&self, since: Cursor, state: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
            match ReadPlan::choose(Some(since), self.floor, self.head) {
                ReadPlan::Snapshot => self.store.user.clone(),
                ReadPlan::ChangesSince(c) => {
                    let mut out = state.clone();
                    for (_, keys) in self.store.log.range(c.next_seq()..) {
                        for k in keys {
                            match self.store.user.get(k) {
                                Some(v) => out.insert(k.clone(), *v),
                                None => out.remove(k),
                            };
                        }
                    }
                    out
                }
            }
        }

        fn check_every_reader(&self, seed: u64, step: usize) {
            for (since, state) in &self.history {
                assert_eq!(self.read_from(*since, state), self.store.user, "seed {seed} step {step}: reader from {since}");
            }
        }
    }

    #[test]
    fn every_reader_reconstructs_the_state_through_compaction() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut world = World::new();
            let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
            for step in 0..400 {
                let pick = |rng: &mut Rng| -> Vec<String> {
                    let n = 1 + rng.below(4) as usize;
                    (0..n).map(|_| keys[rng.below(keys.len() as u64) as usize].clone()).collect::<BTreeSet<_>>().into_iter().collect()
                };
                match rng.below(100) {
                    0..=44 => {
                        let k = pick(&mut rng);
                        let v = rng.next();
                        world.write(&k, Some(v), true, true)
                    }
                    45..=59 => {
                        let k = pick(&mut rng);
                        world.write(&k, None, true, true)
                    }
                    60..=66 => {
                        let k = pick(&mut rng);
                        let v = rng.next();
                        world.write(&k, Some(v), false, true)
                    } // committed transaction
                    67..=71 => {
                        let k = pick(&mut rng);
                        let v = rng.next();
                        world.write(&k, Some(v), false, false)
                    } // rolled back
                    72..=75 => {
                        let k = pick(&mut rng);
                        let v = rng.next();
                        world.write(&k, Some(v), true, false)
                    } // write storage refused
                    76..=77 => world.delete_all(),
                    78..=81 => world.sweep(rng.below(40)),
                    _ => world.compact(),
                }
                if step % 8 == 0 {
                    world.check_every_reader(seed, step);
                }
            }
            world.check_every_reader(seed, 400);
        }
    }

    #[test]
    fn overwrites_keep_the_log_near_the_number_of_distinct_keys() {
        let mut world = World::new();
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        for i in 0..20_000u64 {
            let key = keys[(i % 100) as usize].clone();
            world.write(&[key], Some(i), true, true);
            while world.compactor.is_due() {
                world.compact();
            }
        }
        assert!(world.store.log.len() <= 100 + BATCH, "{} rows", world.store.log.len());
        world.check_every_reader(0, 0);
    }

    #[test]
    fn sweeping_drops_only_tombstones_and_raises_the_floor_past_them() {
        let rows = vec![
            (Cursor::new(1, 0), vec![]),
            (Cursor::new(1, 1), vec!["live".to_string()]),
            (Cursor::new(1, 2), vec!["gone".to_string()]),
            (Cursor::new(1, 3), vec!["live2".to_string(), "gone2".to_string()]),
            (Cursor::new(1, 4), vec!["live3".to_string()]),
        ];
        let sweep = sweep_tombstones(&rows, |k| k.starts_with("live"));
        assert_eq!(sweep.rewrite.delete, vec![Cursor::new(1, 2)]);
        assert_eq!(sweep.rewrite.put, vec![(Cursor::new(1, 3), vec!["live2".to_string()])]);
        assert_eq!(sweep.floor, Some(Cursor::new(1, 3)));
        assert_eq!(sweep_tombstones(&rows[..2], |_| true), Sweep::default());
    }

    #[test]
    fn batches_read_at_most_one_page_of_rows() {
        let mut compactor = Compactor::default();
        for seq in 1..=1000u64 {
            compactor.record(Cursor::new(0, seq), [format!("k{}", seq % 300).as_str()]);
        }
        let batch = compactor.take_batch(0);
        assert!(batch.rows.len() <= MAX_KEYS_PER_CALL);
        assert!(!batch.dead.is_empty());
    }
}
