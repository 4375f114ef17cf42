//! What a run may hand to the outbox: the one [`Record`] type from `transform` to Kinesis,
//! Kinesis' rules for it, the tenant's limit on the state, and the operator's limits on one run's
//! records. Pure rules, no I/O.
//!
//! The run pipeline applies them when `transform` returns, before anything reaches the outbox, so
//! that a record Kinesis would refuse fails its run at `transform` instead of becoming an outbox
//! entry that no retry can deliver. The dry runs (`POST /v1/plugins/{id}/test`, `sluice plugin
//! test`) apply the same checks, and `aws` applies the record rules once more before sending, for
//! entries written before these checks existed.

/// One record bound for the project's Kinesis stream: what `transform` returned, as the outbox
/// keeps it and as `PutRecords` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Vec<u8>,
    /// 1 to 256 Unicode characters; records with the same key go to the same shard, in order.
    pub partition_key: String,
    /// A decimal from 0 to 2^128-1 that overrides the shard chosen from the partition key.
    pub explicit_hash_key: Option<String>,
}

impl Record {
    /// The bytes Kinesis counts against its limits: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The most bytes of one record, data plus partition key, that Kinesis accepts.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The longest partition key Kinesis accepts, in Unicode characters (the shortest is 1).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The limits of one run's output, besides Kinesis' per-record rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// The largest state a plugin may return, from the tenant's quotas.
    pub max_state_bytes: u64,
    /// The most records one run may deliver, all pages together.
    pub max_records: u64,
    /// The most bytes (data plus partition keys) one run may deliver, all pages together.
    pub max_bytes: u64,
}

/// Why Kinesis would refuse a record, or `None` when it would take it. `index` counts the run's
/// records from 0 and names the record in the message.
pub fn record_problem(index: u64, data: &[u8], partition_key: &str, explicit_hash_key: Option<&str>) -> Option<String> {
    let size = data.len() + partition_key.len();
    if size > MAX_RECORD_BYTES {
        return Some(format!(
            "record {index} is {size} bytes (data plus partition key), over Kinesis' limit of {MAX_RECORD_BYTES} \
             bytes per record; make the plugin emit smaller records"
        ));
    }
    let key_chars = partition_key.chars().count();
    if !(1..=MAX_PARTITION_KEY_CHARS).contains(&key_chars) {
        return Some(format!(
            "record {index} has a partition key of {key_chars} characters; Kinesis needs 1 to \
             {MAX_PARTITION_KEY_CHARS}"
        ));
    }
    if let Some(hash) = explicit_hash_key
        && !(!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_digit()) && hash.parse::<u128>().is_ok())
    {
        let shown: String = hash.chars().take(60).collect();
        let more = if shown.len() < hash.len() { "…" } else { "" };
        return Some(format!(
            "record {index} has the explicit hash key `{shown}{more}`, which is not a decimal number from 0 to \
             2^128-1; fix or omit it"
        ));
    }
    None
}

/// Checks a run's output page by page against [`record_problem`] and [`RunLimits`], counting the
/// run's records and bytes across pages.
#[derive(Debug)]
pub struct OutputCheck {
    limits: RunLimits,
    records: u64,
    bytes: u64,
}

impl OutputCheck {
    pub fn new(limits: RunLimits) -> Self {
        Self { limits, records: 0, bytes: 0 }
    }

    /// [`OutputCheck::page`] on one call's output, as the runtime returns it.
    pub fn output(&mut self, output: &crate::runtime::Output, max_problems: usize) -> Vec<String> {
        let records = output.records.iter();
        let records = records.map(|r| (r.data.as_slice(), r.partition_key.as_str(), r.explicit_hash_key.as_deref()));
        self.page(records, output.state.as_deref(), max_problems)
    }

    /// What a dry run of one call reports: the record rules and the state limit, since the run's
    /// totals need a whole run.
    pub fn dry_run(output: &crate::runtime::Output, max_state_bytes: u64, max_problems: usize) -> Vec<String> {
        let limits = RunLimits { max_state_bytes, max_records: u64::MAX, max_bytes: u64::MAX };
        OutputCheck::new(limits).output(output, max_problems)
    }

    /// Checks one call's records and state. Returns every problem found (at most `max_problems`,
    /// then a line saying how many more), in record order; empty when the output may be stored.
    pub fn page<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], &'a str, Option<&'a str>)>,
        state: Option<&[u8]>,
        max_problems: usize,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let mut more = 0u64;
        let mut note = |problem: String, problems: &mut Vec<String>| {
            if problems.len() < max_problems {
                problems.push(problem);
            } else {
                more += 1;
            }
        };
        for (data, partition_key, explicit_hash_key) in records {
            if let Some(problem) = record_problem(self.records, data, partition_key, explicit_hash_key) {
                note(problem, &mut problems);
            }
            self.records += 1;
            self.bytes += (data.len() + partition_key.len()) as u64;
        }
        if self.records > self.limits.max_records {
            note(
                format!(
                    "the run returned {} records, more than the {} one run may deliver; return fewer per run and \
                     keep your place in the state",
                    self.records, self.limits.max_records
                ),
                &mut problems,
            );
        }
        if self.bytes > self.limits.max_bytes {
            note(
                format!(
                    "the run returned {} bytes of records, more than the {} one run may deliver; return fewer per \
                     run and keep your place in the state",
                    self.bytes, self.limits.max_bytes
                ),
                &mut problems,
            );
        }
        if let Some(state) = state
            && state.len() as u64 > self.limits.max_state_bytes
        {
            note(
                format!(
                    "the plugin returned a state of {} bytes, over the tenant's limit of {} bytes \
                     (quota max_state_bytes); keep only a cursor in the state",
                    state.len(),
                    self.limits.max_state_bytes
                ),
                &mut problems,
            );
        }
        if more > 0 {
            problems.push(format!("and {more} more problems"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(data: usize, key: &str, hash: Option<&str>) -> Option<String> {
        record_problem(0, &vec![b'x'; data], key, hash)
    }

    #[test]
    fn kinesis_rules_for_one_record() {
        assert_eq!(problem(MAX_RECORD_BYTES - 1, "k", None), None, "exactly 1 MiB with its key fits");
        let big = problem(MAX_RECORD_BYTES, "k", None).unwrap();
        assert!(big.contains("record 0 is 1048577 bytes"), "{big}");
        let empty = problem(1, "", None).unwrap();
        assert!(empty.contains("partition key of 0 characters; Kinesis needs 1 to 256"), "{empty}");
        assert_eq!(problem(1, &"ü".repeat(256), None), None, "256 characters, whatever their bytes");
        assert!(problem(1, &"k".repeat(257), None).unwrap().contains("257 characters"));
        assert_eq!(problem(1, "k", Some("0")), None);
        assert_eq!(problem(1, "k", Some(&u128::MAX.to_string())), None);
        for bad in ["abc", "+1", "-1", "1e3", "", " 1", "340282366920938463463374607431768211456"] {
            let message = problem(1, "k", Some(bad)).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(message.contains("not a decimal number from 0 to 2^128-1"), "{message}");
        }
        let long = problem(1, "k", Some(&"9".repeat(500))).unwrap();
        assert!(long.len() < 300, "a long key is shortened in the message: {long}");
    }

    #[test]
    fn a_run_is_checked_across_pages_naming_each_record() {
        let limits = RunLimits { max_state_bytes: 8, max_records: 3, max_bytes: 1000 };
        let mut check = OutputCheck::new(limits);
        let page = [(&b"a"[..], "k", None), (&b"b"[..], "", None)];
        let problems = check.page(page, Some(b"12345678"), 10);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("record 1 has a partition key of 0"), "{problems:?}");
        let problems = check.page([(&b"c"[..], "k", Some("abc")), (&b"d"[..], "k", None)], Some(b"123456789"), 10);
        assert!(problems[0].starts_with("record 2 has the explicit hash key `abc`"), "{problems:?}");
        assert!(problems[1].contains("returned 4 records, more than the 3"), "{problems:?}");
        assert!(problems[2].contains("state of 9 bytes, over the tenant's limit of 8"), "{problems:?}");
    }

    #[test]
    fn problems_are_bounded() {
        let limits = RunLimits { max_state_bytes: 8, max_records: 1000, max_bytes: 1 << 30 };
        let records: Vec<(&[u8], &str, Option<&str>)> = (0..50).map(|_| (&b"x"[..], "", None)).collect();
        let problems = OutputCheck::new(limits).page(records, None, 5);
        assert_eq!(problems.len(), 6);
        assert_eq!(problems[5], "and 45 more problems");
    }
}
