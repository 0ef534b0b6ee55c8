//! The crash test's records.
//!
//! **Records are self-describing.** Everything but the `clock` is a deterministic
//! function of (child seed, thread, seq), so the checker recomputes the key, the
//! durability, the padding length and the padding bytes:
//!
//! ```text
//! {generation}|{thread}|{seq}|{durable 0/1}|{clock c0,c1,..}|{padding length}|{padding}
//! ```
//!
//! `clock[t]` is, for the record's shard, 1 + the seq of thread `t`'s latest append
//! to that shard that had *returned* before this append was submitted (0: none). The
//! padding is an xorshift stream seeded by a hash of the header, so a changed byte
//! anywhere is detected.

use bytes::Bytes;
use std::collections::HashMap;

/// Keys shared by every thread of the child.
pub(super) const KEYS: u64 = 32;

/// splitmix64's finalizer: a well-mixed 64-bit hash of `x`.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A tiny xorshift64* generator.
pub struct XorShift(u64);

impl XorShift {
    /// A generator whose stream depends on every bit of `seed`.
    pub fn new(seed: u64) -> XorShift {
        XorShift(mix(seed) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// FNV-1a of `bytes`: seeds the padding from the header.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The key bytes of key number `index`.
pub(super) fn key_bytes(index: u64) -> Vec<u8> {
    format!("crash-key-{index:02}").into_bytes()
}

/// The key number of key bytes, if they are one of ours.
pub(super) fn key_index(key: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(key.strip_prefix(b"crash-key-")?).ok()?;
    let index: u64 = digits.parse().ok()?;
    (index < KEYS && key_bytes(index) == key).then_some(index)
}

/// The documented routing (docs/FORMAT.md): `xxh3_64(key, seed 0) % shards`.
pub(super) fn shard_of(key: &[u8], shards: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % shards as u64) as usize
}

/// What a child with a given seed writes as record `seq` of thread `thread`, apart
/// from the clock.
#[derive(Clone, Copy)]
pub(super) struct Plan {
    pub(super) seed: u64,
}

impl Plan {
    fn draw(self, thread: usize, seq: u64, salt: u64) -> u64 {
        mix(self.seed ^ mix((thread as u64) << 48 ^ seq ^ mix(salt)))
    }

    pub(super) fn key(self, thread: usize, seq: u64) -> u64 {
        self.draw(thread, seq, 1) % KEYS
    }

    /// Thread `t` appends durably one record in `2 + t % 8` on average.
    pub(super) fn durable(self, thread: usize, seq: u64) -> bool {
        self.draw(thread, seq, 2)
            .is_multiple_of(2 + thread as u64 % 8)
    }

    /// Mostly 0..=120 bytes; one record in 32 is 2000..=9000 bytes (crosses pages).
    fn padding_len(self, thread: usize, seq: u64) -> usize {
        let r = self.draw(thread, seq, 3);
        (if r.is_multiple_of(32) {
            2000 + (r >> 8) % 7001
        } else {
            (r >> 8) % 121
        }) as usize
    }
}

fn padding(header: &[u8], len: usize) -> impl Iterator<Item = u8> {
    let mut rng = XorShift::new(fnv1a(header));
    (0..len).map(move |_| (rng.next_u64() >> 56) as u8)
}

pub(super) fn encode(generation: u64, thread: usize, seq: u64, plan: Plan, clock: &[u64]) -> Bytes {
    let clock: Vec<String> = clock.iter().map(u64::to_string).collect();
    let pad = plan.padding_len(thread, seq);
    let durable = u8::from(plan.durable(thread, seq));
    let mut value = format!(
        "{generation}|{thread}|{seq}|{durable}|{}|{pad}|",
        clock.join(",")
    )
    .into_bytes();
    let header_len = value.len();
    value.extend(padding(&value[..header_len], pad));
    Bytes::from(value)
}

/// A parsed record value.
pub(super) struct Parsed {
    pub(super) generation: u64,
    pub(super) thread: usize,
    pub(super) seq: u64,
    pub(super) durable: bool,
    pub(super) clock: Vec<u64>,
}

/// Why a value read back is not one the child wrote: foreign bytes.
#[derive(Debug, thiserror::Error)]
pub(super) enum Foreign {
    #[error("fewer than 6 header fields")]
    ShortHeader,
    #[error("header is not UTF-8")]
    HeaderNotUtf8,
    #[error("field {field} {text:?} is not a number")]
    NotANumber { field: usize, text: String },
    #[error("durable flag {0:?}")]
    DurableFlag(String),
    #[error("clock entry {0:?}")]
    ClockEntry(String),
    #[error("generation {0} was never written")]
    UnknownGeneration(u64),
    #[error("thread {thread} / clock of {clock} entries")]
    Thread { thread: usize, clock: usize },
    #[error("record {}/{}/{} under the wrong key", .0.generation, .0.thread, .0.seq)]
    WrongKey(RecordId),
    #[error("record {}/{}/{}: durability or length differs", .0.generation, .0.thread, .0.seq)]
    WrongShape(RecordId),
    #[error("record {}/{}/{}: padding differs", .0.generation, .0.thread, .0.seq)]
    WrongPadding(RecordId),
}

/// Which record a value claims to be.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordId {
    generation: u64,
    thread: usize,
    seq: u64,
}

/// Parses and verifies a value against `plan` (looked up by its generation) and the
/// key it was read under.
pub(super) fn parse(
    value: &[u8],
    key: u64,
    threads: usize,
    plans: &HashMap<u64, Plan>,
) -> Result<Parsed, Foreign> {
    let mut bars = value.iter().enumerate().filter(|(_, &b)| b == b'|');
    let header_end = bars.nth(5).ok_or(Foreign::ShortHeader)?.0 + 1;
    let header = std::str::from_utf8(&value[..header_end]).map_err(|_| Foreign::HeaderNotUtf8)?;
    let fields: Vec<&str> = header[..header_end - 1].split('|').collect();
    let num = |field: usize| -> Result<u64, Foreign> {
        fields[field].parse().map_err(|_| Foreign::NotANumber {
            field,
            text: fields[field].to_string(),
        })
    };
    let generation = num(0)?;
    let thread = num(1)? as usize;
    let seq = num(2)?;
    let durable = match fields[3] {
        "0" => false,
        "1" => true,
        other => return Err(Foreign::DurableFlag(other.to_string())),
    };
    let clock = fields[4]
        .split(',')
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| Foreign::ClockEntry(c.to_string()))
        })
        .collect::<Result<Vec<u64>, Foreign>>()?;
    let pad = num(5)? as usize;
    let plan = plans
        .get(&generation)
        .ok_or(Foreign::UnknownGeneration(generation))?;
    if thread >= threads || clock.len() != threads {
        return Err(Foreign::Thread {
            thread,
            clock: clock.len(),
        });
    }
    let id = RecordId {
        generation,
        thread,
        seq,
    };
    if plan.key(thread, seq) != key {
        return Err(Foreign::WrongKey(id));
    }
    if plan.durable(thread, seq) != durable || plan.padding_len(thread, seq) != pad {
        return Err(Foreign::WrongShape(id));
    }
    let body = &value[header_end..];
    if body.len() != pad || !body.iter().copied().eq(padding(&value[..header_end], pad)) {
        return Err(Foreign::WrongPadding(id));
    }
    Ok(Parsed {
        generation,
        thread,
        seq,
        durable,
        clock,
    })
}
