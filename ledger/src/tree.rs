//! The stored Merkle tree: every node of every complete subtree, in the
//! `tree` column family, written by the single writer in the same batch as
//! the events that complete it (`docs/FORMAT.md`, "The Merkle tree").
//!
//! Key: `last leaf (u64 BE) ‖ level (u8)` → the 32-byte SHA-256 hash of
//! the perfect subtree over leaves `index·2^level .. (index+1)·2^level`,
//! whose last leaf is `(index+1)·2^level − 1`. Level 0 holds the leaf
//! hashes. Keys sort in the order the appends complete the nodes, so the
//! column family is only ever appended to: a flushed table never overlaps
//! the older ones, and compaction moves files without rewriting them. A tree of `n` leaves is the `popcount(n)` peaks
//! of [`crate::merkle::peak_ranges`]; any root, inclusion or consistency
//! proof up to the head is `O(log n)` point reads.
//!
//! `meta/tree` (one byte, [`TREE_FORMAT`]) says the tree is complete for
//! every stored event. A ledger made before the tree (or before this key
//! layout, format 1) has none: the writer's open builds it from the log
//! before the first append ([`backfill`]), in batches, the marker last, so
//! an interrupted build starts over.

use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use crate::chain::RawRecord;
use crate::checkpoint::{self, Checkpoint, ConsistencyProof, InclusionProof, KeyHistory};
use crate::error::{Error, Result};
use crate::failure::{Failure, FailureKind};
use crate::keys::SigningKey;
use crate::ledger::Ledger;
use crate::merkle::{self, Frontier, Nodes, TreeHash, leaf_data, leaf_hash};
use crate::store::{CF_META, Store};

pub(crate) const CF_TREE: &str = "tree";
pub(crate) const META_TREE: &[u8] = b"tree";
/// 2: keys in completion order. 1 (level first) is rebuilt by a writer's open.
pub(crate) const TREE_FORMAT: u8 = 2;
const TREE_FORMAT_LEVEL_FIRST: u8 = 1;

/// Events hashed into one batch while a tree is built from an old log.
const BACKFILL_BATCH: u64 = 16 * 1024;

pub(crate) fn node_key(level: u8, index: u64) -> [u8; 9] {
    let last = (index << level) | ((1u64 << level) - 1);
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&last.to_be_bytes());
    k[8] = level;
    k
}

/// `(level, index)` of a stored key, if it is one [`node_key`] makes.
fn key_node(key: &[u8]) -> Option<(u8, u64)> {
    let (last, level) = (u64::from_be_bytes(key.get(..8)?.try_into().ok()?), *key.get(8)?);
    let ones = 1u64.checked_shl(u32::from(level))? - 1;
    (key.len() == 9 && last & ones == ones).then_some((level, last >> level))
}

/// A stored key, as its node or as bytes.
fn describe_key(key: &[u8]) -> String {
    match key_node(key) {
        Some((level, index)) => format!("(level {level}, index {index})"),
        None => format!("with malformed key {}", hex::encode(key)),
    }
}

/// The leaf hash of a stored record at `seq`.
pub(crate) fn record_leaf(seq: u64, record: &[u8]) -> std::result::Result<TreeHash, String> {
    let raw = RawRecord::parse(record)?;
    Ok(leaf_hash(&leaf_data(seq, &raw.hash, &raw.signature)))
}

impl Store {
    /// Whether the store holds a complete tree (its marker in `meta`).
    pub(crate) fn has_tree(&self) -> Result<bool> {
        if self.db.cf_handle(CF_TREE).is_none() {
            return Ok(false);
        }
        let marker = self
            .db
            .get_cf(self.cf(CF_META)?, META_TREE)
            .map_err(|e| Error::storage(&self.path, e))?;
        match marker.as_deref() {
            None | Some([TREE_FORMAT_LEVEL_FIRST]) => Ok(false),
            Some([TREE_FORMAT]) => Ok(true),
            Some(other) => Err(Error::Damaged {
                path: self.path.clone(),
                reason: format!("unknown tree format {other:?} in meta (this build reads {TREE_FORMAT})"),
            }),
        }
    }

    fn no_tree(&self) -> Error {
        Error::InvalidRequest(format!(
            "the ledger in {} has no Merkle tree yet (it was made before the tree existed, or before its current layout): open it for writing once (`sealgate serve`, or any append) to build it",
            self.path.display()
        ))
    }

    /// The stored node `(level, index)`.
    pub(crate) fn tree_node(&self, level: u8, index: u64) -> Result<TreeHash> {
        let cf = self.cf(CF_TREE)?;
        let value = self
            .db
            .get_cf(cf, node_key(level, index))
            .map_err(|e| Error::storage(&self.path, e))?;
        value
            .and_then(|v| <TreeHash>::try_from(&v[..]).ok())
            .ok_or_else(|| Error::Damaged {
                path: self.path.clone(),
                reason: format!("Merkle tree node (level {level}, index {index}) missing or malformed"),
            })
    }

    /// The right edge of the stored tree of `size` leaves.
    pub(crate) fn frontier(&self, size: u64) -> Result<Frontier> {
        let peaks = merkle::peak_ranges(size)
            .into_iter()
            .map(|(level, index)| self.tree_node(level, index))
            .collect::<Result<Vec<_>>>()?;
        Frontier::from_peaks(size, peaks).ok_or_else(|| Error::InvalidRequest("internal error: peaks".into()))
    }

    /// Checks that the tree is there and `size` (leaves) is within the log.
    fn tree_size_ok(&self, size: u64, what: &str) -> Result<()> {
        if !self.has_tree()? {
            return Err(self.no_tree());
        }
        let leaves = self.head().seq + 1;
        if size == 0 || size > leaves {
            return Err(Error::InvalidRequest(format!(
                "{what}: tree size {size} is not between 1 and the log's {leaves} events"
            )));
        }
        Ok(())
    }
}

/// Builds the tree of a log that has none (a ledger made before the tree,
/// or before its key layout), before the writer starts. Whatever the column
/// family held goes first (an old layout, or an interrupted build), and the
/// marker goes last, so an interrupted build starts over.
pub(crate) fn backfill(store: &Store) -> Result<()> {
    let head = store.head();
    tracing::info!(path = %store.path.display(), events = head.seq + 1, "building the Merkle tree from the log");
    let tree = store.cf(CF_TREE)?;
    // Every key is 9 bytes (either layout): all sort below ten 0xff. An
    // empty column family (a ledger made before the tree) gets no range
    // tombstone; one that had keys is compacted after the build, so the
    // tombstone does not sit over every later file.
    let had_keys = store.db.iterator_cf(tree, IteratorMode::Start).next().is_some();
    if had_keys {
        store
            .db
            .delete_range_cf(tree, &[][..], &[0xffu8; 10][..])
            .map_err(|e| Error::storage(&store.path, e))?;
    }
    let mut frontier = Frontier::default();
    let mut batch = WriteBatch::default();
    for item in store.raw_iter(0)? {
        let (seq, record) = item?;
        if seq != frontier.size() {
            return Err(Error::Recovery {
                path: store.path.clone(),
                reason: format!(
                    "building the Merkle tree: expected seq {} but found seq {seq}",
                    frontier.size()
                ),
            });
        }
        if seq > head.seq {
            break;
        }
        let leaf = record_leaf(seq, &record).map_err(|reason| Error::Malformed { seq, reason })?;
        frontier.push(leaf, |level, index, hash| {
            batch.put_cf(tree, node_key(level, index), hash)
        });
        if frontier.size().is_multiple_of(BACKFILL_BATCH) {
            store
                .db
                .write(std::mem::take(&mut batch))
                .map_err(|e| Error::storage(&store.path, e))?;
        }
    }
    if frontier.size() != head.seq + 1 {
        return Err(Error::Recovery {
            path: store.path.clone(),
            reason: format!(
                "building the Merkle tree: the log holds {} events but its head is seq {}",
                frontier.size(),
                head.seq
            ),
        });
    }
    batch.put_cf(store.cf(CF_META)?, META_TREE, [TREE_FORMAT]);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    store
        .db
        .write_opt(batch, &sync)
        .map_err(|e| Error::storage(&store.path, e))?;
    if had_keys {
        store.db.compact_range_cf(tree, None::<&[u8]>, None::<&[u8]>);
    }
    tracing::info!(path = %store.path.display(), size = frontier.size(), "Merkle tree built");
    Ok(())
}

/// Removes the tree marker (a synced write) before a writer that does not
/// maintain the tree appends ([`Ledger::create_without_tree`]): the store
/// is then a ledger without a tree, which no proof is made from and which
/// a normal open for writing rebuilds.
pub(crate) fn remove_marker(store: &Store) -> Result<()> {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    store
        .db
        .delete_cf_opt(store.cf(CF_META)?, META_TREE, &sync)
        .map_err(|e| Error::storage(&store.path, e))
}

impl Ledger {
    fn nodes_get(&self) -> impl Fn(u8, u64) -> Result<TreeHash> + '_ {
        move |level, index| self.store().tree_node(level, index)
    }

    /// The number of leaves in the tree: every event up to the head.
    pub fn tree_size(&self) -> u64 {
        self.head().seq + 1
    }

    /// The Merkle tree root over the first `size` events.
    pub fn tree_root(&self, size: u64) -> Result<TreeHash> {
        self.store().tree_size_ok(size, "tree root")?;
        let get = self.nodes_get();
        Nodes { get: &get }.range(0, size)
    }

    /// The leaf hash of the event at `seq`, from its stored record.
    pub fn leaf_hash(&self, seq: u64) -> Result<TreeHash> {
        let record = self
            .store()
            .raw(seq)?
            .ok_or_else(|| Error::InvalidRequest(format!("no event at seq {seq}")))?;
        record_leaf(seq, &record).map_err(|reason| Error::Malformed { seq, reason })
    }

    /// The inclusion proof of event `index` in the tree of `size` events.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<TreeHash>> {
        self.store().tree_size_ok(size, "inclusion proof")?;
        if index >= size {
            return Err(Error::InvalidRequest(format!(
                "inclusion proof: seq {index} is not in the tree of the first {size} events"
            )));
        }
        let get = self.nodes_get();
        Nodes { get: &get }.inclusion(index, size)
    }

    /// The consistency proof from the tree of `old` events to the tree of
    /// `new` events (empty when they are equal).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<TreeHash>> {
        self.store().tree_size_ok(new, "consistency proof")?;
        if old == 0 || old > new {
            return Err(Error::InvalidRequest(format!(
                "consistency proof: old size {old} is not between 1 and the new size {new}"
            )));
        }
        let get = self.nodes_get();
        Nodes { get: &get }.consistency(old, new)
    }

    /// The range proof of events `[first, end)` in the tree of `size`
    /// events ([`crate::merkle::verify_range`] checks it with the range's
    /// leaves): at most 2 log2(size) hashes.
    pub fn range_proof(&self, first: u64, end: u64, size: u64) -> Result<Vec<TreeHash>> {
        self.store().tree_size_ok(size, "range proof")?;
        if first >= end || end > size {
            return Err(Error::InvalidRequest(format!(
                "range proof: [{first}, {end}) is not a range of the first {size} events"
            )));
        }
        let get = self.nodes_get();
        Nodes { get: &get }.range_proof(first, end, size)
    }

    /// Full verification's last step: the stored tree is exactly the tree
    /// of the log's events (every node, and nothing past the head). The
    /// events themselves were verified before.
    pub(crate) fn check_tree(&self, last: u64) -> Result<Option<Failure>> {
        let store = self.store();
        match store.has_tree() {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Some(Failure::new(
                    0,
                    FailureKind::TreeMismatch,
                    "the store holds no complete Merkle tree (a ledger made before it, not yet opened for writing, which builds it)",
                )));
            }
            Err(e) => return Ok(Some(Failure::new(0, FailureKind::TreeMismatch, e.to_string()))),
        }
        let cf = store.cf(CF_TREE)?;
        // The stored keys are in the order the appends completed the nodes,
        // which is the order the frontier reports them: one forward walk.
        let mut stored = store.db.iterator_cf(cf, IteratorMode::Start);
        let mut frontier = Frontier::default();
        let mut failure: Option<Failure> = None;
        for item in store.raw_iter(0)? {
            let (seq, record) = item?;
            if seq > last {
                break;
            }
            let leaf = match record_leaf(seq, &record) {
                Ok(leaf) => leaf,
                Err(reason) => return Ok(Some(Failure::new(seq, FailureKind::Malformed, reason))),
            };
            let mut mismatch: Option<String> = None;
            frontier.push(leaf, |level, index, hash| {
                if mismatch.is_some() {
                    return;
                }
                let want = node_key(level, index);
                mismatch = match stored.next() {
                    Some(Ok((k, v))) if *k == want && *v == *hash => None,
                    Some(Ok((k, _))) if *k == want => Some(format!(
                        "Merkle tree node (level {level}, index {index}) does not match the events"
                    )),
                    Some(Ok((k, _))) if *k < want[..] => Some(format!(
                        "the store holds Merkle tree node {} that is not in the tree of the events",
                        describe_key(&k)
                    )),
                    Some(Ok(_)) | None => Some(format!("Merkle tree node (level {level}, index {index}) missing")),
                    Some(Err(e)) => Some(format!("Merkle tree node (level {level}, index {index}): {e}")),
                };
            });
            if let Some(detail) = mismatch {
                failure = Some(Failure::new(seq, FailureKind::TreeMismatch, detail));
                break;
            }
        }
        if failure.is_none() {
            // Nothing stored past the tree of the log.
            let size = frontier.size();
            match stored.next() {
                None => {}
                Some(Ok((k, _))) => {
                    failure = Some(Failure::new(
                        size.saturating_sub(1),
                        FailureKind::TreeMismatch,
                        format!(
                            "the store holds Merkle tree node {} past the tree of the log's {size} events",
                            describe_key(&k)
                        ),
                    ));
                }
                Some(Err(e)) => {
                    failure = Some(Failure::new(
                        size.saturating_sub(1),
                        FailureKind::TreeMismatch,
                        format!("reading the Merkle tree past the log's {size} events: {e}"),
                    ));
                }
            }
        }
        Ok(failure)
    }
}

impl Ledger {
    /// The ledger's keys as a verifier holds them (origin, public keys and
    /// the sequence number each took over from), from the log's genesis
    /// and rotations, each checked on its own.
    pub fn key_history(&self) -> Result<KeyHistory> {
        Ok(KeyHistory::from_schedule(&self.ledger_id(), &self.key_schedule()?))
    }

    /// The signed checkpoint (c2sp.org/tlog-checkpoint) of the tree of the
    /// first `size` events, signed with `key`, which must be the log's
    /// current key: a checkpoint signed with a retired key would not verify.
    pub fn checkpoint(&self, size: u64, key: &SigningKey) -> Result<String> {
        let schedule = self.key_schedule()?;
        if key.id() != schedule.current() {
            return Err(Error::InvalidRequest(format!(
                "a checkpoint is signed with the log's current key {}, not key {}",
                schedule.current(),
                key.id()
            )));
        }
        let checkpoint = Checkpoint {
            origin: checkpoint::origin(&self.ledger_id()),
            size,
            root: self.tree_root(size)?,
        };
        Ok(checkpoint.sign(key))
    }

    /// [`Ledger::checkpoint`] with the writer's key (a writing handle).
    pub fn checkpoint_now(&self, size: Option<u64>) -> Result<String> {
        let key = self.writer_key().ok_or(Error::ReadOnly)?;
        self.checkpoint(size.unwrap_or_else(|| self.tree_size()), &key)
    }

    /// The inclusion proof of the event at `seq` in the tree of the first
    /// `size` events, with that tree's checkpoint signed by `key`.
    pub fn prove_inclusion(&self, seq: u64, size: u64, key: &SigningKey) -> Result<InclusionProof> {
        let hashes = self.inclusion_proof(seq, size)?;
        let record = self
            .store()
            .raw(seq)?
            .ok_or_else(|| Error::InvalidRequest(format!("no event at seq {seq}")))?;
        let raw = RawRecord::parse(&record).map_err(|reason| Error::Malformed { seq, reason })?;
        Ok(InclusionProof {
            leaf_data: leaf_data(seq, &raw.hash, &raw.signature),
            event: raw.canonical.to_vec(),
            index: seq,
            hashes,
            checkpoint: self.checkpoint(size, key)?,
        })
    }

    /// The consistency proof from the tree of the first `old` events to the
    /// tree of the first `new`, with the newer tree's checkpoint signed by
    /// `key`.
    pub fn prove_consistency(&self, old: u64, new: u64, key: &SigningKey) -> Result<ConsistencyProof> {
        Ok(ConsistencyProof {
            old,
            hashes: self.consistency_proof(old, new)?,
            checkpoint: self.checkpoint(new, key)?,
        })
    }
}

impl Ledger {
    /// [`Ledger::prove_inclusion`] with the writer's key (a writing handle),
    /// in the tree of the first `size` events (default: every event).
    pub fn prove_inclusion_now(&self, seq: u64, size: Option<u64>) -> Result<InclusionProof> {
        let key = self.writer_key().ok_or(Error::ReadOnly)?;
        self.prove_inclusion(seq, size.unwrap_or_else(|| self.tree_size()), &key)
    }

    /// [`Ledger::prove_consistency`] with the writer's key (a writing handle).
    pub fn prove_consistency_now(&self, old: u64, new: u64) -> Result<ConsistencyProof> {
        let key = self.writer_key().ok_or(Error::ReadOnly)?;
        self.prove_consistency(old, new, &key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored keys sort in the order appends complete the nodes, the
    /// order `check_tree` walks them in, and each names its node.
    #[test]
    fn node_keys_sort_in_completion_order() {
        let mut frontier = Frontier::default();
        let mut keys = Vec::new();
        for i in 0..1000u64 {
            frontier.push([i as u8; 32], |level, index, _| {
                let key = node_key(level, index);
                assert_eq!(key_node(&key), Some((level, index)));
                keys.push(key);
            });
        }
        assert_eq!(
            keys.len() as u32,
            2 * 1000 - 1000u32.count_ones(),
            "every node of every complete subtree"
        );
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "strictly ascending");
        // A level 3 node covers leaves 8..16: its last leaf is 15.
        assert_eq!(node_key(3, 1), [0, 0, 0, 0, 0, 0, 0, 15, 3]);
        assert_eq!(
            key_node(&[0, 0, 0, 0, 0, 0, 0, 14, 3]),
            None,
            "15 is not 2^3 leaves from a boundary"
        );
        assert_eq!(key_node(&[0; 8]), None);
    }
}
