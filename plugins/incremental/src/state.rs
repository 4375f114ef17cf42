//! The plugin's state, and how a page tells whether it starts a run or continues one.

use serde::{Deserialize, Serialize};
use sluice_plugin::{Error, Poll};

/// The JSON state: `{"cursor": "...", "run": {...}}`, both optional.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// The newest cursor delivered, or being delivered by the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cursor: Option<String>,
    /// Present while a run is paging: which run, and the cursor it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run: Option<Run>,
}

/// The mark of a run that returned a next page.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run {
    /// The run's `scheduled_at_ms`, the same on every page of one run.
    pub(crate) scheduled_at_ms: u64,
    /// The cursor the run started from.
    #[serde(default)]
    pub(crate) since: Option<String>,
}

impl State {
    /// The state in `poll`, or the empty state before the first run.
    pub(crate) fn load(poll: &Poll) -> Result<Self, Error> {
        Ok(poll.state_json()?.unwrap_or_default())
    }

    /// The state to return from a page that has a next page: the newest cursor so far, marked
    /// with the run so that the next page can find the cursor the run started from.
    pub(crate) fn paging(cursor: Option<String>, poll: &Poll, since: Option<&str>) -> Self {
        let run = Run { scheduled_at_ms: poll.scheduled_at_ms, since: since.map(str::to_owned) };
        Self { cursor, run: Some(run) }
    }

    /// The state to return from the last page of a run.
    pub(crate) fn done(cursor: Option<String>) -> Self {
        Self { cursor, run: None }
    }

    /// The run this state was written by, if it is the current run (a later page).
    fn current_run(&self, poll: &Poll) -> Option<&Run> {
        self.run.as_ref().filter(|run| run.scheduled_at_ms == poll.scheduled_at_ms)
    }

    /// Whether this state was written by an earlier page of the current run.
    pub(crate) fn continues_run(&self, poll: &Poll) -> bool {
        self.current_run(poll).is_some()
    }

    /// The cursor the current run started from: items at or before it were delivered already.
    pub(crate) fn run_since(&self, poll: &Poll) -> Option<&str> {
        match self.current_run(poll) {
            Some(run) => run.since.as_deref(),
            None => self.cursor.as_deref(),
        }
    }

    /// The cursor to send as `since`, on the first page of a run only: later pages follow the
    /// source's `next` link as it is.
    pub(crate) fn first_page_since(&self, poll: &Poll) -> Option<&str> {
        match self.current_run(poll) {
            Some(_) => None,
            None => self.cursor.as_deref(),
        }
    }
}
