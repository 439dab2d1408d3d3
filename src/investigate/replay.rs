//! `neuron replay`: the views as of a point in the log, and their table.

use super::{safe, InvestigateError, Source};

/// The views of the log as of `until`.
///
/// # Errors
/// As [`Source::for_each_record`].
pub fn replay(
    source: &Source,
    until: neuron_projections::Until,
) -> Result<neuron_projections::Views, InvestigateError> {
    // The state at a point: live sessions only (ended ones stay in the tallies; `timeline` tells
    // their story), so memory follows what was live, not the length of the log.
    let mut views = neuron_projections::Views::live_only();
    // A time is reached at the last record stamped at or before it (the clock can step back, see
    // `Until`): a first pass finds that record's seq from each record's envelope (nothing is
    // decoded; the records are only checked to be records), so that memory does not hold what
    // comes after. The largest such seq does not depend on the order the workers see them in.
    let last = match until {
        neuron_projections::Until::Time(time) => {
            let last = std::sync::atomic::AtomicU64::new(0);
            let reached = |bytes: &[u8]| {
                if let Ok(envelope) = neuron_events::record::Envelope::parse(bytes) {
                    let at = neuron_events::Timestamp::parse_rfc3339(&envelope.at);
                    if at.is_ok_and(|at| at <= time) {
                        last.fetch_max(envelope.seq, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                false
            };
            source.for_each_matching(
                &reached,
                neuron_events::export::Unpicked::Checked,
                &mut |_| {},
            )?;
            Some(last.into_inner())
        }
        neuron_projections::Until::Seq(seq) => Some(seq),
        neuron_projections::Until::End => None,
    };
    source.for_each_record_shown("replaying", &mut |record| {
        if last.is_none_or(|last| record.seq <= last) {
            views.apply(&record);
        }
    })?;
    Ok(views)
}

/// The human form of a replay; at most `limit` rows per list.
pub fn replay_text(source: &Source, views: &neuron_projections::Views, limit: usize) -> String {
    let mut text = format!(
        "log {} as of seq {} ({})\n",
        safe(&source.describe()),
        views.last_seq,
        views
            .last_at
            .map(|at| at.to_string())
            .unwrap_or_else(|| "empty".into())
    );
    if let Some(org) = &views.organization_npi {
        text.push_str(&format!(
            "organization {}, Neuron key {}\n",
            safe(org),
            safe(views.server_key.as_deref().unwrap_or("-"))
        ));
    }
    providers_text(&mut text, views);
    relationships_text(&mut text, views, limit);
    sessions_text(&mut text, views, limit);
    tally_text(&mut text, views);
    text
}

/// The providers, registered or removed.
fn providers_text(text: &mut String, views: &neuron_projections::Views) {
    text.push_str("\nproviders\n");
    for provider in views.providers.all() {
        let state = match provider.removed_at {
            Some(at) if !provider.registered => format!("removed {at}"),
            _ => format!("registered {}", provider.registered_at),
        };
        text.push_str(&format!(
            "  {}  {:<24}  {}\n",
            safe(&provider.npi),
            safe(&provider.name),
            state
        ));
    }
}

/// The relationships, with their counts and any anomaly.
fn relationships_text(text: &mut String, views: &neuron_projections::Views, limit: usize) {
    use neuron_projections::relationships::Standing;
    let (active, terminated) = views.relationships.counts();
    text.push_str(&format!(
        "\nrelationships: {active} active, {terminated} terminated\n"
    ));
    let shown = views
        .relationships
        .all()
        .take(limit)
        .filter_map(|summary| views.relationships.full(&summary));
    for relationship in shown {
        let status = match (&relationship.status, &relationship.termination) {
            (Standing::Terminated, Some(end)) => {
                format!("terminated {} ({})", end.at, safe(&end.reason))
            }
            _ => "active".to_string(),
        };
        text.push_str(&format!(
            "  {}  {}  provider {}  established {}  {} later handshake(s)  {}\n",
            safe(&relationship.id),
            safe(&relationship.patient_agent_id),
            safe(&relationship.provider_npi),
            relationship.established_at,
            relationship.existing_handshakes,
            status
        ));
    }
    let total = active + terminated;
    if total > limit {
        text.push_str(&format!(
            "  … and {} more (--limit, or --format json)\n",
            total - limit
        ));
    }
    let conflicts = views.relationships.conflicts();
    if !conflicts.is_empty() {
        text.push_str(&format!(
            "\nanomalies: {} relationship(s) established while another was active for the same patient and provider\n",
            conflicts.len()
        ));
        for conflict in conflicts.iter().take(limit) {
            text.push_str(&format!("  {}\n", safe(&conflict.to_string())));
        }
    }
}

/// The live sessions and the queue.
fn sessions_text(text: &mut String, views: &neuron_projections::Views, limit: usize) {
    text.push_str(&format!(
        "\nlive sessions: {}\n",
        views.sessions.live_count()
    ));
    for session in views.sessions.live().take(limit) {
        text.push_str(&format!(
            "  {}  {}  patient {}  provider {}  since {}\n",
            safe(&session.id),
            session.stage.as_str(),
            safe(session.patient_agent_id.as_deref().unwrap_or("-")),
            safe(session.provider_npi.as_deref().unwrap_or("-")),
            session.started
        ));
    }
    text.push_str(&format!("\nqueue: {} waiting\n", views.queue.len()));
    for position in views.queue.positions().take(limit) {
        text.push_str(&format!(
            "  {:>4}  {}  {}  since {}\n",
            position.position,
            safe(&position.waiting.session),
            safe(&position.waiting.peer),
            position.waiting.since
        ));
    }
}

/// What became of every handshake, counted.
fn tally_text(text: &mut String, views: &neuron_projections::Views) {
    let tally = views.sessions.tally();
    let failed: Vec<String> = tally
        .failed
        .iter()
        .map(|(code, count)| format!("{} {count}", code.as_str()))
        .collect();
    let rejected: Vec<String> = tally
        .rejected
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    let refused: String = tally
        .refused
        .iter()
        .map(|(reason, count)| format!("; refused before a session {reason} {count}"))
        .collect();
    text.push_str(&format!(
        "\nhandshakes: completed {} ({} new, {} existing); failed {} [{}]; closed {}; queue timeouts {}; rejected [{}]; interrupted {}{refused}\n",
        tally.completed_new + tally.completed_existing,
        tally.completed_new,
        tally.completed_existing,
        tally.failed.values().sum::<u64>(),
        failed.join(", "),
        tally.closed,
        tally.queue_timeouts,
        rejected.join(", "),
        tally.interrupted
    ));
}
