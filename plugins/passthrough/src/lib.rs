//! Example Sluice plugin: delivers each response body unchanged as one record, keyed by the
//! project id so that every record of a project lands on the same shard, in order.
//!
//! It has no settings and keeps no state.

use sluice_plugin::{Error, Output, Plugin, Poll, Record, Response};

/// Kinesis refuses records over 1 MiB, so a bigger body is rejected with advice instead.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

struct Passthrough;

impl Plugin for Passthrough {
    fn transform(poll: &Poll, response: Response) -> Result<Output, Error> {
        if response.body.len() > MAX_RECORD_BYTES {
            return Err(Error::rejected(format!(
                "response body is {} bytes, over the 1 MiB record limit; \
                 page the source API or split the body with a plugin such as json-split",
                response.body.len()
            )));
        }
        Ok(Output::new(vec![Record::new(response.body, poll.project_id.clone())]))
    }
}

sluice_plugin::export!(Passthrough);
