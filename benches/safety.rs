//! Output-safety scanner throughput: how fast `scan`, `redact` and
//! `scan_json` go through a tool result of 1 MiB.
//!
//! Two inputs, both deterministic:
//!
//! - **clean**: prose, code, JSON log lines with ISO timestamps, UUIDs,
//!   hashes, URLs, base64, version numbers and plain numbers — the near
//!   misses every detector must reject — and no finding;
//! - **dense**: the same, with a finding of some detector every ~200 bytes
//!   (each detector in turn).
//!
//! For each it prints MiB/s of `scan`, `scan` + `redact`, and `scan_json` of
//! an MCP result (`{"content":[{"type":"text","text":...}]}`) holding it.
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/sealgate/target
//! cargo bench --bench safety
//! ```
//!
//! The scanner is the library's own (`sealgate::gateway::safety`).

use sealgate::gateway::safety;
use sealgate::json::Json;

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;

const SIZE: usize = 1 << 20;
const MIN_TIME: Duration = Duration::from_secs(2);

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }
}

/// A line that no detector should flag.
fn clean_line(rng: &mut Rng) -> String {
    let n = rng.next();
    match rng.below(10) {
        0 => "The quick brown fox jumps over the lazy dog; the tool returned the requested rows.\n".to_string(),
        1 => format!(
            "{{\"ts\":\"2024-01-{:02}T10:{:02}:00.123456Z\",\"level\":\"info\",\"id\":{},\"msg\":\"request done\"}}\n",
            n % 28 + 1,
            n % 60,
            n % 10_000_000_000_000
        ),
        2 => format!(
            "request {}-{}-4{}-a{}-{} took {} ms\n",
            rng.hex(8),
            rng.hex(4),
            rng.hex(3),
            rng.hex(3),
            rng.hex(12),
            n % 5000
        ),
        3 => format!("commit {} (tag v1.{}.{}-rc.2)\n", rng.hex(40), n % 20, n % 7),
        4 => "    let token_count = tokens.iter().filter(|t| t.kind == Kind::Word).count();\n".to_string(),
        5 => format!("GET https://api.example.com/v2/items?page={}&per_page=100 -> 200\n", n % 500),
        6 => "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\n".to_string(),
        7 => format!(
            "| {:>10} | {:>8} | {:.4} | 192.168.{}.{} |\n",
            n % 100_000_000,
            n % 1_000_000,
            (n % 1000) as f64 / 7.0,
            n % 256,
            (n >> 8) % 256
        ),
        8 => "Ünïcödé text, 日本語のテキスト, emoji 🙂 and a max_tokens: 1024 setting.\n".to_string(),
        _ => format!("blake3:{}\n", rng.hex(64)),
    }
}

/// A line with one finding, of detector `i % 12`.
fn finding_line(i: usize, rng: &mut Rng) -> String {
    let n = rng.next();
    match i % 12 {
        0 => "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7Mhgw\n-----END RSA PRIVATE KEY-----\n".to_string(),
        1 => "auth eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n".to_string(),
        2 => format!("gh token ghp_{}{}\n", rng.hex(32), "AbCd"),
        3 => format!("slack xoxb-{}-{}-AbCdEfGhIjKlMnOpQrStUvWx\n", n % 1_000_000_000_000, n % 10_000_000_000_000),
        4 => "aws id AKIAIOSFODNN7EXAMPLE\n".to_string(),
        5 => "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n".to_string(),
        6 => format!("DB_PASSWORD=s3cr3t{}\n", n % 1000),
        7 => "IBAN DE89 3704 0044 0532 0130 00\n".to_string(),
        8 => "card 4111 1111 1111 1111 exp 12/29\n".to_string(),
        9 => "SSN 123-45-6789\n".to_string(),
        10 => format!("mail user{}@example.com\n", n % 1000),
        _ => format!("call +1 415 555 {:04}\n", n % 10_000),
    }
}

fn build(dense: bool) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut text = String::with_capacity(SIZE + 256);
    let mut i = 0;
    while text.len() < SIZE {
        if dense && text.len() / 200 > i {
            text.push_str(&finding_line(i, &mut rng));
            i += 1;
        } else {
            text.push_str(&clean_line(&mut rng));
        }
    }
    text
}

/// MiB/s of `f` over `bytes`, run for at least [`MIN_TIME`].
fn throughput(bytes: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up: compiles the regexes, fills the DFA caches
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < MIN_TIME || runs < 3 {
        f();
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    bytes as f64 * f64::from(runs) / secs / (1024.0 * 1024.0)
}

fn main() {
    let policy = safety::ScanPolicy {
        secrets: safety::Action::Redact,
        pii: safety::Action::Redact,
    };
    println!(
        "{:<8} {:>9} {:>12} {:>12} {:>14} {:>14}",
        "input", "findings", "scan", "scan+redact", "scan_json", "ms per MiB"
    );
    for (name, dense) in [("clean", false), ("dense", true)] {
        let text = build(dense);
        let findings = safety::scan(&text).len();
        let result = Json::from_serde(&json!({"content": [{"type": "text", "text": text}]}));
        let scan = throughput(text.len(), || {
            black_box(safety::scan(black_box(&text)));
        });
        let redact = throughput(text.len(), || {
            black_box(safety::redact_text_for_log(black_box(&text)));
        });
        let json = throughput(text.len(), || {
            black_box(safety::scan_json(black_box(&result), &policy));
        });
        println!(
            "{name:<8} {findings:>9} {:>7.1} MiB/s {:>7.1} MiB/s {:>9.1} MiB/s {:>14.2}",
            scan,
            redact,
            json,
            1000.0 / scan
        );
    }
}
