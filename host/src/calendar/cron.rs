//! `cron(...)` expressions: parsing, validation and the normalized text form.
//!
//! The grammar is EventBridge's, which follows Quartz: six fields, each a comma-separated list of
//! `*`, a value, a range `a-b`, or one of those followed by a step `/n`; plus `?`, `L`, `W` and `#`
//! in the two day fields. Forms that EventBridge does not document and that Quartz may read
//! differently (ranges that wrap around such as `FRI-MON`, offsets such as `L-3`, `/` in day-of-week,
//! `*` inside a list) are rejected with a hint, so that an expression Sluice accepts is one
//! EventBridge accepts too.

use std::fmt;

use super::{ScheduleError, quote};

/// A `cron(minutes hours day-of-month month day-of-week year)` expression, evaluated in a time zone.
///
/// | Field        | Values                     | Wildcards       |
/// |--------------|----------------------------|-----------------|
/// | minutes      | 0-59                       | `, - * /`       |
/// | hours        | 0-23                       | `, - * /`       |
/// | day-of-month | 1-31                       | `, - * ? / L W` |
/// | month        | 1-12 or JAN-DEC            | `, - * /`       |
/// | day-of-week  | 1-7 or SUN-SAT (1 = SUN)   | `, - * ? L #`   |
/// | year         | 1970-2199                  | `, - * /`       |
///
/// - `,` separates items, `a-b` is a range (low value first), `*` is every value, and `x/n` takes
///   every `n`th value starting at `x` (a value, a range or `*`), as in `0/15` or `8-17/2`.
/// - Exactly one of day-of-month and day-of-week is `?`, meaning "any": the other one picks the days.
/// - Day-of-month `L` is the last day of the month, `LW` its last weekday (Monday to Friday), and
///   `15W` the weekday nearest the 15th without leaving the month (no firing that month if the month
///   has no 15th).
/// - Day-of-week `L` is the last day of the week (7 = SAT), `6L` the month's last Friday, and `3#2`
///   the month's second Tuesday (`#` takes 1 to 5).
/// - `L`, `W` and `#` forms must be the whole field; `/` is not allowed in day-of-week.
/// - Month and day names are case-insensitive; the normalized form writes them, and `L` and `W`, in
///   uppercase and drops leading zeros from numbers.
///
/// Expressions that can never fire, such as `cron(0 0 30 2 ? *)`, are rejected too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    pub(super) minutes: List,
    pub(super) hours: List,
    pub(super) days: Days,
    pub(super) months: List,
    pub(super) years: List,
    /// The shortest wall-clock gap between two firings, in minutes; `None` if it fires at most once.
    pub(super) min_gap_minutes: Option<u64>,
}

/// One of the six fields, with what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    Minutes,
    Hours,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

const MONTH_NAMES: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The canonical example, used wherever a message needs a complete valid expression.
const EXAMPLE: &str = "cron(0 12 * * ? *)";

impl FieldKind {
    /// The field's name in messages, as the EventBridge documentation spells it (in lowercase).
    fn name(self) -> &'static str {
        match self {
            FieldKind::Minutes => "minutes",
            FieldKind::Hours => "hours",
            FieldKind::DayOfMonth => "day-of-month",
            FieldKind::Month => "month",
            FieldKind::DayOfWeek => "day-of-week",
            FieldKind::Year => "year",
        }
    }

    /// The smallest value the field accepts.
    pub(super) fn min(self) -> u16 {
        match self {
            FieldKind::Minutes | FieldKind::Hours => 0,
            FieldKind::DayOfMonth | FieldKind::Month | FieldKind::DayOfWeek => 1,
            FieldKind::Year => super::MIN_YEAR as u16,
        }
    }

    /// The largest value the field accepts.
    fn max(self) -> u16 {
        match self {
            FieldKind::Minutes => 59,
            FieldKind::Hours => 23,
            FieldKind::DayOfMonth => 31,
            FieldKind::Month => 12,
            FieldKind::DayOfWeek => 7,
            FieldKind::Year => super::MAX_YEAR as u16,
        }
    }

    /// The largest step accepted: Quartz, and so EventBridge, refuses larger ones (`*/60` in minutes
    /// is rejected by AWS).
    fn max_step(self) -> u16 {
        match self {
            FieldKind::DayOfMonth | FieldKind::Month => self.max(),
            _ => self.max() - self.min(),
        }
    }

    /// A step that reads naturally in this field, for examples in messages.
    fn example_step(self) -> u16 {
        match self {
            FieldKind::Minutes => 15,
            FieldKind::Hours => 6,
            FieldKind::DayOfMonth => 7,
            FieldKind::Month => 3,
            FieldKind::DayOfWeek | FieldKind::Year => 10,
        }
    }

    /// The names the field accepts besides numbers, indexed from its first value.
    fn names(self) -> &'static [&'static str] {
        match self {
            FieldKind::Month => &MONTH_NAMES,
            FieldKind::DayOfWeek => &DAY_NAMES,
            _ => &[],
        }
    }

    /// How to write a valid value, completing "...; use ...".
    fn value_hint(self) -> &'static str {
        match self {
            FieldKind::Minutes => "a minute from 0 to 59",
            FieldKind::Hours => "an hour from 0 to 23",
            FieldKind::DayOfMonth => "a day from 1 to 31, or L for the last day of the month",
            FieldKind::Month => "1-12 or JAN-DEC",
            FieldKind::DayOfWeek => "1-7 or SUN-SAT",
            FieldKind::Year => "a year from 1970 to 2199",
        }
    }

    /// The valid range as shown in "out of range" messages.
    fn range_text(self) -> String {
        match self {
            FieldKind::DayOfWeek => "1-7 (1 = SUN)".to_string(),
            _ => format!("{}-{}", self.min(), self.max()),
        }
    }

    /// An error about `token` in this field: `cron <field> field "<token>" <problem>`.
    fn error(self, token: &str, problem: impl fmt::Display) -> ScheduleError {
        ScheduleError::new(format!("cron {} field {} {problem}", self.name(), quote(token)))
    }

    fn out_of_range(self, token: &str) -> ScheduleError {
        self.error(token, format_args!("is out of range {}; use {}", self.range_text(), self.value_hint()))
    }
}

/// A set of field values, stored as offsets from the field's minimum (years start at 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Bits([u64; 4]);

impl Bits {
    fn insert(&mut self, index: u16) {
        self.0[usize::from(index / 64)] |= 1 << (index % 64);
    }

    pub(super) fn contains(&self, index: u16) -> bool {
        index < 256 && self.0[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }

    /// The offsets in the set, ascending. It skips empty stretches a word at a time, because the
    /// search for the next firing iterates these sets in its inner loops.
    pub(super) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().enumerate().flat_map(|(word_index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as u16;
                    rest &= rest - 1;
                    word_index as u16 * 64 + bit
                })
            })
        })
    }
}

/// A value as written: a number, or a month or day name (kept so that the normalized form keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Value {
    pub(super) number: u16,
    named: bool,
}

/// What a step starts from, or the whole item when there is no step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    All,
    One(Value),
    Range(Value, Value),
}

/// One comma-separated item of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    base: Base,
    step: Option<u16>,
}

/// A field that is a list of items, with the values they select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct List {
    kind: FieldKind,
    items: Vec<Item>,
    pub(super) values: Bits,
}

/// Which day field picks the days; the other one is `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Days {
    Month(DayOfMonth),
    Week(DayOfWeek),
}

/// A day-of-month field other than `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DayOfMonth {
    List(List),
    /// `L`: the last day of the month.
    Last,
    /// `LW`: the last weekday of the month.
    LastWeekday,
    /// `nW`: the weekday nearest day `n`, within the month.
    NearestWeekday(u8),
}

/// A day-of-week field other than `?`. Days count from 1 = SUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DayOfWeek {
    List(List),
    /// `L`: the last day of every week, Saturday.
    Last,
    /// `nL`: the last such weekday of the month.
    LastOf(Value),
    /// `n#k`: the `k`th such weekday of the month.
    Nth(Value, u8),
}

impl Cron {
    /// Parses what is between the parentheses of `cron(...)`.
    pub(crate) fn parse_body(body: &str) -> Result<Cron, ScheduleError> {
        let expr = format!("cron({body})");
        let fields: Vec<&str> = body.split(' ').collect();
        if fields.iter().any(|field| field.is_empty() || field.contains(char::is_whitespace)) {
            return Err(ScheduleError::new(format!(
                "{}: separate the six cron fields with single spaces, as in {EXAMPLE}",
                quote(&expr)
            )));
        }
        let [minutes, hours, day_of_month, month, day_of_week, year] = fields[..] else {
            return Err(field_count_error(&expr, fields.len()));
        };
        let minutes = parse_list(FieldKind::Minutes, minutes)?;
        let hours = parse_list(FieldKind::Hours, hours)?;
        let day_of_month = parse_day_of_month(day_of_month)?;
        let months = parse_list(FieldKind::Month, month)?;
        let day_of_week = parse_day_of_week(day_of_week)?;
        let years = parse_list(FieldKind::Year, year)?;
        let days = match (day_of_month, day_of_week) {
            (Some(days), None) => Days::Month(days),
            (None, Some(days)) => Days::Week(days),
            (Some(_), Some(_)) => {
                return Err(ScheduleError::new(format!(
                    "specify either day-of-month or day-of-week and put ? in the other, as in {EXAMPLE}"
                )));
            }
            (None, None) => {
                return Err(ScheduleError::new(format!(
                    "day-of-month and day-of-week are both ?; put * or the days you want in one of them, as in {EXAMPLE}"
                )));
            }
        };
        let mut cron = Cron { minutes, hours, days, months, years, min_gap_minutes: None };
        match cron.scan() {
            Some(min_gap_minutes) => cron.min_gap_minutes = min_gap_minutes,
            None => {
                return Err(ScheduleError::new(format!(
                    "{} never fires: no date from 1970 to 2199 matches its day-of-month, month, day-of-week \
                     and year fields; check for dates that do not exist, such as 30 FEB",
                    quote(&cron.to_string())
                )));
            }
        }
        Ok(cron)
    }
}

/// The error for a cron expression without exactly six fields, guessing at the usual causes.
fn field_count_error(expr: &str, count: usize) -> ScheduleError {
    let fields = "minutes hours day-of-month month day-of-week year";
    let hint = match count {
        // Five fields is the Unix crontab format, which has no year and no `?`.
        5 => format!(
            "this looks like Unix crontab syntax; add a year field (* for every year) and put ? in \
             day-of-month or day-of-week, as in {EXAMPLE}"
        ),
        // Seven fields is usually Quartz or Spring syntax, which starts with seconds.
        7 => format!("EventBridge cron has no seconds field; drop the first field, as in {EXAMPLE}"),
        _ => format!("write one value for each, as in {EXAMPLE}"),
    };
    ScheduleError::new(format!("{} has {count} fields but needs 6 ({fields}); {hint}", quote(expr)))
}

/// Parses a field that is a plain list: minutes, hours, month, year, or a day field without `L`,
/// `W`, `#` or `?`.
fn parse_list(kind: FieldKind, text: &str) -> Result<List, ScheduleError> {
    let mut list = List { kind, items: Vec::new(), values: Bits::default() };
    for item_text in text.split(',') {
        if item_text.is_empty() {
            return Err(kind.error(text, "has an empty item; remove the extra comma"));
        }
        let item = parse_item(kind, item_text, text)?;
        let (low, high) = match item.base {
            Base::All => (kind.min(), kind.max()),
            // A single value with a step runs to the end of the field, as in Quartz: `5/15` in minutes
            // is 5, 20, 35 and 50.
            Base::One(value) if item.step.is_some() => (value.number, kind.max()),
            Base::One(value) => (value.number, value.number),
            Base::Range(low, high) => (low.number, high.number),
        };
        let step = usize::from(item.step.unwrap_or(1));
        for value in (low..=high).step_by(step) {
            list.values.insert(value - kind.min());
        }
        list.items.push(item);
    }
    if list.items.len() > 1 && list.items.iter().any(|item| item.base == Base::All && item.step.is_none()) {
        return Err(kind.error(text, "lists * with other items; * already selects every value, so use * alone"));
    }
    Ok(list)
}

/// Parses one comma-separated item; `field` is the whole field, for messages.
fn parse_item(kind: FieldKind, text: &str, field: &str) -> Result<Item, ScheduleError> {
    if text == "?" {
        return Err(match kind {
            FieldKind::DayOfMonth | FieldKind::DayOfWeek => {
                kind.error(field, "uses ? in a list; ? must be the whole field")
            }
            _ => {
                kind.error(field, "uses ?, which only day-of-month and day-of-week accept; use * to select every value")
            }
        });
    }
    let special = match kind {
        FieldKind::DayOfMonth => text.contains(['L', 'l', 'W', 'w']),
        FieldKind::DayOfWeek => text.contains('#') || text.ends_with(['L', 'l']),
        _ => false,
    };
    if special {
        return Err(special_not_alone(kind, field));
    }
    let (base_text, step) = match text.split_once('/') {
        Some((base_text, step_text)) => (base_text, Some(parse_step(kind, step_text, field)?)),
        None => (text, None),
    };
    let base = if base_text == "*" {
        Base::All
    } else if base_text.is_empty() {
        return Err(kind.error(
            field,
            format_args!("has a step without a start; write */{} or {}/{0}", step.unwrap_or(1), kind.min()),
        ));
    } else if let Some((low, high)) = base_text.split_once('-') {
        let (low, high) = (parse_value(kind, low, field)?, parse_value(kind, high, field)?);
        if low.number > high.number {
            return Err(backwards_range(kind, base_text, low, high));
        }
        Base::Range(low, high)
    } else {
        Base::One(parse_value(kind, base_text, field)?)
    };
    Ok(Item { base, step })
}

/// The error for `L`, `W` or `#` mixed with other items.
fn special_not_alone(kind: FieldKind, field: &str) -> ScheduleError {
    match kind {
        FieldKind::DayOfMonth if field.to_ascii_uppercase().contains("L-") => kind.error(
            field,
            "counts back from the last day, which EventBridge does not support; use L for the last day of the month",
        ),
        FieldKind::DayOfMonth => kind.error(
            field,
            "mixes L or W with other items; L (last day), LW (last weekday) or 15W (weekday nearest the 15th) \
             must be the whole field",
        ),
        _ if field.matches('#').count() > 1 => kind.error(
            field,
            "lists more than one # item, which EventBridge does not allow; use one, as in 3#2 for the second \
             Tuesday, and another schedule for the rest",
        ),
        _ => kind.error(
            field,
            "mixes L or # with other items; L (Saturday), 6L (last Friday of the month) or 3#2 (second Tuesday) \
             must be the whole field",
        ),
    }
}

/// Parses the step after `/`.
fn parse_step(kind: FieldKind, text: &str, field: &str) -> Result<u16, ScheduleError> {
    if kind == FieldKind::DayOfWeek {
        return Err(
            kind.error(field, "uses /, which day-of-week does not accept; list the days instead, as in MON,WED,FRI")
        );
    }
    let max = kind.max_step();
    let step = parse_number(text).filter(|step| (1..=u32::from(max)).contains(step));
    match step {
        Some(step) => Ok(step as u16),
        None => Err(kind.error(
            field,
            format_args!(
                "has step {}; use a step from 1 to {max}, as in {}/{}",
                quote(text),
                kind.min(),
                kind.example_step()
            ),
        )),
    }
}

/// Parses digits (leading zeros allowed, as in Quartz) into a number, or `None` if `text` is not all
/// digits or is absurdly long.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses one value: a number in the field's range, or a month or day name in those fields.
fn parse_value(kind: FieldKind, text: &str, field: &str) -> Result<Value, ScheduleError> {
    if let Some(number) = parse_number(text) {
        if !(u32::from(kind.min())..=u32::from(kind.max())).contains(&number) {
            return Err(kind.out_of_range(text));
        }
        return Ok(Value { number: number as u16, named: false });
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        return Err(kind.out_of_range(text));
    }
    let names = kind.names();
    if let Some(index) = names.iter().position(|name| name.eq_ignore_ascii_case(text)) {
        return Ok(Value { number: index as u16 + 1, named: true });
    }
    let what = match kind {
        FieldKind::Month => "is not a month",
        FieldKind::DayOfWeek => "is not a day of the week",
        _ => "is not a number",
    };
    let token = if text.is_empty() { field } else { text };
    Err(kind.error(token, format_args!("{what}; use {}", kind.value_hint())))
}

/// The error for `high-low`, suggesting the two ranges that wrap around (not for years, which do not).
fn backwards_range(kind: FieldKind, text: &str, low: Value, high: Value) -> ScheduleError {
    if kind == FieldKind::Year {
        return kind.error(text, "is a range that runs backwards; write the earlier year first");
    }
    let write = |value: Value| value.to_text(kind);
    let (first, last) =
        (Value { number: kind.min(), named: low.named }, Value { number: kind.max(), named: low.named });
    kind.error(
        text,
        format_args!(
            "is a range that runs backwards; write the low value first, or split it in two, as in {}-{},{}-{}",
            write(low),
            write(last),
            write(first),
            write(high)
        ),
    )
}

/// Parses the day-of-month field: `None` for `?`.
fn parse_day_of_month(text: &str) -> Result<Option<DayOfMonth>, ScheduleError> {
    let kind = FieldKind::DayOfMonth;
    let upper = text.to_ascii_uppercase();
    Ok(Some(match upper.as_str() {
        "?" => return Ok(None),
        "L" => DayOfMonth::Last,
        "LW" => DayOfMonth::LastWeekday,
        "W" => return Err(kind.error(text, "needs a day before W; use 15W for the weekday nearest the 15th, or LW")),
        _ => match upper.strip_suffix('W').and_then(parse_number) {
            Some(day @ 1..=31) => DayOfMonth::NearestWeekday(day as u8),
            Some(_) => return Err(kind.out_of_range(text)),
            None => DayOfMonth::List(parse_list(kind, text)?),
        },
    }))
}

/// Parses the day-of-week field: `None` for `?`.
fn parse_day_of_week(text: &str) -> Result<Option<DayOfWeek>, ScheduleError> {
    let kind = FieldKind::DayOfWeek;
    if text == "?" {
        return Ok(None);
    }
    if text.eq_ignore_ascii_case("L") {
        return Ok(Some(DayOfWeek::Last));
    }
    // `L` and `#` forms are one value and a suffix; anything with a list or range in front is
    // reported by `parse_list` as not standing alone.
    let single = !text.contains([',', '-', '/', '*']);
    if single {
        if let Some((day, nth)) = text.split_once('#') {
            let day = parse_value(kind, day, text)?;
            return match parse_number(nth) {
                Some(nth @ 1..=5) => Ok(Some(DayOfWeek::Nth(day, nth as u8))),
                _ => Err(kind.error(
                    text,
                    format_args!(
                        "asks for occurrence {} of a day; use 1 to 5, as in 3#2 for the second Tuesday",
                        quote(nth)
                    ),
                )),
            };
        }
        if let Some(day) = text.strip_suffix(['L', 'l']) {
            return Ok(Some(DayOfWeek::LastOf(parse_value(kind, day, text)?)));
        }
    }
    Ok(Some(DayOfWeek::List(parse_list(kind, text)?)))
}

impl Value {
    fn to_text(self, kind: FieldKind) -> String {
        match kind.names().get(usize::from(self.number).wrapping_sub(1)) {
            Some(name) if self.named => (*name).to_string(),
            _ => self.number.to_string(),
        }
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, item) in self.items.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match item.base {
                Base::All => f.write_str("*")?,
                Base::One(value) => f.write_str(&value.to_text(self.kind))?,
                Base::Range(low, high) => write!(f, "{}-{}", low.to_text(self.kind), high.to_text(self.kind))?,
            }
            if let Some(step) = item.step {
                write!(f, "/{step}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron({} {} ", self.minutes, self.hours)?;
        match &self.days {
            Days::Month(DayOfMonth::List(list)) => write!(f, "{list}")?,
            Days::Month(DayOfMonth::Last) => f.write_str("L")?,
            Days::Month(DayOfMonth::LastWeekday) => f.write_str("LW")?,
            Days::Month(DayOfMonth::NearestWeekday(day)) => write!(f, "{day}W")?,
            Days::Week(_) => f.write_str("?")?,
        }
        write!(f, " {} ", self.months)?;
        let kind = FieldKind::DayOfWeek;
        match &self.days {
            Days::Month(_) => f.write_str("?")?,
            Days::Week(DayOfWeek::List(list)) => write!(f, "{list}")?,
            Days::Week(DayOfWeek::Last) => f.write_str("L")?,
            Days::Week(DayOfWeek::LastOf(day)) => write!(f, "{}L", day.to_text(kind))?,
            Days::Week(DayOfWeek::Nth(day, nth)) => write!(f, "{}#{nth}", day.to_text(kind))?,
        }
        write!(f, " {})", self.years)
    }
}
