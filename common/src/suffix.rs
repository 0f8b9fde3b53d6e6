//! Building the `PATH_SUFFIXES` keys of a file name without a loop, shared
//! by the kernel (which runs it on every filtered open) and the agent's
//! tests (which check it against a plain byte-by-byte scan).
//!
//! The kernel holds the name's last 16 bytes in two 64-bit words; one byte
//! swap puts them last byte first (the key layout, see [`crate::SuffixKey`]),
//! and word-wide byte comparisons find the last `/` and `.` with no branch
//! per byte. BPF has no count-trailing-zeros instruction, hence the small
//! comparison tree in [`lowest_byte`].

use crate::SUFFIX_KEY_LEN;

/// Both keys of a name: its last 16 bytes up to the last `/`, last byte
/// first; and, when a `.` comes before that within 17 bytes of the end (and
/// is not the last byte), the lower-cased bytes after it. NUL-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailKeys {
    pub basename: [u8; SUFFIX_KEY_LEN],
    pub extension: [u8; SUFFIX_KEY_LEN],
    /// 0 when the name has no extension the kernel can test.
    pub extension_len: u32,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const KEY: u32 = SUFFIX_KEY_LEN as u32;

/// High bit of every byte of `word` equal to `byte`. Exact for the lowest
/// such byte (a borrow can only mark bytes above a match), the only one
/// used.
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Index (0-7) of the lowest byte whose high bit is set in `mask`, or 8.
#[inline(always)]
fn lowest_byte(mask: u64) -> u32 {
    if mask == 0 {
        return 8;
    }
    let low = mask & mask.wrapping_neg();
    let mut index = 0;
    if low > 0xffff_ffff {
        index += 4;
    }
    if low & 0xffff_0000_ffff_0000 != 0 {
        index += 2;
    }
    if low & 0xff00_ff00_ff00_ff00 != 0 {
        index += 1;
    }
    index
}

/// Index (0-15) of the first `byte` in a key held as two words, or 16.
#[inline(always)]
fn first_in(key: (u64, u64), byte: u8) -> u32 {
    let low = lowest_byte(bytes_equal(key.0, byte));
    if low < 8 {
        low
    } else {
        8 + lowest_byte(bytes_equal(key.1, byte))
    }
}

/// The first `n` bytes (0-16) of a key held as two words.
#[inline(always)]
fn keep_bytes(words: (u64, u64), n: u32) -> (u64, u64) {
    let mask = |bytes: u32| -> u64 {
        if bytes == 0 {
            0
        } else if bytes >= 8 {
            u64::MAX
        } else {
            (1u64 << (bytes * 8)) - 1
        }
    };
    if n >= 8 {
        (words.0, words.1 & mask(n - 8))
    } else {
        (words.0 & mask(n), 0)
    }
}

/// ASCII upper case to lower case in every byte of `word`.
#[inline(always)]
fn lowercase(word: u64) -> u64 {
    let low7 = word & !HIGHS;
    let at_least_a = low7.wrapping_add(ONES * (0x80 - b'A' as u64));
    let past_z = low7.wrapping_add(ONES * (0x80 - b'Z' as u64 - 1));
    let upper = at_least_a & !past_z & !word & HIGHS;
    word | (upper >> 2)
}

#[inline(always)]
fn key_bytes(words: (u64, u64)) -> [u8; SUFFIX_KEY_LEN] {
    let (a, b) = (words.0.to_le_bytes(), words.1.to_le_bytes());
    [
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5], b[6],
        b[7],
    ]
}

/// What [`tail_keys`] takes, from a name of `len` bytes (1 to 31) held at
/// the start of a 32-byte buffer given as its four little-endian words: the
/// kernel's loads of a dentry's inline name. Shifts in registers, no loop
/// and no indexing by `len`, so that the verifier sees constant loads only.
#[inline(always)]
pub fn inline_tail(words: [u64; 4], len: usize) -> (u64, u64, u8) {
    if len <= SUFFIX_KEY_LEN {
        return (words[0], words[1], 0);
    }
    // The 16 bytes from `start` (1 to 15), and the byte before them.
    let start = len - SUFFIX_KEY_LEN;
    let (a, b, c) = if start < 8 {
        (words[0], words[1], words[2])
    } else {
        (words[1], words[2], words[3])
    };
    let shift = ((start % 8) * 8) as u32;
    // `(upper << 1) << (63 - shift)` is `upper << (64 - shift)`, and stays
    // defined (zero) when `shift` is 0.
    let join = |lower: u64, upper: u64| lower >> shift | (upper << 1) << (63 - shift);
    let before = start - 1;
    let before_word = if before < 8 { words[0] } else { words[1] };
    let before_tail = (before_word >> ((before % 8) * 8)) as u8;
    (join(a, b), join(b, c), before_tail)
}

/// The keys of a name of `len` bytes (`len > 0`), from:
/// - `low`, `high`: 16 bytes of the name as little-endian words: the 16
///   ending at its last byte, or its first 16 when it is shorter (bytes
///   past the end are ignored);
/// - `before_tail`: the byte 17th from the end (any value when `len <= 16`).
#[inline(always)]
pub fn tail_keys(low: u64, high: u64, len: usize, before_tail: u8) -> TailKeys {
    let (mut low, mut high) = (low, high);
    if len < SUFFIX_KEY_LEN {
        // Move the name's last byte to byte 15 of the 128-bit tail.
        let shift = ((SUFFIX_KEY_LEN - len) * 8) as u32;
        if shift >= 64 {
            high = low << (shift - 64);
            low = 0;
        } else {
            high = (high << shift) | (low >> (64 - shift));
            low <<= shift;
        }
    }
    // Last byte first: byte j of the key is the (j+1)th byte from the end.
    let key = (high.swap_bytes(), low.swap_bytes());
    let available = if len < SUFFIX_KEY_LEN {
        len as u32
    } else {
        KEY
    };
    let slash = first_in(key, b'/');
    let basename_len = if slash < available { slash } else { available };
    let mut dot = first_in(key, b'.');
    if dot >= basename_len {
        // No dot in the base name's last 16 bytes; a dot right before a
        // full-length tail still starts an extension.
        dot = if basename_len == KEY && len > SUFFIX_KEY_LEN && before_tail == b'.' {
            KEY
        } else {
            KEY + 1
        };
    }
    let extension_len = if dot > 0 && dot <= KEY { dot } else { 0 };
    TailKeys {
        basename: key_bytes(keep_bytes(key, basename_len)),
        extension: key_bytes(keep_bytes(
            (lowercase(key.0), lowercase(key.1)),
            extension_len,
        )),
        extension_len,
    }
}
