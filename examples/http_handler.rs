//! An HTTP-handler style use of claims: requests carry an `Idempotency-Key`, the handler calls a
//! payment provider (an effect outside the store) once per key, and retries get the stored
//! response back, as Stripe's idempotency keys behave.
//!
//! - a retry of a completed request replays its response (`Idempotent-Replayed: true`);
//! - a retry while the first attempt is still running gets `409 Conflict` (retry later);
//! - the same key with another body gets `422` (the key was reused for another request);
//! - a failed attempt releases its claim, so the retry runs the effect again.
//!
//! `cargo run --release --example http_handler`

use dedupstore::{ClaimOutcome, Store};
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// How long one attempt may hold its key: longer than the provider's timeout.
const LEASE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Request {
    key: &'static str,
    body: &'static str,
}

#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    body: String,
    replayed: bool,
}

/// The payment provider: counts its calls, fails the first charge of a "flaky" body, and holds
/// its first charge until `hold` is passed (so the example can send a retry meanwhile).
struct Provider {
    calls: AtomicU32,
    failed_once: AtomicBool,
    held_once: AtomicBool,
    hold: Barrier,
}

impl Provider {
    fn charge(&self, body: &str) -> Result<String, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.held_once.swap(true, Ordering::SeqCst) {
            self.hold.wait();
        }
        if body.contains("flaky") && !self.failed_once.swap(true, Ordering::SeqCst) {
            return Err("provider timed out".into());
        }
        Ok(format!("{{\"charge\": \"ch_{n}\", \"request\": {body:?}}}"))
    }
}

fn handle(
    store: &Store,
    provider: &Provider,
    request: &Request,
) -> Result<Response, Box<dyn Error>> {
    let response = |status, body: String, replayed| Response {
        status,
        body,
        replayed,
    };
    Ok(
        match store.claim_payload(request.key, request.body, LEASE)? {
            ClaimOutcome::Acquired(claim) => match provider.charge(request.body) {
                Ok(body) => {
                    claim.complete(Some(body.as_bytes()))?;
                    response(201, body, false)
                }
                // Dropping the claim releases the key: the client's retry runs the charge again.
                Err(error) => response(502, error, false),
            },
            ClaimOutcome::Completed { result, .. } => {
                let body = String::from_utf8_lossy(result.as_deref().unwrap_or_default()).into();
                response(201, body, true)
            }
            ClaimOutcome::InProgress { .. } => {
                response(409, "a request with this key is in progress".into(), false)
            }
            ClaimOutcome::Conflict { .. } => {
                response(422, "the key was used with another request".into(), false)
            }
        },
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let provider = Arc::new(Provider {
        calls: AtomicU32::new(0),
        failed_once: AtomicBool::new(false),
        held_once: AtomicBool::new(false),
        hold: Barrier::new(2),
    });

    // A retry arrives while the first attempt is still charging: it is told to retry later.
    let first = Request {
        key: "key-1",
        body: "90 EUR to alice",
    };
    let attempt = {
        let (store, provider) = (store.clone(), Arc::clone(&provider));
        std::thread::spawn(move || handle(&store, &provider, &first).map_err(|e| e.to_string()))
    };
    while store.stats().claims_held == 0 {
        std::thread::yield_now();
    }
    let early = handle(&store, &provider, &first)?;
    println!(
        "retry during the first attempt: {} {}",
        early.status, early.body
    );
    assert_eq!(early.status, 409);
    provider.hold.wait();
    let charged = attempt.join().map_err(|_| "handler panicked")??;
    println!("first attempt: {} {}", charged.status, charged.body);
    assert_eq!(charged.status, 201);

    // The client's retry gets the first response back, without a second charge.
    let replay = handle(&store, &provider, &first)?;
    println!(
        "retry: {} {} (replayed: {})",
        replay.status, replay.body, replay.replayed
    );
    assert!(replay.replayed);
    assert_eq!(replay.body, charged.body);

    // The key reused for another request.
    let reused = Request {
        key: "key-1",
        body: "5 EUR to bob",
    };
    let conflict = handle(&store, &provider, &reused)?;
    println!("reused key: {} {}", conflict.status, conflict.body);
    assert_eq!(conflict.status, 422);

    // A failed attempt frees the key; the retry charges.
    let flaky = Request {
        key: "key-2",
        body: "flaky: 12 EUR to carol",
    };
    let failed = handle(&store, &provider, &flaky)?;
    let retried = handle(&store, &provider, &flaky)?;
    println!(
        "failed attempt: {} {}; retry: {}",
        failed.status, failed.body, retried.status
    );
    assert_eq!((failed.status, retried.status), (502, 201));

    let calls = provider.calls.load(Ordering::SeqCst);
    println!("provider calls: {calls} (one per key, plus the failed attempt)");
    assert_eq!(calls, 3);
    Ok(())
}
