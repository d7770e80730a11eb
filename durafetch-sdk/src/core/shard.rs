//! Registry sharding: each object reports to one of N registry objects, chosen by a hash of its
//! id, and the puller reads all N. `docs/scale.md` shows how to choose N.

use sha2::{Digest, Sha256};

/// Upper bound on `registry_shards`: a poll opens one index session per shard.
pub const MAX_REGISTRY_SHARDS: u32 = 1024;

/// The shard that keeps `object_id`'s registry row. Ids are already uniform, but named-object
/// ids are chosen by the platform, so a hash keeps the spread even whatever their shape.
pub fn shard_of(object_id: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(object_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u32
}

/// The name the shard's registry object is addressed by.
pub fn shard_name(shard: u32) -> String {
    format!("shard-{shard}")
}

/// The export API path of a shard's index (`/index` is shard 0).
pub fn index_path(shard: u32) -> String {
    if shard == 0 {
        "/index".to_owned()
    } else {
        format!("/index/{shard}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_holds_everything() {
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn objects_spread_evenly_and_stay_put() {
        let shards = 16;
        let mut counts = vec![0u32; shards as usize];
        for i in 0..16_000 {
            let id = format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
            let shard = shard_of(&id, shards);
            assert_eq!(shard, shard_of(&id, shards), "stable");
            counts[shard as usize] += 1;
        }
        // 1,000 expected per shard; a fair hash stays well within ±20%.
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn paths_name_the_shard() {
        assert_eq!(index_path(0), "/index");
        assert_eq!(index_path(7), "/index/7");
        assert_eq!(shard_name(3), "shard-3");
    }
}
