//! What the puller is asked to do: the config file and the servers it names (`file`), turned
//! with the flags into a pull's settings (`pull`) or a restore's (`restore`).

pub mod filter;

pub mod file;
pub mod pull;
pub mod restore;
