//! Time zone names: which are accepted, and what the rejections suggest.

use crate::calendar::parse_timezone;

#[test]
fn iana_names_are_accepted_as_spelled() {
    for name in [
        "UTC",
        "Etc/UTC",
        "Europe/Berlin",
        "America/New_York",
        "America/Argentina/Buenos_Aires",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "Pacific/Kiritimati",
        "Etc/GMT-14",
        "Etc/GMT+12",
        "US/Eastern",
        "EST",
    ] {
        let tz = parse_timezone(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tz.iana_name(), Some(name));
    }
}

#[test]
fn unknown_or_misspelled_names_are_rejected_with_a_suggestion() {
    let cases = [
        ("", "time zone is empty; use an IANA name such as Europe/Berlin, America/New_York or UTC"),
        (" UTC", "time zone \" UTC\" has spaces around it; remove them, as in UTC"),
        ("europe/berlin", "time zone \"europe/berlin\" must be spelled Europe/Berlin; IANA names are case-sensitive"),
        ("utc", "must be spelled UTC"),
        ("Berlin", "unknown time zone \"Berlin\"; use Europe/Berlin, or another IANA name from the tz database"),
        ("New York", "use America/New_York"),
        ("Europe/Berln", "use Europe/Berlin"),
        ("America/NewYork", "use America/New_York"),
        ("PST", "use America/Los_Angeles (abbreviations are not zones"),
        ("CEST", "use Europe/Berlin"),
        ("UTC+2", "use Etc/GMT-2 (the sign is inverted in these names)"),
        ("GMT-05:00", "use Etc/GMT+5"),
        ("UTC+0", "use UTC"),
        ("Mars/Olympus_Mons", "unknown time zone \"Mars/Olympus_Mons\"; use an IANA name such as Europe/Berlin"),
        ("Etc/Unknown", "is a placeholder, not a real zone"),
        ("../../etc/passwd", "unknown time zone"),
        ("/usr/share/zoneinfo/UTC", "unknown time zone"),
        ("Europe/Berlin\n", "has spaces around it"),
    ];
    for (name, expected) in cases {
        let message = parse_timezone(name).map(|tz| format!("accepted {tz:?}")).unwrap_or_else(|e| e.to_string());
        assert!(message.contains(expected), "{name:?}:\n  got  {message}\n  want …{expected}…");
        assert!(message.starts_with(|c: char| !c.is_ascii_uppercase()) && !message.ends_with('.'), "{message}");
    }
    let long = "A".repeat(65);
    let message = parse_timezone(&long).unwrap_err().to_string();
    assert!(message.starts_with("time zone name is 65 bytes long, longer than any IANA name"), "{message}");
}

#[test]
fn a_timezone_serializes_as_its_name_and_names_its_field_when_refused() {
    let zone: crate::calendar::Timezone = serde_json::from_str("\"Europe/Berlin\"").unwrap();
    assert_eq!((zone.name(), serde_json::to_string(&zone).unwrap().as_str()), ("Europe/Berlin", "\"Europe/Berlin\""));
    let error = serde_json::from_str::<crate::calendar::Timezone>("\"Berlin\"").unwrap_err().to_string();
    assert!(error.starts_with("`timezone`: ") && error.contains("Europe/Berlin"), "{error}");
}
