//! IANA time zone names, checked against the time zone database bundled into the binary.
//!
//! The bundled copy, not the machine's `/usr/share/zoneinfo`, so that which names are accepted and
//! what their rules are depends only on the Sluice build, and so that a name is never a file path.

use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::{ScheduleError, quote};

/// Longer than any IANA name (the longest is 32 bytes), short enough to quote in a message.
const MAX_NAME_LEN: usize = 64;

/// What to write instead, completing "...; use ...".
const EXAMPLES: &str = "an IANA name such as Europe/Berlin, America/New_York or UTC";

/// Common abbreviations that are not IANA names, with the zone most people mean by them.
const ABBREVIATIONS: [(&str, &str); 14] = [
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("MDT", "America/Denver"),
    ("CDT", "America/Chicago"),
    ("EDT", "America/New_York"),
    ("BST", "Europe/London"),
    ("CEST", "Europe/Berlin"),
    ("EEST", "Europe/Athens"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("KST", "Asia/Seoul"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
    ("NZST", "Pacific/Auckland"),
];

/// A checked IANA time zone: its name as the bundled database spells it, and its rules. It
/// serializes as the name and deserializes only from a name [`parse_timezone`] accepts, so a
/// stored project's time zone is always a valid one.
#[derive(Clone)]
pub struct Timezone {
    name: String,
    zone: TimeZone,
}

impl Timezone {
    /// Looks up `name` as [`parse_timezone`] does.
    pub fn parse(name: &str) -> Result<Self, ScheduleError> {
        Ok(Self { zone: parse_timezone(name)?, name: name.to_string() })
    }

    /// UTC, the default for projects that name no time zone.
    pub fn utc() -> Self {
        Self { name: "UTC".into(), zone: TimeZone::UTC }
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's rules.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

impl PartialEq for Timezone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Timezone {}

impl std::fmt::Debug for Timezone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::fmt::Display for Timezone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl serde::Serialize for Timezone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Timezone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Timezone::parse(&name).map_err(|e| serde::de::Error::custom(format!("`timezone`: {e}")))
    }
}

/// The bundled database, opened once.
fn database() -> &'static TimeZoneDatabase {
    static DATABASE: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DATABASE.get_or_init(TimeZoneDatabase::bundled)
}

/// Looks up an IANA time zone name, such as `Europe/Berlin`, `America/New_York` or `UTC`, in the
/// time zone database bundled into Sluice.
///
/// The name must be spelled exactly as the database spells it, including case, so that the stored
/// name is always the canonical one; a name that differs only in case is rejected with the right
/// spelling. Unknown names get a suggestion where one is likely (`Berlin` → `Europe/Berlin`,
/// `PST` → `America/Los_Angeles`, `UTC+2` → `Etc/GMT-2`).
pub fn parse_timezone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.is_empty() {
        return Err(ScheduleError::new(format!("time zone is empty; use {EXAMPLES}")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ScheduleError::new(format!(
            "time zone name is {} bytes long, longer than any IANA name; use {EXAMPLES}",
            name.len()
        )));
    }
    if name.trim() != name {
        return Err(ScheduleError::new(format!(
            "time zone {} has spaces around it; remove them, as in {}",
            quote(name),
            name.trim()
        )));
    }
    match database().get(name) {
        // `Etc/Unknown` is jiff's placeholder for "no idea", not a zone anyone can schedule in.
        Ok(tz) if tz.is_unknown() => Err(ScheduleError::new(format!(
            "time zone {} is a placeholder, not a real zone; use {EXAMPLES}",
            quote(name)
        ))),
        Ok(tz) => match tz.iana_name() {
            Some(canonical) if canonical != name => Err(ScheduleError::new(format!(
                "time zone {} must be spelled {canonical}; IANA names are case-sensitive",
                quote(name)
            ))),
            _ => Ok(tz),
        },
        Err(_) => Err(match suggestion(name) {
            Some(suggestion) => ScheduleError::new(format!(
                "unknown time zone {}; use {suggestion}, or another IANA name from the tz database",
                quote(name)
            )),
            None => ScheduleError::new(format!("unknown time zone {}; use {EXAMPLES}", quote(name))),
        }),
    }
}

/// The zone an unknown name most likely means, if there is a good guess.
fn suggestion(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if let Some((_, zone)) = ABBREVIATIONS.iter().find(|(abbreviation, _)| *abbreviation == upper) {
        return Some(format!("{zone} (abbreviations are not zones; {zone} follows daylight saving time)"));
    }
    if let Some(zone) = fixed_offset(&upper) {
        return Some(zone);
    }
    // A city without its region, or with spaces for underscores: `berlin`, `New York`.
    let city = name.rsplit('/').next().unwrap_or(name).replace(' ', "_");
    let names: Vec<String> = database().available().map(|zone| zone.as_str().to_string()).collect();
    if let Some(zone) =
        names.iter().find(|zone| zone.rsplit('/').next().is_some_and(|last| last.eq_ignore_ascii_case(&city)))
    {
        return Some(zone.clone());
    }
    // A typo: the closest name within two edits, ignoring case.
    let lower = name.to_ascii_lowercase();
    names
        .iter()
        .map(|zone| (edit_distance(&lower, &zone.to_ascii_lowercase()), zone))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, zone)| zone.clone())
}

/// `UTC+2` or `GMT-05:00` as the `Etc/GMT` zone with the same offset, whose sign is inverted by
/// POSIX convention (`Etc/GMT-2` is two hours ahead of UTC).
fn fixed_offset(upper: &str) -> Option<String> {
    let rest = upper.strip_prefix("UTC").or_else(|| upper.strip_prefix("GMT"))?;
    let (sign, hours) = match rest.as_bytes().first()? {
        b'+' => ('-', &rest[1..]),
        b'-' => ('+', &rest[1..]),
        _ => return None,
    };
    let hours = hours.strip_suffix(":00").unwrap_or(hours);
    let hours: u8 = hours.parse().ok().filter(|hours| *hours <= 14)?;
    if hours == 0 {
        return Some("UTC".to_string());
    }
    Some(format!("Etc/GMT{sign}{hours} (the sign is inverted in these names), or the zone of a city with that offset"))
}

/// The Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
