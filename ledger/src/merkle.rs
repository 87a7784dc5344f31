//! The Merkle tree over the log (RFC 6962 / RFC 9162, SHA-256): leaf and
//! node hashing, the writer's right edge, proof construction over stored
//! nodes, and proof verification that needs no ledger.
//!
//! Leaf `i` is event `seq = i`. Its leaf data binds the tree to the hash
//! chain: `seq (u64 BE) ‖ event hash (BLAKE3, 32) ‖ signature (Ed25519,
//! 64)`, 104 bytes (`docs/FORMAT.md`, "The Merkle tree").

use sha2::{Digest, Sha256};

use crate::event::Hash;

/// A SHA-256 tree hash.
pub type TreeHash = [u8; 32];

/// Bytes of one leaf's data: `seq ‖ event hash ‖ signature`.
pub const LEAF_DATA_LEN: usize = 8 + 32 + 64;

/// The leaf data of the event at `seq` with chain hash `hash` and
/// signature `signature`.
pub fn leaf_data(seq: u64, hash: &Hash, signature: &[u8; 64]) -> [u8; LEAF_DATA_LEN] {
    let mut out = [0u8; LEAF_DATA_LEN];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..40].copy_from_slice(&hash.0);
    out[40..].copy_from_slice(signature);
    out
}

/// Splits leaf data back into `(seq, event hash, signature)`.
pub fn parse_leaf_data(data: &[u8]) -> Option<(u64, Hash, [u8; 64])> {
    if data.len() != LEAF_DATA_LEN {
        return None;
    }
    let seq = u64::from_be_bytes(data[..8].try_into().ok()?);
    let hash = Hash(data[8..40].try_into().ok()?);
    let sig: [u8; 64] = data[40..].try_into().ok()?;
    Some((seq, hash, sig))
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> TreeHash {
    Sha256::digest([]).into()
}

/// The right edge of a tree: the roots of the perfect subtrees it is made
/// of, largest (leftmost) first. Appending a leaf completes the subtrees
/// it closes, which are new nodes to store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    size: u64,
    peaks: Vec<TreeHash>,
}

impl Frontier {
    /// The right edge of a tree of `size` leaves, given its peaks (the
    /// perfect subtrees of [`peak_ranges`]`(size)`, in order).
    pub(crate) fn from_peaks(size: u64, peaks: Vec<TreeHash>) -> Option<Frontier> {
        (peaks.len() == size.count_ones() as usize).then_some(Frontier { size, peaks })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `node` is told every node this completes as
    /// `(level, index, hash)`, the leaf itself first (level 0).
    pub(crate) fn push(&mut self, leaf: TreeHash, mut node: impl FnMut(u8, u64, &TreeHash)) {
        let mut index = self.size;
        let mut level = 0u8;
        let mut hash = leaf;
        node(level, index, &hash);
        while index & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            node(level, index, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The root of the tree so far.
    #[cfg(test)]
    pub(crate) fn root(&self) -> TreeHash {
        fold_peaks(&self.peaks)
    }
}

/// RFC 6962 hashes the tree's peaks together from the right.
fn fold_peaks(peaks: &[TreeHash]) -> TreeHash {
    let mut it = peaks.iter().rev();
    match it.next() {
        None => empty_root(),
        Some(last) => it.fold(*last, |acc, p| node_hash(p, &acc)),
    }
}

/// The perfect subtrees `[a, b)` splits into, as `(level, index)` of
/// stored nodes, left to right. `a` must be aligned as RFC 6962's
/// recursion aligns it (a multiple of the largest block that fits).
fn blocks(a: u64, b: u64) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    let mut at = a;
    while at < b {
        let mut level = 63u32.min(if at == 0 { 63 } else { at.trailing_zeros() });
        while level > 0 && (1u64 << level) > b - at {
            level -= 1;
        }
        out.push((level as u8, at >> level));
        at += 1u64 << level;
    }
    out
}

/// The perfect subtrees of a tree of `size` leaves (its peaks), as
/// `(level, index)`.
pub(crate) fn peak_ranges(size: u64) -> Vec<(u8, u64)> {
    blocks(0, size)
}

/// The largest power of two smaller than `n` (`n > 1`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Reads stored nodes to hash ranges of leaves.
pub(crate) struct Nodes<'a, E> {
    pub(crate) get: &'a dyn Fn(u8, u64) -> Result<TreeHash, E>,
}

impl<E> Nodes<'_, E> {
    /// RFC 6962's `MTH(D[a:b])`: one read per perfect block.
    pub(crate) fn range(&self, a: u64, b: u64) -> Result<TreeHash, E> {
        let peaks = blocks(a, b)
            .into_iter()
            .map(|(level, index)| (self.get)(level, index))
            .collect::<Result<Vec<_>, E>>()?;
        Ok(fold_peaks(&peaks))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves
    /// (RFC 9162 2.1.3.1), from the leaf's sibling up.
    pub(crate) fn inclusion(&self, index: u64, size: u64) -> Result<Vec<TreeHash>, E> {
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out)?;
        Ok(out)
    }

    fn path(&self, m: u64, a: u64, b: u64, out: &mut Vec<TreeHash>) -> Result<(), E> {
        if b - a <= 1 {
            return Ok(());
        }
        let k = split(b - a);
        if m < a + k {
            self.path(m, a, a + k, out)?;
            out.push(self.range(a + k, b)?);
        } else {
            self.path(m, a + k, b, out)?;
            out.push(self.range(a, a + k)?);
        }
        Ok(())
    }

    /// The consistency proof from the tree of `old` leaves to the tree of
    /// `new` (RFC 9162 2.1.4.1); empty when `old == new`.
    pub(crate) fn consistency(&self, old: u64, new: u64) -> Result<Vec<TreeHash>, E> {
        let mut out = Vec::new();
        if 0 < old && old < new {
            self.subproof(old, 0, new, true, &mut out)?;
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<TreeHash>) -> Result<(), E> {
        let n = b - a;
        if m == n {
            if !complete {
                out.push(self.range(a, b)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, a, a + k, complete, out)?;
            out.push(self.range(a + k, b)?);
        } else {
            self.subproof(m - k, a + k, b, false, out)?;
            out.push(self.range(a, a + k)?);
        }
        Ok(())
    }

    /// The range proof of leaves `[a, b)` in the tree of `size` leaves:
    /// the hashes of the RFC 6962 recursion's nodes that hold none of the
    /// range's leaves and whose parents hold some, left to right. With
    /// the range's own leaves they give the root, so the range is shown
    /// whole and in place: no leaf in it can be left out, added or moved.
    pub(crate) fn range_proof(&self, a: u64, b: u64, size: u64) -> Result<Vec<TreeHash>, E> {
        let mut out = Vec::new();
        if a < b && b <= size {
            self.cover(a, b, 0, size, &mut out)?;
        }
        Ok(out)
    }

    fn cover(&self, a: u64, b: u64, lo: u64, hi: u64, out: &mut Vec<TreeHash>) -> Result<(), E> {
        if b <= lo || hi <= a {
            out.push(self.range(lo, hi)?);
        } else if !(a <= lo && hi <= b) {
            let k = split(hi - lo);
            self.cover(a, b, lo, lo + k, out)?;
            self.cover(a, b, lo + k, hi, out)?;
        }
        Ok(())
    }
}

/// Why a Merkle proof does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The index or sizes are out of range, or the proof has the wrong
    /// number of hashes for them.
    Shape(String),
    /// The proof leads to another root.
    RootMismatch,
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Shape(s) => f.write_str(s),
            ProofError::RootMismatch => f.write_str("the proof leads to another root"),
        }
    }
}

/// The root an inclusion proof leads to (RFC 9162 2.1.3.2).
pub fn root_from_inclusion(leaf: &TreeHash, index: u64, size: u64, proof: &[TreeHash]) -> Result<TreeHash, ProofError> {
    if index >= size {
        return Err(ProofError::Shape(format!(
            "leaf index {index} is not in a tree of {size} leaves"
        )));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::Shape(format!(
                "the inclusion proof of leaf {index} in a tree of {size} has too many hashes ({})",
                proof.len()
            )));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Shape(format!(
            "the inclusion proof of leaf {index} in a tree of {size} has too few hashes ({})",
            proof.len()
        )));
    }
    Ok(r)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose
/// root is `root`.
pub fn verify_inclusion(
    leaf: &TreeHash,
    index: u64,
    size: u64,
    proof: &[TreeHash],
    root: &TreeHash,
) -> Result<(), ProofError> {
    if root_from_inclusion(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of
/// the tree of `new` leaves with root `new_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &TreeHash,
    new_root: &TreeHash,
    proof: &[TreeHash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Shape(format!(
            "the old tree ({old} leaves) is larger than the new one ({new})"
        )));
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::Shape("a proof between equal sizes must be empty".into()));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        return Err(ProofError::Shape(
            "no consistency proof starts from the empty tree".into(),
        ));
    }
    if proof.is_empty() {
        return Err(ProofError::Shape(format!(
            "the consistency proof from {old} to {new} leaves is empty"
        )));
    }
    let mut path: Vec<TreeHash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::Shape(format!(
                "the consistency proof from {old} to {new} leaves has too many hashes ({})",
                proof.len()
            )));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Shape(format!(
            "the consistency proof from {old} to {new} leaves has too few hashes ({})",
            proof.len()
        )));
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The root that the leaves `[a, a + leaves.len())` and their range proof
/// ([`Nodes::range_proof`]) lead to in the tree of `size` leaves.
pub fn root_from_range(leaves: &[TreeHash], a: u64, size: u64, proof: &[TreeHash]) -> Result<TreeHash, ProofError> {
    let b = a
        .checked_add(leaves.len() as u64)
        .filter(|b| *b > a && *b <= size)
        .ok_or_else(|| {
            ProofError::Shape(format!(
                "{} leaves from index {a} are not a range of a tree of {size} leaves",
                leaves.len()
            ))
        })?;
    let mut given = proof.iter();
    let root = range_root(leaves, a, b, 0, size, &mut given)?;
    if given.next().is_some() {
        return Err(ProofError::Shape(format!(
            "the range proof of [{a}, {b}) in a tree of {size} has too many hashes ({})",
            proof.len()
        )));
    }
    Ok(root)
}

fn range_root<'a>(
    leaves: &[TreeHash],
    a: u64,
    b: u64,
    lo: u64,
    hi: u64,
    given: &mut impl Iterator<Item = &'a TreeHash>,
) -> Result<TreeHash, ProofError> {
    if b <= lo || hi <= a {
        return given
            .next()
            .copied()
            .ok_or_else(|| ProofError::Shape(format!("the range proof of [{a}, {b}) has too few hashes")));
    }
    if hi - lo == 1 {
        return Ok(leaves[(lo - a) as usize]);
    }
    let k = split(hi - lo);
    let left = range_root(leaves, a, b, lo, lo + k, given)?;
    let right = range_root(leaves, a, b, lo + k, hi, given)?;
    Ok(node_hash(&left, &right))
}

/// Checks that `leaves` are the tree's leaves `[a, a + leaves.len())`, all
/// of them and in order, in the tree of `size` leaves whose root is `root`.
pub fn verify_range(
    leaves: &[TreeHash],
    a: u64,
    size: u64,
    proof: &[TreeHash],
    root: &TreeHash,
) -> Result<(), ProofError> {
    if root_from_range(leaves, a, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// RFC 6962's definition, straight: `MTH(D[a:b])`.
    fn mth(leaves: &[TreeHash]) -> TreeHash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<TreeHash>, HashMap<(u8, u64), TreeHash>, Frontier) {
        let leaves: Vec<TreeHash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut nodes = HashMap::new();
        let mut f = Frontier::default();
        for l in &leaves {
            f.push(*l, |level, index, h| {
                assert!(
                    nodes.insert((level, index), *h).is_none(),
                    "node ({level}, {index}) made twice"
                );
            });
        }
        (leaves, nodes, f)
    }

    #[test]
    fn roots_and_nodes_match_the_rfc_definition() {
        let (leaves, nodes, _) = build(70);
        let get = |l: u8, i: u64| nodes.get(&(l, i)).copied().ok_or(format!("no node ({l}, {i})"));
        let store = Nodes { get: &get };
        let mut f = Frontier::default();
        for n in 1..=70u64 {
            f.push(leaves[n as usize - 1], |_, _, _| {});
            let want = mth(&leaves[..n as usize]);
            assert_eq!(f.root(), want, "frontier root at {n}");
            assert_eq!(store.range(0, n).expect("range"), want, "stored root at {n}");
            let peaks = peak_ranges(n).into_iter().map(|(l, i)| nodes[&(l, i)]).collect();
            assert_eq!(Frontier::from_peaks(n, peaks).expect("peaks").root(), want);
        }
        assert_eq!(empty_root(), mth(&[]));
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_none_other() {
        let (leaves, nodes, _) = build(40);
        let get = |l: u8, i: u64| nodes.get(&(l, i)).copied().ok_or(format!("no node ({l}, {i})"));
        let store = Nodes { get: &get };
        for size in 1..=40u64 {
            let root = mth(&leaves[..size as usize]);
            for index in 0..size {
                let proof = store.inclusion(index, size).expect("proof");
                assert_eq!(
                    verify_inclusion(&leaves[index as usize], index, size, &proof, &root),
                    Ok(()),
                    "leaf {index} of {size}"
                );
                let other = (index + 1) % size;
                if other != index {
                    assert!(verify_inclusion(&leaves[other as usize], index, size, &proof, &root).is_err());
                }
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert_ne!(first, &bad[0]);
                    assert!(verify_inclusion(&leaves[index as usize], index, size, &bad, &root).is_err());
                }
            }
            for old in 1..=size {
                let old_root = mth(&leaves[..old as usize]);
                let proof = store.consistency(old, size).expect("proof");
                assert_eq!(
                    verify_consistency(old, size, &old_root, &root, &proof),
                    Ok(()),
                    "{old} -> {size}"
                );
                if old < size {
                    let wrong = leaf_hash(b"not the old root");
                    assert!(verify_consistency(old, size, &wrong, &root, &proof).is_err());
                    let mut bad = proof.clone();
                    let last = bad.len() - 1;
                    bad[last][31] ^= 0x80;
                    assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
                }
            }
        }
    }

    /// Every range of every tree up to 40 leaves proves itself whole and in
    /// place; the same proof refuses the range with a leaf left out, added,
    /// changed, or two swapped, or moved by one, and a proof with a hash
    /// more or less. Range proofs are O(log n): at most 2 log2(n) hashes.
    #[test]
    fn every_range_proof_verifies_and_none_other() {
        let (leaves, nodes, _) = build(40);
        let get = |l: u8, i: u64| nodes.get(&(l, i)).copied().ok_or(format!("no node ({l}, {i})"));
        let store = Nodes { get: &get };
        for size in 1..=40u64 {
            let root = mth(&leaves[..size as usize]);
            let bound = 2 * (64 - size.leading_zeros()) as usize;
            for a in 0..size {
                for b in a + 1..=size {
                    let range = &leaves[a as usize..b as usize];
                    let proof = store.range_proof(a, b, size).expect("proof");
                    assert!(proof.len() <= bound, "[{a}, {b}) of {size}: {} hashes", proof.len());
                    assert_eq!(
                        verify_range(range, a, size, &proof, &root),
                        Ok(()),
                        "[{a}, {b}) of {size}"
                    );
                    if b - a > 1 {
                        let short = &range[..range.len() - 1];
                        assert!(verify_range(short, a, size, &proof, &root).is_err(), "one left out");
                        let mut swapped = range.to_vec();
                        swapped.swap(0, 1);
                        assert!(verify_range(&swapped, a, size, &proof, &root).is_err(), "two swapped");
                    }
                    if b < size {
                        let mut longer = range.to_vec();
                        longer.push(leaves[b as usize]);
                        assert!(verify_range(&longer, a, size, &proof, &root).is_err(), "one added");
                        assert!(verify_range(range, a + 1, size, &proof, &root).is_err(), "moved by one");
                    }
                    let mut changed = range.to_vec();
                    changed[0][0] ^= 1;
                    assert!(verify_range(&changed, a, size, &proof, &root).is_err(), "one changed");
                    let mut more = proof.clone();
                    more.push(root);
                    assert!(verify_range(range, a, size, &more, &root).is_err(), "a hash more");
                    if !proof.is_empty() {
                        assert!(verify_range(range, a, size, &proof[1..], &root).is_err(), "a hash less");
                    }
                }
            }
        }
        assert!(
            root_from_range(&[], 0, 4, &[]).is_err(),
            "an empty range proves nothing"
        );
        assert!(root_from_range(&leaves[..3], 2, 4, &[]).is_err(), "past the tree's end");
    }
}
