//! Generated hostile input for the decoders' property tests (tests only).
//!
//! cargo-fuzz needs a nightly toolchain; these run on stable inside `cargo test`. Each property
//! test feeds its decoder `cases()` inputs: random text, and seeds (valid inputs) cut, spliced,
//! repeated and sprinkled with multi-byte characters, control characters and random bytes. The
//! default keeps `cargo test` quick; `PALAVER_FUZZ_CASES=1000000` runs a million per decoder
//! (README, "Fuzzing"). A failing case is printed before the panic is re-raised, and the seed
//! of the run is fixed by `PALAVER_FUZZ_SEED` (default 1) so a failure can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// How many inputs each property test generates.
pub fn cases() -> usize {
    std::env::var("PALAVER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A generator seeded from `PALAVER_FUZZ_SEED`.
pub fn rng() -> StdRng {
    let seed = std::env::var("PALAVER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    StdRng::seed_from_u64(seed)
}

/// Characters that break code which assumes one byte per character or printable text.
const AWKWARD: [char; 12] = [
    'é', '€', '𝄞', '😀', '\u{0}', '\u{7f}', '\u{202e}', '\u{feff}', '\n', '"', '\\', ',',
];

/// Calls `check` with `cases()` hostile strings made from `seeds`; on a panic, prints the input.
pub fn strings(seeds: &[&str], mut check: impl FnMut(&str)) {
    let mut rng = rng();
    for _ in 0..cases() {
        let input = hostile_string(&mut rng, seeds);
        run_one(&input, || check(&input));
    }
}

/// Calls `check` with `cases()` JSON values: random trees over `keys` and mutations of `seeds`.
pub fn json(keys: &[&str], seeds: &[Value], mut check: impl FnMut(&Value)) {
    let mut rng = rng();
    for i in 0..cases() {
        let v = if i % 2 == 0 || seeds.is_empty() {
            random_value(&mut rng, keys, 0)
        } else {
            let seed = &seeds[rng.gen_range(0..seeds.len())];
            mutate_value(&mut rng, seed, keys)
        };
        let shown = v.to_string();
        run_one(&shown, || check(&v));
    }
}

fn run_one(input: &str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        eprintln!("failing input: {input:?}");
        std::panic::resume_unwind(panic);
    }
}

/// One hostile string.
pub fn hostile_string(rng: &mut StdRng, seeds: &[&str]) -> String {
    match rng.gen_range(0..4) {
        0 => {
            // Random bytes, read as UTF-8 where they are.
            let len = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        1 => (0..rng.gen_range(0..24))
            .map(|_| AWKWARD[rng.gen_range(0..AWKWARD.len())])
            .collect(),
        _ if seeds.is_empty() => String::new(),
        _ => {
            let mut chars: Vec<char> = seeds[rng.gen_range(0..seeds.len())].chars().collect();
            for _ in 0..rng.gen_range(1..6) {
                mutate_chars(rng, &mut chars);
            }
            chars.into_iter().collect()
        }
    }
}

fn mutate_chars(rng: &mut StdRng, chars: &mut Vec<char>) {
    let at = rng.gen_range(0..=chars.len());
    match rng.gen_range(0..5) {
        0 => chars.insert(at, AWKWARD[rng.gen_range(0..AWKWARD.len())]),
        1 if at < chars.len() => {
            let end = rng.gen_range(at..=chars.len());
            chars.drain(at..end);
        }
        2 if at < chars.len() => chars[at] = char::from(rng.gen_range(0x20u8..0x7f)),
        3 => chars.truncate(at),
        _ => {
            // A slice of itself spliced in.
            let from = rng.gen_range(0..=chars.len());
            let piece: Vec<char> = chars[from..].iter().take(16).copied().collect();
            chars.splice(at..at, piece);
        }
    }
}

/// A random JSON tree of depth at most 6 over `keys`.
pub fn random_value(rng: &mut StdRng, keys: &[&str], depth: u32) -> Value {
    let scalar_only = depth > 5 || keys.is_empty();
    match rng.gen_range(0..if scalar_only { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => match rng.gen_range(0..3) {
            0 => serde_json::json!(rng.gen::<i64>()),
            1 => serde_json::json!(rng.gen::<f64>() * 1e12),
            _ => serde_json::json!(rng.gen_range(-2i64..5)),
        },
        3 => Value::String(hostile_string(rng, keys)),
        4 => Value::String(
            keys.get(rng.gen_range(0..keys.len().max(1)))
                .map_or(String::new(), |k| (*k).to_owned()),
        ),
        5 | 6 => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..6) {
                let k = keys[rng.gen_range(0..keys.len())];
                m.insert(k.into(), random_value(rng, keys, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, keys, depth + 1))
                .collect(),
        ),
    }
}

/// `seed` with one of its values (at any depth) replaced by a random one.
pub fn mutate_value(rng: &mut StdRng, seed: &Value, keys: &[&str]) -> Value {
    let mut v = seed.clone();
    replace_one(rng, &mut v, keys);
    v
}

fn replace_one(rng: &mut StdRng, v: &mut Value, keys: &[&str]) {
    let deeper = rng.gen_bool(0.7);
    match v {
        Value::Object(m) if deeper && !m.is_empty() => {
            let i = rng.gen_range(0..m.len());
            if let Some((_, child)) = m.iter_mut().nth(i) {
                replace_one(rng, child, keys);
            }
        }
        Value::Array(a) if deeper && !a.is_empty() => {
            let i = rng.gen_range(0..a.len());
            replace_one(rng, &mut a[i], keys);
        }
        _ => *v = random_value(rng, keys, 3),
    }
}
