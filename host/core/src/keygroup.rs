//! Key groups: the stable hash that assigns a key to one of `max_parallelism` groups,
//! and the contiguous ranges of groups each subtask owns. Keyed state is organized by
//! key group, not by subtask, so a job can be rescaled; checkpoints store the group of
//! every entry, so the hash and the ranges must never change. The tests pin them.

use std::ops::Range;

/// The 64-bit hash of `key` that key groups come from: FNV-1a, then the murmur3
/// finalizer to spread the low bits. Part of the checkpoint format.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The key group of `key`: its stable hash modulo the number of key groups. Key groups,
/// not subtasks, are what keyed state is organized by, so a job can be rescaled.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (key_hash(key) % u64::from(max_parallelism)) as u32
}

/// The subtask owning key group `group`: subtask `i` of `p` owns the contiguous range
/// [`key_group_range`] returns.
pub fn subtask_of(group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn key_group_range(subtask: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let (s, p, m) = (
        u64::from(subtask),
        u64::from(parallelism),
        u64::from(max_parallelism),
    );
    let start = (s * m).div_ceil(p);
    let end = ((s + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key, hash, and its key group for max parallelism 128, 1, 7 and 32768.
    type Golden = (&'static [u8], u64, u32, u32, u32, u32);

    /// These values are in every checkpoint written so far: a change here breaks
    /// restoring.
    const GOLDEN: [Golden; 10] = [
        (b"", 0xecba_3df2_c338_3c52, 82, 0, 0, 15442),
        (b"a", 0xed81_70de_1919_a24d, 77, 0, 0, 8781),
        (b"customer-1", 0xc587_25f6_af11_5f61, 97, 0, 0, 24417),
        (b"customer-2", 0x27f8_7039_483a_cc8f, 15, 0, 1, 19599),
        (b"k0", 0xb89c_0eae_02b3_fd3e, 62, 0, 5, 32062),
        (b"k999", 0x7d52_beab_a2ec_a875, 117, 0, 3, 10357),
        (b"user:42", 0xfab7_58fb_a991_252d, 45, 0, 5, 9517),
        (b"\x00", 0x9091_d607_2657_4ae6, 102, 0, 4, 19174),
        (b"\xff\xfe\xfd", 0xe84c_d581_80d9_b452, 82, 0, 6, 13394),
        ("Zürich".as_bytes(), 0x578a_6079_3786_6f40, 64, 0, 5, 28480),
    ];

    #[test]
    fn hashes_and_key_groups_match_the_golden_values() {
        for (key, hash, g128, g1, g7, g32768) in GOLDEN {
            let shown = String::from_utf8_lossy(key);
            assert_eq!(key_hash(key), hash, "hash of {shown:?}");
            assert_eq!(key_group(key, 128), g128, "group of {shown:?} of 128");
            assert_eq!(key_group(key, 1), g1, "group of {shown:?} of 1");
            assert_eq!(key_group(key, 7), g7, "group of {shown:?} of 7");
            assert_eq!(key_group(key, 32768), g32768, "group of {shown:?} of 32768");
        }
    }

    #[test]
    fn key_group_ranges_match_the_golden_boundaries() {
        // (parallelism, max parallelism, where each subtask's range starts; the last
        // one ends at max parallelism).
        let golden: [(u32, u32, &[u32]); 10] = [
            (1, 128, &[0]),
            (2, 128, &[0, 64]),
            (3, 128, &[0, 43, 86]),
            (4, 128, &[0, 32, 64, 96]),
            (5, 128, &[0, 26, 52, 77, 103]),
            (7, 128, &[0, 19, 37, 55, 74, 92, 110]),
            (3, 10, &[0, 4, 7]),
            (4, 1000, &[0, 250, 500, 750]),
            (6, 32768, &[0, 5462, 10923, 16384, 21846, 27307]),
            (
                16,
                128,
                &[
                    0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
                ],
            ),
        ];
        for (p, m, starts) in golden {
            assert_eq!(starts.len(), p as usize);
            for (s, &start) in starts.iter().enumerate() {
                let end = starts.get(s + 1).copied().unwrap_or(m);
                assert_eq!(
                    key_group_range(s as u32, p, m),
                    start..end,
                    "subtask {s} of {p}/{m}"
                );
            }
        }
        // At 100 of 128, the first subtasks own one or two groups each.
        let first: Vec<_> = (0..8).map(|s| key_group_range(s, 100, 128)).collect();
        assert_eq!(first, [0..2, 2..3, 3..4, 4..6, 6..7, 7..8, 8..9, 9..11]);
        assert_eq!(key_group_range(99, 100, 128), 127..128);
        assert_eq!(key_group_range(127, 128, 128), 127..128);
    }

    #[test]
    fn key_group_ranges_cover_every_group_once() {
        for p in [1, 2, 3, 4, 7, 128] {
            let mut next = 0;
            for s in 0..p {
                let range = key_group_range(s, p, 128);
                assert_eq!(range.start, next);
                for g in range.clone() {
                    assert_eq!(subtask_of(g, p, 128), s, "group {g} at p={p}");
                }
                next = range.end;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn key_groups_are_stable_and_spread() {
        assert_eq!(key_group(b"customer-1", 128), key_group(b"customer-1", 128));
        let groups: std::collections::HashSet<u32> = (0..1000)
            .map(|i| key_group(format!("k{i}").as_bytes(), 128))
            .collect();
        assert!(groups.len() > 100, "only {} groups used", groups.len());
    }
}
