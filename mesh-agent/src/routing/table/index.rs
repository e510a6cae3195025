//! A path index over an HTTPRoute table, so that `select` tries only the entries whose path
//! can match instead of walking them all.
//!
//! It relies on the order the table is sorted in: every `Exact` entry, then every
//! `RegularExpression` entry, then the `PathPrefix` entries by length, longest first. The
//! `Exact` entries that can match a path are those with that very path; the `PathPrefix`
//! entries are those whose prefix ends at one of the path's segment boundaries. Walking those
//! boundaries from the longest to the shortest visits prefix entries in table order, because
//! a prefix that contains another (segment-wise) is at least two characters longer even when
//! only one of them was written with a trailing `/`. Within a bucket, entries keep table order.
//! So the first entry that matches is the one a walk over the whole table would find.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use super::Entry;
use crate::routing::matching::PathMatch;

#[derive(Debug)]
pub(super) struct PathIndex {
    exact: HashMap<Box<str>, Vec<usize>, Fnv>,
    regex: Range<usize>,
    /// By prefix without its trailing `/` (empty for `/`).
    prefix: HashMap<Box<str>, Vec<usize>, Fnv>,
}

impl PathIndex {
    /// `None` when the entries are not in the order described above (GRPCRoute tables).
    pub(super) fn build(entries: &[Entry]) -> Option<PathIndex> {
        let mut index = PathIndex {
            exact: HashMap::default(),
            regex: 0..0,
            prefix: HashMap::default(),
        };
        let mut regex: Option<Range<usize>> = None;
        let mut class = 0;
        for (i, entry) in entries.iter().enumerate() {
            let (rank, bucket) = match &entry.matcher.path {
                PathMatch::Exact(path) => (0, Some((&mut index.exact, path))),
                PathMatch::Regex(_) => (1, None),
                PathMatch::Prefix { trimmed, .. } => (2, Some((&mut index.prefix, trimmed))),
                PathMatch::GrpcMethod { .. } => return None,
            };
            if rank < class {
                return None;
            }
            class = rank;
            match bucket {
                Some((map, key)) => map.entry(key.clone()).or_default().push(i),
                None => match &mut regex {
                    Some(range) if range.end == i => range.end = i + 1,
                    Some(_) => return None,
                    None => regex = Some(i..i + 1),
                },
            }
        }
        index.regex = regex.unwrap_or(0..0);
        Some(index)
    }

    /// The first entry, in table order, that can match `path` and for which `hit` holds.
    pub(super) fn first(&self, path: &str, mut hit: impl FnMut(usize) -> bool) -> Option<usize> {
        let in_bucket = |bucket: Option<&Vec<usize>>, hit: &mut dyn FnMut(usize) -> bool| {
            bucket.and_then(|entries| entries.iter().copied().find(|&i| hit(i)))
        };
        if let Some(i) = in_bucket(self.exact.get(path), &mut hit) {
            return Some(i);
        }
        if let Some(i) = self.regex.clone().find(|&i| hit(i)) {
            return Some(i);
        }
        // The path itself (prefix keys never end with '/'), then each shorter boundary.
        if !path.ends_with('/')
            && let Some(i) = in_bucket(self.prefix.get(path), &mut hit)
        {
            return Some(i);
        }
        path.rmatch_indices('/')
            .find_map(|(end, _)| in_bucket(self.prefix.get(&path[..end]), &mut hit))
    }
}

/// FNV-1a: paths are short and table keys come from the configuration, so a simple, fast hash
/// beats the default SipHash here.
type Fnv = BuildHasherDefault<FnvHasher>;

#[derive(Debug)]
pub(super) struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
