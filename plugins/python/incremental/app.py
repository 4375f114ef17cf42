"""Example Sluice plugin in Python: delivers only the items that changed since the last run,
following next-page links, with a cursor kept in the project's state. The same behaviour, state
format and error messages as the Rust `plugins/incremental`, whose docs describe the protocol:

- every body is `{"items": [{"id": ..., "updated_at": "..."}, ...], "next": "<url>" | null}`;
- on the first page of a run, `prepare` adds `since=<cursor>` when a cursor is stored;
- `transform` delivers each item whose cursor is newer than the cursor the run started from,
  keyed by its `id`, and asks for `next` within the same run.

Settings: `cursor_field` (default `updated_at`), `since_param` (default `since`).

State: `{"cursor": "<newest cursor delivered>"}`, plus `"run": {"scheduled_at_ms": ...,
"since": ...}` while a run is paging, so that later pages (which see the state an earlier page
returned) keep comparing against the cursor the run started from.
"""

import sluice_plugin as sluice


def load(poll):
    """The state in `poll` as a dict, empty before the first run."""
    state = sluice.state_json(poll)
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise sluice.Rejected(
            "stored state does not have the expected shape: not an object; reset the project's "
            "state if the plugin's state format changed"
        )
    return state


def current_run(state, poll):
    """The mark of the current run when an earlier page of it wrote `state`, else None."""
    run = state.get("run")
    if isinstance(run, dict) and run.get("scheduled_at_ms") == poll.scheduled_at_ms:
        return run
    return None


def item_cursor(item, index, field):
    cursor = item.get(field) if isinstance(item, dict) else None
    if not isinstance(cursor, str):
        raise sluice.Rejected(
            f"item {index} has no string `{field}`; set `cursor_field` to the item field that "
            "holds an ISO-8601 timestamp"
        )
    return cursor


def item_id(item, index):
    value = item.get("id")
    if isinstance(value, str):
        key = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        key = str(value)
    else:
        key = ""
    if not 1 <= len(key) <= 256:
        raise sluice.Rejected(
            f"item {index} has no usable `id`; every item needs an `id` that is a number or a "
            "string of 1 to 256 characters"
        )
    return key


def compact(state):
    """The state without absent fields, as the Rust plugin writes it."""
    return {key: value for key, value in state.items() if value is not None}


class Incremental(sluice.Plugin):
    def prepare(self, poll, request):
        state = load(poll)
        cursor = state.get("cursor")
        if current_run(state, poll) is None and cursor is not None:
            return sluice.with_query(request, sluice.setting(poll, "since_param", "since"), cursor)
        return request

    def transform(self, poll, response):
        state = load(poll)
        run = current_run(state, poll)
        since = run.get("since") if run is not None else state.get("cursor")
        page = sluice.body_json(response)
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise sluice.Rejected(
                "response body does not have the expected shape: it needs an `items` array and "
                "an optional `next` URL"
            )
        field = sluice.setting(poll, "cursor_field", "updated_at")

        records, newest = [], state.get("cursor")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise sluice.Rejected(f"item {index} is not an object; every item needs an `id` and a cursor")
            cursor = item_cursor(item, index, field)
            if since is not None and cursor <= since:
                continue
            records.append(sluice.json_record(item, item_id(item, index)))
            if newest is None or cursor > newest:
                newest = cursor

        next_url = page.get("next")
        if next_url is not None:
            if not isinstance(next_url, str) or not next_url.startswith(("https://", "http://")):
                raise sluice.Rejected(
                    f'`next` is "{next_url}", not an absolute URL; this plugin needs a source '
                    "whose `next` links are absolute http(s) URLs"
                )
            paging = compact({"cursor": newest, "run": {"scheduled_at_ms": poll.scheduled_at_ms, "since": since}})
            return sluice.output(records, state=sluice.json_state(paging), next=sluice.get(next_url))
        # The last page of a multi-page run also clears the run mark, so the committed state is
        # the plain cursor even when that page brought nothing newer.
        if newest != state.get("cursor") or run is not None:
            return sluice.output(records, state=sluice.json_state(compact({"cursor": newest})))
        return sluice.output(records)


WitWorld = sluice.export(Incremental)
