//! `neuron verify`'s report, in words.

use neuron_events::Report;

use super::{safe, Source};

/// The human report of a verification: what was read, the evidence it holds, what it does not
/// vouch for, and the result.
pub fn report_text(source: &Source, report: &Report, trusted: bool) -> String {
    let mut text = what_was_read(source, report);
    text.push_str(&evidence(report, trusted));
    text.push_str(&reservations(report));
    text.push_str(&result(report));
    text
}

/// The log, how many records, its head, and the head it acknowledged.
fn what_was_read(source: &Source, report: &Report) -> String {
    let mut text = format!(
        "log:             {}\nrecords checked: {}\n",
        safe(&source.describe()),
        report.records
    );
    let at = report
        .last_at
        .map(|at| at.to_string())
        .unwrap_or_else(|| "-".into());
    text.push_str(&format!(
        "head:            {} (seq {}, at {})\n",
        report.head, report.last_seq, at
    ));
    if let Some(acknowledged) = &report.acknowledged {
        text.push_str(&format!(
            "acknowledged:    seq {} ({})\n",
            acknowledged.seq,
            match acknowledged.anchor {
                neuron_events::verify::Anchor::StoreRecord => {
                    "recorded inside the store, which predates head files"
                }
                _ => "the store's head evidence: its head file, or its writer row in PostgreSQL",
            }
        ));
    }
    text
}

/// The tree rebuilt and the last checkpoint.
fn evidence(report: &Report, trusted: bool) -> String {
    let mut text = format!(
        "merkle tree:     {} leaves, root {} ({})\n",
        report.tree.size,
        report.tree.root,
        match report.tree.stored {
            neuron_events::verify::StoredTree::Checked => "the store's tree hashes checked",
            neuron_events::verify::StoredTree::NotKept => "rebuilt from the export",
            neuron_events::verify::StoredTree::NotStored => {
                "rebuilt; the store predates the tree, which the server adds at its next start"
            }
        }
    );
    match &report.last_checkpoint {
        Some(checkpoint) => text.push_str(&format!(
            "last checkpoint: seq {} covering up to seq {}, signed by {}{}\n",
            checkpoint.seq,
            checkpoint.upto,
            checkpoint.signer,
            if trusted {
                " (the trusted key)"
            } else {
                " (no trusted key given: signer not checked)"
            }
        )),
        None => text.push_str("last checkpoint: none\n"),
    }
    text
}

/// What the log holds that no checkpoint vouches for, the rollbacks acknowledged, and the
/// anomalies.
fn reservations(report: &Report) -> String {
    let mut text = String::new();
    if let Some(tail) = &report.unsigned_tail {
        text.push_str(&format!(
            "unsigned tail:   {tail} signed by no trusted checkpoint (accepted: --allow-unsigned-tail)\n"
        ));
    }
    for unverified in &report.unverified {
        text.push_str(&format!("unverified:      {unverified}\n"));
    }
    for (seq, lost) in &report.rollbacks {
        text.push_str(&format!(
            "rollback:        witnesses had seen trees of {}..{} records that this log lost; acknowledged at seq {seq}\n",
            lost.first, lost.last
        ));
    }
    for anomaly in &report.anomalies {
        text.push_str(&format!(
            "anomaly:         seq {}: {}\n",
            anomaly.seq(),
            safe(&anomaly.describe())
        ));
    }
    text
}

/// The verdict.
fn result(report: &Report) -> String {
    match &report.problem {
        None if !report.anomalies.is_empty() => format!(
            "result:          INTACT, with {} anomal{} (the chain holds; the records break a promise of the Neuron's)\n",
            report.anomalies.len(),
            if report.anomalies.len() == 1 { "y" } else { "ies" }
        ),
        None => "result:          INTACT\n".to_string(),
        Some(problem) => format!(
            "result:          NOT INTACT at seq {}{}{}: {}\n",
            problem.seq,
            problem
                .kind
                .as_ref()
                .map(|kind| format!(" ({})", safe(kind)))
                .unwrap_or_default(),
            problem
                .line
                .map(|line| format!(", line {line}"))
                .unwrap_or_default(),
            safe(&problem.fault.describe())
        ),
    }
}
