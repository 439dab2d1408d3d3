//! A wall clock behind the log (races issue, item 3): a run with the clock ten years ahead, then
//! runs with the right clock. The step back is recorded (`server.clock_behind`, both times) and
//! warned about, later records carry the real clock, and `replay --until-time` and `timeline`
//! read the log across the step as the README says.

mod common;

use std::net::SocketAddr;

use common::{config, url, NOW, PROVIDER};
use neuron::tools::client;
use neuron_events::testing::fixed_clock;

/// Ten years, in seconds: how far ahead the careless run's clock was.
const AHEAD: i64 = 10 * 365 * 86_400;

/// A fixed loopback source address per client, so recorded peers never vary.
fn source(client: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 11, 0, client], 41_000)))
}

/// The records of a stopped server's log, as JSON.
fn parsed(dir: &std::path::Path) -> Vec<serde_json::Value> {
    common::records(dir)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn millis(record: &serde_json::Value, field: &str) -> i64 {
    let text = record[field].as_str().unwrap_or_else(|| {
        record["data"][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {record}"))
    });
    neuron_events::Timestamp::parse_rfc3339(text)
        .unwrap()
        .millis()
}

#[tokio::test]
async fn a_run_with_the_clock_ahead_is_recorded_and_later_records_carry_the_real_clock() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = fixed_clock();
    ahead.advance(AHEAD * 1000);
    let server = common::start(config(dir.path()), ahead, 31).await;
    let early = client::handshake(
        &url(&server),
        source(1),
        &common::ada(),
        PROVIDER,
        NOW + AHEAD,
    )
    .await
    .unwrap();
    assert!(early.completed(), "{early:?}");
    server.stop("clock ahead").await.unwrap();

    // A backup of the careless run alone, restored today: the step back is recorded before the
    // `log.restored` record, which carries the real clock.
    let backup = dir.path().with_extension("ahead.jsonl");
    std::fs::write(&backup, common::exported(dir.path())).unwrap();

    let server = common::start(config(dir.path()), fixed_clock(), 32).await;
    let later = client::handshake(&url(&server), source(2), &common::bob(), PROVIDER, NOW)
        .await
        .unwrap();
    assert!(later.completed(), "{later:?}");
    server.stop("test over").await.unwrap();

    let records = parsed(dir.path());
    let behind: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, record)| record["kind"] == "server.clock_behind")
        .map(|(index, _)| index)
        .collect();
    assert_eq!(behind.len(), 1, "one step back, one record: {records:#?}");
    let at = behind[0];
    let step = &records[at];
    assert_eq!(
        millis(step, "last_at"),
        millis(&records[at - 1], "at"),
        "it names the log's latest time"
    );
    assert_eq!(millis(step, "now"), millis(step, "at"), "and the clock's");
    assert_eq!(
        step["data"]["behind_ms"].as_i64().unwrap(),
        millis(step, "last_at") - millis(step, "now")
    );
    assert!(
        millis(step, "at") < NOW * 1000 + 60_000,
        "the step is stamped with the real clock: {step}"
    );
    // From the step on, the real clock, moving forward.
    let after: Vec<i64> = records[at..]
        .iter()
        .map(|record| millis(record, "at"))
        .collect();
    assert!(
        after.windows(2).all(|pair| pair[0] <= pair[1]) && after[0] < after[after.len() - 1],
        "times move again after the step: {after:?}"
    );
    assert!(after.iter().all(|time| *time < NOW * 1000 + 3_600_000));
    common::lock_log("clock__a_run_with_the_clock_ahead", dir.path());

    let data = dir.path().to_str().unwrap();
    // A time after the second run: the replay holds both relationships, since the records
    // stamped later than it came first in the log.
    let replayed = common::neuron(&["replay", data, "--until-time", "2026-11-26T11:00:00Z"]);
    let out = common::said(&replayed);
    assert!(replayed.status.success(), "{out}");
    assert!(out.contains("relationships: 2 active"), "{out}");
    // A time before the second run: no record is stamped at or before it, so nothing.
    let replayed = common::neuron(&["replay", data, "--until-time", "2026-11-26T09:00:00Z"]);
    let out = common::said(&replayed);
    assert!(replayed.status.success(), "{out}");
    assert!(out.contains("relationships: 0 active"), "{out}");
    // A time in the careless run (one the machine never lived through): the later run's records,
    // stamped earlier, reach it last, so the replay runs to the end. `--until-seq` with the seq
    // of the `server.clock_behind` record is how to stop inside the careless run.
    let replayed = common::neuron(&[
        "replay",
        data,
        "--until-time",
        &neuron_events::Timestamp::saturating_from_millis((NOW + AHEAD) * 1000 + 100).to_string(),
    ]);
    let out = common::said(&replayed);
    assert!(replayed.status.success(), "{out}");
    assert!(
        out.contains("relationships: 2 active") && out.contains("as of seq 24"),
        "{out}"
    );

    let keys = tempfile::tempdir().unwrap();
    neuron_events::testing::neuron_key()
        .write_new(keys.path())
        .unwrap();
    let key = keys.path().join(neuron_events::checkpoint::KEY_FILE);
    let restored = keys.path().join("restored");
    let output = common::neuron(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", common::said(&output));
    let tail: Vec<serde_json::Value> = String::from_utf8(common::exported(&restored))
        .unwrap()
        .lines()
        .skip(12)
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        tail.iter()
            .map(|record| record["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["server.clock_behind", "log.restored"],
        "{tail:#?}"
    );
    assert_eq!(millis(&tail[0], "last_at"), (NOW + AHEAD) * 1000 + 3_250);
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for record in &tail {
        assert!((millis(record, "at") - today).abs() < 3_600_000, "{record}");
    }

    // The second patient's timeline runs on the real clock, a quarter second a step.
    let timeline = common::neuron(&["timeline", data, "--patient", "patient-agent-bob"]);
    let out = common::said(&timeline);
    assert!(timeline.status.success(), "{out}");
    assert!(out.contains("2026-11-26T10:00:0"), "{out}");
    assert!(out.contains("+0.250s") && !out.contains("+0.000s"), "{out}");
    // Records outside a session across the step: the step back shows as a negative interval.
    let provider = common::neuron(&["timeline", data, "--provider", PROVIDER]);
    let out = common::said(&provider);
    assert!(provider.status.success(), "{out}");
    assert!(out.contains("  -315"), "{out}");
}

/// libfaketime's preload library, from Debian's `faketime`.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// `neuron serve` itself under a clock ten years ahead (libfaketime), then with the machine's
/// clock: the second start warns, in words, and the log verifies.
#[test]
fn serve_after_a_run_with_the_clock_ahead_warns_and_the_log_verifies() {
    if !neuron_events::testing::external(
        std::path::Path::new(FAKETIME).exists(),
        "serve_after_a_run_with_the_clock_ahead_warns_and_the_log_verifies",
        "libfaketime (the server runs under a clock ten years ahead)",
        "apt-get install faketime",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let real_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let offset = format!("+{}d", AHEAD / 86_400);
    let ahead = common::served::serve_with(
        &data,
        1,
        None,
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", offset.as_str()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
    .unwrap();
    let early = runtime
        .block_on(client::handshake(
            &ahead.url,
            None,
            &common::ada(),
            PROVIDER,
            real_now() + AHEAD,
        ))
        .unwrap();
    assert!(early.completed(), "{early:?}");
    ahead.signal(libc::SIGTERM);
    let (status, said) = ahead.wait();
    assert!(status.success(), "{said}");
    assert!(!said.contains("behind"), "{said}");

    let served = common::served::serve(&data, 2, None).unwrap();
    let later = runtime
        .block_on(client::handshake(
            &served.url,
            None,
            &common::bob(),
            PROVIDER,
            real_now(),
        ))
        .unwrap();
    assert!(later.completed(), "{later:?}");
    served.signal(libc::SIGTERM);
    let (status, said) = served.wait();
    assert!(status.success(), "{said}");
    assert!(said.contains("WARN"), "{said}");
    assert!(said.contains("behind the log"), "{said}");
    assert_eq!(said.matches("behind the log").count(), 1, "{said}");

    neuron_events::testing::until_unlocked(&data.join("log"));
    let verified = common::neuron(&["verify", data.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", common::said(&verified));
    let timeline = common::neuron(&[
        "timeline",
        data.to_str().unwrap(),
        "--patient",
        "patient-agent-bob",
    ]);
    let out = common::said(&timeline);
    let year = 1970 + real_now() / 31_556_952;
    assert!(out.contains(&format!("  {year}-")), "{out}");
}
