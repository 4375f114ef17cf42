"""Native unit tests of the cursor handling: run with `python3 -m unittest` from this directory,
with `plugins/python/sdk` on PYTHONPATH (`cargo xtask test` does)."""

import json
import unittest

import sluice_plugin as sluice
from app import Incremental


def poll(state=None, scheduled_at_ms=1000, settings=()):
    state = None if state is None else json.dumps(state).encode()
    return sluice.Poll("p", "t", scheduled_at_ms, state, list(settings))


def page(items, next_url=None):
    body = json.dumps({"items": [{"id": i, "updated_at": u} for i, u in items], "next": next_url})
    return sluice.Response(200, [], body.encode())


class IncrementalTest(unittest.TestCase):
    def test_a_paging_run_compares_every_page_with_the_cursor_it_started_from(self):
        plugin = Incremental()
        first = plugin.transform(poll({"cursor": "b"}), page([("x", "a"), ("y", "c")], "http://s/2"))
        self.assertEqual([r.partition_key for r in first.records], ["y"])
        self.assertEqual(first.state, b'{"cursor":"c","run":{"scheduled_at_ms":1000,"since":"b"}}')
        self.assertEqual(first.next.url, "http://s/2")
        # The second page sees the first page's state, and no `since` is added to its request.
        second_poll = sluice.Poll("p", "t", 1000, first.state, [])
        self.assertEqual(plugin.prepare(second_poll, sluice.get("http://s/2")).url, "http://s/2")
        last = plugin.transform(second_poll, page([("z", "bb")]))
        self.assertEqual([r.partition_key for r in last.records], ["z"])
        self.assertEqual(last.state, b'{"cursor":"c"}')

    def test_the_next_run_asks_for_what_is_newer(self):
        request = Incremental().prepare(poll({"cursor": "2026-01-01T00:00:00Z"}, settings=[("since_param", "after")]), sluice.get("http://s/i?a=1"))
        self.assertEqual(request.url, "http://s/i?a=1&after=2026-01-01T00%3A00%3A00Z")

    def test_nothing_newer_keeps_the_state(self):
        output = Incremental().transform(poll({"cursor": "c"}), page([("x", "c")]))
        self.assertEqual((output.records, output.state), ([], None))

    def test_bad_items_and_links_are_rejected(self):
        with self.assertRaises(sluice.Rejected) as caught:
            Incremental().transform(poll(), sluice.Response(200, [], b'{"items": [{"id": "x"}]}'))
        self.assertTrue(str(caught.exception).startswith("item 0 has no string `updated_at`"))
        with self.assertRaises(sluice.Rejected) as caught:
            Incremental().transform(poll(), page([("x", "a")], "/relative"))
        self.assertIn("not an absolute URL", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
