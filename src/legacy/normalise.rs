//! Which records of a legacy file lightningd really committed.
//!
//! Owns the reading of a `.dbak` file as the Python plugin really writes it: every whole record counts, to the end of
//! the file; of two transaction records with the same version that both end
//! with the `data_version` bump only the later is kept (the earlier was
//! rewound: lightningd never committed it, yet the plugin, which appends,
//! left it in the file); same-version records without a bump are lone PRAGMA
//! reports, kept in order; a snapshot record is the base and comes first.
//!
//! The result is a [`Plan`]: the records to apply, in order, each checked
//! (UTF-8, version sequence, bump) before anything is written anywhere. It
//! must not write: import and restore carry the plan out.

use super::dbak::{DbakReader, Kind, Record};
use crate::error::{Error, Result};
use crate::version::{self, data_version, Seq};

/// One record to apply on top of the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub record: Record,
    /// Store version this record belongs to (extended across u32 wraps).
    pub seq: Seq,
    /// A lone report repeating the previous version (no bump).
    pub repeat: bool,
}

/// The committed history of a legacy file.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The base snapshot, if the file starts with one.
    pub snapshot: Option<Record>,
    /// Records to apply after the base, in order.
    pub steps: Vec<Step>,
    /// Whole records in the file.
    pub records: u64,
    /// Transaction records dropped because a later record with the same
    /// version replaced them (rewound, never committed).
    pub rewound: Vec<Record>,
    /// A last record beyond the header's version: appended, but the plugin
    /// stopped before acknowledging it, so lightningd never committed it.
    pub unacknowledged: Option<Record>,
    /// Store version of the base (the snapshot's version, or 0).
    pub base: Seq,
    /// Store version of the last kept record (or the base).
    pub head: Seq,
}

impl Plan {
    /// The store version a restore to `to_version` (a data_version, or an
    /// extended version) means, refused when the file does not hold it.
    pub fn target(&self, to_version: Option<u64>) -> Result<Seq> {
        version::target(self.base, self.head, self.snapshot.is_some(), to_version)
    }
}

/// Read every record of `file` and work out what was committed.
pub fn plan(file: &mut DbakReader) -> Result<Plan> {
    match plan_before_damage(file)? {
        (plan, None) => Ok(plan),
        (_, Some(damage)) => Err(damage),
    }
}

/// [`plan`] of the whole records before the first damaged one (cut short, of
/// an unknown type, not UTF-8, out of sequence), and the error naming it.
///
/// Decision: with damage, the last change before it is left out unless
/// reports follow it. The damaged record could have been a rewind of it
/// (the Python plugin appends a rewound version again), so whether
/// lightningd committed it is not known; every version before it was
/// followed by the next one, so was committed.
pub(crate) fn plan_before_damage(file: &mut DbakReader) -> Result<(Plan, Option<Error>)> {
    let (records, mut damage) = file.scan_prefix()?;
    let path = file.path().to_path_buf();
    let mut plan = Plan { records: records.len() as u64, ..Plan::default() };
    // Index into `plan.steps` of the head's transaction while nothing has
    // been reported after it: the one a same-version record would replace.
    let mut replaceable: Option<usize> = None;
    for (i, rec) in records.iter().enumerate() {
        if let Err(e) = add_record(file, &path, &mut plan, &mut replaceable, i, rec) {
            damage = Some(e);
            break;
        }
    }
    if damage.is_some() {
        if matches!(plan.steps.last(), Some(s) if !s.repeat) {
            plan.steps.pop();
        }
        plan.head = plan.steps.last().map_or(plan.base, |s| s.seq);
        return Ok((plan, damage));
    }
    let header = file.header().version;
    let head_dv = data_version(plan.head);
    if head_dv != header {
        // The Python plugin appends the record, then rewrites the header, then
        // answers lightningd. One record past the header's version was never
        // acknowledged, so lightningd never committed it: drop it.
        let last_is_lone_new = matches!(plan.steps.last(), Some(s) if !s.repeat && s.seq == plan.head)
            && Some(plan.steps.len() - 1) == replaceable;
        if head_dv == header.wrapping_add(1) && last_is_lone_new {
            let last = plan.steps.pop().map(|s| s.record);
            plan.unacknowledged = last;
            plan.head -= 1;
        } else {
            return Err(Error::legacy(
                &path,
                format!(
                    "the records end at version {head_dv} but the header says version {header}; the file is incomplete or was altered"
                ),
            ));
        }
    }
    Ok((plan, None))
}

/// Add one record to `plan` (see the module doc for which records count).
fn add_record(
    file: &mut DbakReader,
    path: &std::path::Path,
    plan: &mut Plan,
    replaceable: &mut Option<usize>,
    i: usize,
    rec: &Record,
) -> Result<()> {
    let at = |r: &Record| format!("record at offset {} (version {})", r.offset, r.version);
    match rec.kind {
        Kind::Snapshot => {
            if i != 0 {
                return Err(Error::legacy(
                    path,
                    format!(
                        "{}: a snapshot after other records; the Python plugin only writes one as the first record",
                        at(rec)
                    ),
                ));
            }
            plan.snapshot = Some(*rec);
            plan.base = Seq::from(rec.version);
            plan.head = plan.base;
        }
        Kind::Transaction => {
            let statements = file.statements(rec)?;
            if statements.iter().all(|s| s.trim().is_empty()) {
                return Err(Error::legacy(path, format!("{}: no statements", at(rec))));
            }
            let head_dv = data_version(plan.head);
            let next = version::next(plan.head);
            match version::transaction_bump(&statements) {
                Some(from) => {
                    if from != rec.version.wrapping_sub(1) {
                        return Err(Error::legacy(
                            path,
                            format!(
                                "{}: its bump is from version {from}, not {}",
                                at(rec),
                                rec.version.wrapping_sub(1)
                            ),
                        ));
                    }
                    if rec.version == data_version(next) {
                        plan.head = next;
                        *replaceable = Some(plan.steps.len());
                        plan.steps.push(Step { record: *rec, seq: next, repeat: false });
                    } else if rec.version == head_dv {
                        let Some(j) = *replaceable else {
                            return Err(Error::legacy(
                                path,
                                format!(
                                    "{}: repeats version {head_dv} with a data_version bump, but version {head_dv} was {}; cannot tell which was committed",
                                    at(rec),
                                    if plan.steps.is_empty() { "the snapshot" } else { "followed by reports, so it was committed" }
                                ),
                            ));
                        };
                        // The earlier record was rewound: lightningd never committed it.
                        plan.rewound.push(plan.steps[j].record);
                        plan.steps[j] = Step { record: *rec, seq: plan.head, repeat: false };
                    } else {
                        return Err(gap(path, rec, head_dv, plan.snapshot.is_some()));
                    }
                }
                None => {
                    if rec.version != head_dv || (plan.steps.is_empty() && plan.snapshot.is_none()) {
                        return Err(Error::legacy(
                            path,
                            format!(
                                "{}: does not end with the data_version bump and does not repeat version {head_dv} as a lone report would",
                                at(rec)
                            ),
                        ));
                    }
                    *replaceable = None;
                    plan.steps.push(Step { record: *rec, seq: plan.head, repeat: true });
                }
            }
        }
    }
    Ok(())
}

fn gap(path: &std::path::Path, rec: &Record, head: u32, has_snapshot: bool) -> Error {
    let expected = head.wrapping_add(1);
    let why = if !has_snapshot && head == 0 {
        " (the file has no snapshot, so it must start at version 1)".to_string()
    } else {
        format!(" (or {head} repeated)")
    };
    Error::legacy(
        path,
        format!("record at offset {} has version {}, expected {expected}{why}", rec.offset, rec.version),
    )
}
