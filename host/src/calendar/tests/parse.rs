//! Which expressions parse, what they normalize to, and what the rejections say.

use super::schedule;
use crate::calendar::{MAX_EXPRESSION_LEN, Schedule};

/// Valid expressions and their normalized form (`=` when it is the same text).
const VALID: &[(&str, &str)] = &[
    // Rates, every unit in both numbers, including the seconds extension.
    ("rate(1 second)", "="),
    ("rate(30 seconds)", "="),
    ("rate(1 minute)", "="),
    ("rate(5 minutes)", "="),
    ("rate(1 hour)", "="),
    ("rate(12 hours)", "="),
    ("rate(1 day)", "="),
    ("rate(7 days)", "="),
    ("rate(4294967295 seconds)", "="),
    // The examples from the EventBridge documentation.
    ("cron(0 10 * * ? *)", "="),
    ("cron(15 12 * * ? *)", "="),
    ("cron(0 18 ? * MON-FRI *)", "="),
    ("cron(0 8 1 * ? *)", "="),
    ("cron(0/15 * * * ? *)", "="),
    ("cron(0/10 * ? * MON-FRI *)", "="),
    ("cron(0/5 8-17 ? * MON-FRI *)", "="),
    ("cron(0 9 ? * 2#1 *)", "="),
    ("cron(15 10 ? * 6L 2002-2005)", "="),
    ("cron(5,35 14 * * ? *)", "="),
    ("cron(1/10 * * * ? *)", "="),
    // Expressions reported to work against AWS.
    ("cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)", "="),
    ("cron(30-30 13-13 ? * 2,4,6 *)", "="),
    ("cron(1-31/30 1-1 ? * 1,7 *)", "="),
    ("cron(*/1 * * * ? *)", "="),
    ("cron(0 * ? * * *)", "="),
    // Every wildcard in every field that takes it.
    ("cron(*/5 */2 */3 */4 ? */10)", "="),
    ("cron(0 0 1 1 ? 2030/10)", "="),
    ("cron(0 0 1,15 1-6/2 ? 1970,2199)", "="),
    ("cron(0 12 L * ? *)", "="),
    ("cron(0 12 LW * ? *)", "="),
    ("cron(0 12 15W * ? *)", "="),
    ("cron(0 12 1W * ? *)", "="),
    ("cron(0 12 ? * L *)", "="),
    ("cron(0 12 ? * 3#2 *)", "="),
    ("cron(0 12 ? * 2#5 *)", "="),
    ("cron(0 12 ? * FRI#1 *)", "="),
    ("cron(0 12 ? * FRIL *)", "="),
    ("cron(0 12 ? JAN,JUL SUN-SAT *)", "="),
    ("cron(0 12 ? * 1-7 *)", "="),
    // Years in the past parse: they just never fire again.
    ("cron(0 0 1 1 ? 2020)", "="),
    ("cron(59 23 31 12 ? 2199)", "="),
    // Normalization: names and L, W in uppercase, no leading zeros.
    ("cron(0 9 ? jan-mar mon-fri *)", "cron(0 9 ? JAN-MAR MON-FRI *)"),
    ("cron(0 9 ? Jan,Dec Sun *)", "cron(0 9 ? JAN,DEC SUN *)"),
    ("cron(0 12 l * ? *)", "cron(0 12 L * ? *)"),
    ("cron(0 12 lw * ? *)", "cron(0 12 LW * ? *)"),
    ("cron(0 12 15w * ? *)", "cron(0 12 15W * ? *)"),
    ("cron(0 12 ? * l *)", "cron(0 12 ? * L *)"),
    ("cron(0 12 ? * fri#2 *)", "cron(0 12 ? * FRI#2 *)"),
    ("cron(0 12 ? * 6l *)", "cron(0 12 ? * 6L *)"),
    ("cron(05 09 01 01 ? *)", "cron(5 9 1 1 ? *)"),
    ("cron(00/05 * * * ? *)", "cron(0/5 * * * ? *)"),
    ("cron(0 12 01W * ? *)", "cron(0 12 1W * ? *)"),
];

#[test]
fn valid_expressions_parse_and_normalize() {
    for &(expr, normalized) in VALID {
        let normalized = if normalized == "=" { expr } else { normalized };
        let parsed = schedule(expr);
        assert_eq!(parsed.to_string(), normalized, "normalized form of {expr}");
        // The normalized form is itself valid and means the same schedule.
        let reparsed = schedule(normalized);
        assert_eq!(reparsed, parsed, "{normalized} reparsed");
        assert_eq!(reparsed.to_string(), normalized, "{normalized} is a fixed point");
        assert_eq!(expr.parse::<Schedule>().as_ref(), Ok(&parsed), "FromStr agrees for {expr}");
    }
}

/// Invalid expressions and a part of the message each must give.
const INVALID: &[(&str, &str)] = &[
    // The expression as a whole.
    ("", "schedule is empty; use an expression such as rate(5 minutes) or cron(0 12 * * ? *)"),
    (" rate(5 minutes)", "has spaces around it; remove them, as in rate(5 minutes)"),
    ("rate(5 minutes)\n", "has spaces around it"),
    ("rate(5 minutes", "must end with a closing parenthesis"),
    ("cron(0 12 * * ? *)x", "must end with a closing parenthesis"),
    ("every 5 minutes", "is not a rate() or cron() expression"),
    ("rates(5 minutes)", "is not a rate() or cron() expression"),
    ("RATE(5 minutes)", "schedule keyword \"RATE\" must be lowercase; write rate(5 minutes)"),
    ("Cron(0 12 * * ? *)", "write cron(0 12 * * ? *)"),
    ("at(2026-01-01T00:00:00)", "one-time at() schedules are not supported"),
    // Rates: singular with 1, plural otherwise.
    ("rate(1 minutes)", "\"rate(1 minutes)\" needs the singular unit with 1; write rate(1 minute)"),
    ("rate(1 days)", "write rate(1 day)"),
    ("rate(1 seconds)", "write rate(1 second)"),
    ("rate(5 minute)", "\"rate(5 minute)\" needs the plural unit with 5; write rate(5 minutes)"),
    ("rate(2 hour)", "write rate(2 hours)"),
    ("rate(10 second)", "write rate(10 seconds)"),
    // Rates: the number.
    ("rate(0 minutes)", "rate value \"0\" must be positive; use 1 or more, as in rate(1 minute)"),
    ("rate(00 minutes)", "must be positive"),
    ("rate(05 minutes)", "rate value \"05\" has a leading zero; write it as 5, as in rate(5 minutes)"),
    ("rate(-5 minutes)", "rate value \"-5\" is not a whole number"),
    ("rate(+5 minutes)", "is not a whole number"),
    ("rate(1.5 hours)", "is not a whole number; use a positive whole number without a sign, as in rate(90 minutes)"),
    ("rate(five minutes)", "is not a whole number"),
    ("rate(4294967296 seconds)", "rate value \"4294967296\" is too large; use at most 4294967295, or a larger unit"),
    // Rates: spacing.
    ("rate(5  minutes)", "\"rate(5  minutes)\" must be a number and a unit separated by one space"),
    ("rate( 5 minutes)", "separated by one space"),
    ("rate(5 minutes )", "separated by one space"),
    ("rate(5minutes)", "separated by one space"),
    ("rate(5\tminutes)", "separated by one space"),
    ("rate()", "separated by one space"),
    // Rates: the unit.
    ("rate(5 Minutes)", "rate unit \"Minutes\" must be lowercase; write rate(5 minutes)"),
    ("rate(1 HOUR)", "write rate(1 hour)"),
    ("rate(2 weeks)", "rate unit \"weeks\" is not supported; use days instead, as in rate(14 days)"),
    ("rate(5 mins)", "rate unit \"mins\" is not supported; use seconds, minutes, hours or days"),
    ("rate(1 ms)", "as in rate(1 minute)"),
    // Cron: shape.
    (
        "cron(0 12 * * *)",
        "has 5 fields but needs 6 (minutes hours day-of-month month day-of-week year); this looks like Unix crontab syntax",
    ),
    (
        "cron(0 0 12 * * ? *)",
        "has 7 fields but needs 6 (minutes hours day-of-month month day-of-week year); EventBridge cron has no seconds field",
    ),
    ("cron(0)", "has 1 fields but needs 6"),
    ("cron()", "separate the six cron fields with single spaces"),
    ("cron(0  12 * * ? *)", "separate the six cron fields with single spaces, as in cron(0 12 * * ? *)"),
    ("cron( 0 12 * * ? *)", "single spaces"),
    ("cron(0 12 * * ? * )", "single spaces"),
    ("cron(0\t12 * * ? *)", "single spaces"),
    // Cron: out of range, for every field.
    ("cron(60 12 * * ? *)", "cron minutes field \"60\" is out of range 0-59; use a minute from 0 to 59"),
    ("cron(0 24 * * ? *)", "cron hours field \"24\" is out of range 0-23; use an hour from 0 to 23"),
    ("cron(0 12 0 * ? *)", "cron day-of-month field \"0\" is out of range 1-31; use a day from 1 to 31, or L"),
    ("cron(0 12 32 * ? *)", "cron day-of-month field \"32\" is out of range 1-31"),
    ("cron(0 12 * 0 ? *)", "cron month field \"0\" is out of range 1-12; use 1-12 or JAN-DEC"),
    ("cron(0 12 * 13 ? *)", "cron month field \"13\" is out of range 1-12"),
    ("cron(0 12 ? * 8 *)", "cron day-of-week field \"8\" is out of range 1-7 (1 = SUN); use 1-7 or SUN-SAT"),
    ("cron(0 12 ? * 0 *)", "cron day-of-week field \"0\" is out of range 1-7 (1 = SUN); use 1-7 or SUN-SAT"),
    ("cron(0 12 * * ? 1969)", "cron year field \"1969\" is out of range 1970-2199; use a year from 1970 to 2199"),
    ("cron(0 12 * * ? 2200)", "cron year field \"2200\" is out of range 1970-2199"),
    ("cron(0 12 * * ? 26)", "cron year field \"26\" is out of range 1970-2199"),
    ("cron(0-60 12 * * ? *)", "cron minutes field \"60\" is out of range"),
    ("cron(99999999999 12 * * ? *)", "cron minutes field \"99999999999\" is out of range"),
    ("cron(0 12 ? * 0-6 *)", "cron day-of-week field \"0\" is out of range 1-7 (1 = SUN)"),
    // Cron: the day fields.
    (
        "cron(0 12 * * * *)",
        "specify either day-of-month or day-of-week and put ? in the other, as in cron(0 12 * * ? *)",
    ),
    ("cron(0 12 1 * MON *)", "specify either day-of-month or day-of-week and put ? in the other"),
    ("cron(0 12 L * L *)", "specify either day-of-month or day-of-week"),
    ("cron(0 12 ? * ? *)", "day-of-month and day-of-week are both ?; put * or the days you want in one of them"),
    (
        "cron(? 12 * * ? *)",
        "cron minutes field \"?\" uses ?, which only day-of-month and day-of-week accept; use * to select every value",
    ),
    ("cron(0 12 * ? ? *)", "cron month field \"?\" uses ?"),
    ("cron(0 12 * * ? ?)", "cron year field \"?\" uses ?"),
    ("cron(0 12 1,? * ? *)", "uses ? in a list; ? must be the whole field"),
    // Cron: L, W and #.
    ("cron(0 12 L,15 * ? *)", "cron day-of-month field \"L,15\" mixes L or W with other items"),
    ("cron(0 12 1-5W * ? *)", "mixes L or W with other items"),
    ("cron(0 12 15L * ? *)", "mixes L or W with other items"),
    ("cron(0 12 L-3 * ? *)", "counts back from the last day, which EventBridge does not support"),
    ("cron(0 12 W * ? *)", "needs a day before W"),
    ("cron(0 12 32W * ? *)", "cron day-of-month field \"32W\" is out of range 1-31"),
    ("cron(0 12 0W * ? *)", "is out of range 1-31"),
    ("cron(0 12 ? * 2L,6L *)", "cron day-of-week field \"2L,6L\" mixes L or # with other items"),
    ("cron(0 12 ? * 8L *)", "cron day-of-week field \"8\" is out of range 1-7"),
    ("cron(0 12 ? * 3#1,6#3 *)", "lists more than one # item, which EventBridge does not allow"),
    ("cron(0 12 ? * 3#1,5 *)", "mixes L or # with other items"),
    ("cron(0 12 ? * 3#6 *)", "cron day-of-week field \"3#6\" asks for occurrence \"6\" of a day; use 1 to 5"),
    ("cron(0 12 ? * 3#0 *)", "asks for occurrence \"0\""),
    ("cron(0 12 ? * 3# *)", "asks for occurrence \"\""),
    ("cron(0 12 ? * 8#1 *)", "cron day-of-week field \"8\" is out of range"),
    ("cron(0 12 L * ? * )", "single spaces"),
    // Cron: steps.
    ("cron(*/60 * * * ? *)", "cron minutes field \"*/60\" has step \"60\"; use a step from 1 to 59, as in 0/15"),
    ("cron(0/0 * * * ? *)", "has step \"0\"; use a step from 1 to 59"),
    ("cron(0 */24 * * ? *)", "cron hours field \"*/24\" has step \"24\"; use a step from 1 to 23"),
    ("cron(0 0 1/32 * ? *)", "use a step from 1 to 31, as in 1/7"),
    ("cron(0 0 1 */13 ? *)", "use a step from 1 to 12"),
    ("cron(0 0 1 1 ? */230)", "use a step from 1 to 229, as in 1970/10"),
    ("cron(0/x * * * ? *)", "has step \"x\""),
    ("cron(0/5/5 * * * ? *)", "has step \"5/5\""),
    ("cron(/5 * * * ? *)", "has a step without a start; write */5 or 0/5"),
    ("cron(0 0 /5 * ? *)", "has a step without a start; write */5 or 1/5"),
    (
        "cron(0 12 ? * MON/2 *)",
        "cron day-of-week field \"MON/2\" uses /, which day-of-week does not accept; list the days instead",
    ),
    ("cron(0 12 ? * */2 *)", "uses /, which day-of-week does not accept"),
    // Cron: ranges and lists.
    (
        "cron(0 22-2 * * ? *)",
        "cron hours field \"22-2\" is a range that runs backwards; write the low value first, or split it in two, as in 22-23,0-2",
    ),
    ("cron(0 12 ? * FRI-MON *)", "as in FRI-SAT,SUN-MON"),
    ("cron(0 12 ? NOV-FEB * *)", "as in NOV-DEC,JAN-FEB"),
    (
        "cron(0 12 * * ? 2030-2020)",
        "cron year field \"2030-2020\" is a range that runs backwards; write the earlier year first",
    ),
    ("cron(1-2-3 12 * * ? *)", "cron minutes field \"2-3\" is not a number"),
    ("cron(1- 12 * * ? *)", "cron minutes field \"1-\" is not a number"),
    ("cron(1-,2 12 * * ? *)", "cron minutes field \"1-,2\" is not a number"),
    ("cron(1,,2 12 * * ? *)", "cron minutes field \"1,,2\" has an empty item; remove the extra comma"),
    ("cron(1, 12 * * ? *)", "cron minutes field \"1,\" has an empty item"),
    ("cron(*,5 12 * * ? *)", "lists * with other items; * already selects every value, so use * alone"),
    // Cron: names.
    ("cron(0 12 * JANUARY ? *)", "cron month field \"JANUARY\" is not a month; use 1-12 or JAN-DEC"),
    ("cron(0 12 * MON ? *)", "cron month field \"MON\" is not a month"),
    ("cron(0 12 ? * MONDAY *)", "cron day-of-week field \"MONDAY\" is not a day of the week; use 1-7 or SUN-SAT"),
    ("cron(0 12 ? * JAN *)", "cron day-of-week field \"JAN\" is not a day of the week"),
    ("cron(x 12 * * ? *)", "cron minutes field \"x\" is not a number; use a minute from 0 to 59"),
    ("cron(0 noon * * ? *)", "cron hours field \"noon\" is not a number; use an hour from 0 to 23"),
    ("cron(0 12 FIRST * ? *)", "cron day-of-month field \"FIRST\" is not a number; use a day from 1 to 31, or L"),
    ("cron(0 12 * * ? last)", "cron year field \"last\" is not a number"),
    ("cron(-1 12 * * ? *)", "cron minutes field \"-1\" is not a number"),
    // Cron: expressions that can never fire.
    ("cron(0 12 30 2 ? *)", "\"cron(0 12 30 2 ? *)\" never fires: no date from 1970 to 2199 matches"),
    ("cron(0 12 31 4,6,9,11 ? *)", "never fires"),
    ("cron(0 12 ? 2 2#5 2027)", "never fires"),
    ("cron(0 12 29 FEB ? 2100)", "never fires"),
];

#[test]
fn invalid_expressions_are_rejected_with_a_helpful_message() {
    for &(expr, expected) in INVALID {
        match Schedule::parse(expr) {
            Ok(parsed) => panic!("{expr:?} should be rejected, parsed as {parsed}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains(expected), "message for {expr:?}:\n  got  {message}\n  want …{expected}…");
                assert_eq!(e.message(), message);
            }
        }
    }
}

#[test]
fn messages_are_lowercase_one_line_and_without_a_trailing_period() {
    for &(expr, _) in INVALID {
        let message = Schedule::parse(expr).unwrap_err().to_string();
        assert!(message.starts_with(|c: char| !c.is_ascii_uppercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn overlong_expressions_are_rejected_before_parsing() {
    let longest = format!("cron(0 12 * * ? {})", (1970..2199).map(|y| y.to_string()).collect::<Vec<_>>().join(","));
    assert!(longest.len() > MAX_EXPRESSION_LEN);
    let message = Schedule::parse(&longest).unwrap_err().to_string();
    assert!(message.starts_with(&format!("schedule is {} bytes long; shorten it to at most 256 bytes", longest.len())));

    let fits = format!("cron({} 12 * * ? *)", (0..60).map(|m| m.to_string()).collect::<Vec<_>>().join(","));
    assert!(fits.len() <= MAX_EXPRESSION_LEN);
    assert_eq!(schedule(&fits).to_string(), fits);
}

#[test]
fn user_input_in_messages_is_escaped() {
    let message = Schedule::parse("cron(0 \"x\" * * ? *)").unwrap_err().to_string();
    assert!(message.contains(r#"cron hours field "\"x\"" is not a number"#), "{message}");
}

#[test]
fn schedules_serialize_as_their_normalized_expression() {
    let parsed = schedule("cron(0 9 ? * mon-fri *)");
    assert_eq!(serde_json::to_string(&parsed).unwrap(), r#""cron(0 9 ? * MON-FRI *)""#);
    let back: Schedule = serde_json::from_str(r#""cron(0 9 ? * MON-FRI *)""#).unwrap();
    assert_eq!(back, parsed);
    let back: Schedule = serde_json::from_str(r#""rate(5 minutes)""#).unwrap();
    assert_eq!(back, schedule("rate(5 minutes)"));

    let error = serde_json::from_str::<Schedule>(r#""rate(5 minute)""#).unwrap_err().to_string();
    assert!(error.contains("needs the plural unit with 5; write rate(5 minutes)"), "{error}");
    assert!(serde_json::from_str::<Schedule>("5").is_err());
}

#[test]
fn rate_accessors_describe_the_interval() {
    let Schedule::Rate(rate) = schedule("rate(90 minutes)") else { panic!("a rate") };
    assert_eq!(rate.value(), 90);
    assert_eq!(rate.unit(), crate::calendar::RateUnit::Minute);
    assert_eq!(rate.interval(), std::time::Duration::from_secs(90 * 60));
    assert_eq!(rate.unit().singular(), "minute");
    assert_eq!(rate.unit().plural(), "minutes");
}
