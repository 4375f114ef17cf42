//! Example Sluice plugin: delivers only the items that changed since the last run, following
//! next-page links, with a cursor kept in the project's state.
//!
//! # Protocol with the source API
//!
//! Every response body must look like
//!
//! ```json
//! {"items": [{"id": "a1", "updated_at": "2024-05-01T12:00:00Z", ...}, ...],
//!  "next": "https://api.example.com/items?page=2"}
//! ```
//!
//! - `items`: objects with an `id` (a string or number: the record's partition key) and a cursor
//!   field (a string). Cursors are compared as strings, which orders ISO-8601 timestamps in one
//!   time zone and format correctly.
//! - `next`: the absolute URL of the next page, or `null` (or absent) on the last page. The host
//!   fetches it with a plain `GET` within the same run, up to the project's page cap.
//!
//! On the first page of a run, `prepare` adds `since=<cursor>` to the project's request when a
//! cursor is stored, so a source that filters by it sends only newer items. Later pages follow
//! `next` untouched. Whatever the source does with `since`, `transform` delivers each item whose
//! cursor is newer than the cursor at the start of the run, as compact JSON, in order.
//!
//! # Settings
//!
//! - `cursor_field` (default `updated_at`): the item field that holds the cursor.
//! - `since_param` (default `since`): the query parameter that carries the cursor.
//!
//! # State
//!
//! The state is JSON: `{"cursor": "<newest cursor delivered>"}`. While a run is still paging, it
//! also holds `"run": {"scheduled_at_ms": ..., "since": ...}`, so that later pages of the same
//! run (which see the state an earlier page returned) keep comparing against the cursor the run
//! started from; the last page drops it again. A one-page run returns a state only when it saw a
//! newer cursor. The host commits the state only after every record of the run is delivered.
//! When the page cap stops a run early, items on the pages not fetched and older than the new
//! cursor are not delivered later, so set the cap above the number of pages a run needs.

use sluice_plugin::serde_json::{Map, Value};
use sluice_plugin::{Error, Output, Plugin, Poll, Record, Request, Response};

mod state;
use state::State;

/// One page of the source API's answer.
#[derive(serde::Deserialize)]
struct Page {
    items: Vec<Map<String, Value>>,
    #[serde(default)]
    next: Option<String>,
}

struct Incremental;

impl Plugin for Incremental {
    fn prepare(poll: &Poll, request: Request) -> Result<Request, Error> {
        let state = State::load(poll)?;
        match state.first_page_since(poll) {
            Some(cursor) => {
                let param = poll.setting("since_param").unwrap_or("since");
                Ok(request.with_query(param, cursor))
            }
            None => Ok(request),
        }
    }

    fn transform(poll: &Poll, response: Response) -> Result<Output, Error> {
        let state = State::load(poll)?;
        let since = state.run_since(poll);
        let page: Page = response.json()?;
        let field = poll.setting("cursor_field").unwrap_or("updated_at");

        let mut records = Vec::new();
        let mut newest = state.cursor.clone();
        for (index, item) in page.items.iter().enumerate() {
            let cursor = item_cursor(item, index, field)?;
            if since.is_some_and(|since| cursor <= since) {
                continue;
            }
            records.push(Record::json(item, item_id(item, index)?)?);
            if newest.as_deref().is_none_or(|newest| cursor > newest) {
                newest = Some(cursor.to_owned());
            }
        }

        let output = Output::new(records);
        match page.next {
            Some(next) => {
                if !next.starts_with("https://") && !next.starts_with("http://") {
                    return Err(Error::rejected(format!(
                        "`next` is \"{next}\", not an absolute URL; this plugin needs a source \
                         whose `next` links are absolute http(s) URLs"
                    )));
                }
                let paging = State::paging(newest, poll, since);
                Ok(output.with_json_state(&paging)?.with_next(Request::get(next)))
            }
            // The last page of a multi-page run also clears the run mark, so the committed state
            // is the plain cursor even when that page brought nothing newer.
            None if newest != state.cursor || state.continues_run(poll) => {
                Ok(output.with_json_state(&State::done(newest))?)
            }
            None => Ok(output),
        }
    }
}

/// The cursor of the item at `index`, which must be a string.
fn item_cursor<'a>(item: &'a Map<String, Value>, index: usize, field: &str) -> Result<&'a str, Error> {
    match item.get(field) {
        Some(Value::String(cursor)) => Ok(cursor),
        _ => Err(Error::rejected(format!(
            "item {index} has no string `{field}`; set `cursor_field` to the item field that \
             holds an ISO-8601 timestamp"
        ))),
    }
}

/// The partition key of the item at `index`: its `id`, a string or number of 1 to 256
/// characters as Kinesis requires.
fn item_id(item: &Map<String, Value>, index: usize) -> Result<String, Error> {
    let id = match item.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => String::new(),
    };
    match id.chars().count() {
        1..=256 => Ok(id),
        _ => Err(Error::rejected(format!(
            "item {index} has no usable `id`; every item needs an `id` that is a number or a \
             string of 1 to 256 characters"
        ))),
    }
}

sluice_plugin::export!(Incremental);

#[cfg(test)]
mod tests;
