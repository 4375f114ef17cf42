"""Native unit tests, the same cases as the Rust json-split's: run with
`python3 -m unittest discover -s plugins/python/json-split -t plugins/python/json-split` with
`plugins/python/sdk` on PYTHONPATH (`cargo xtask test` does)."""

import unittest

import sluice_plugin as sluice
from app import JsonSplit


def run(settings, body):
    poll = sluice.Poll("proj", "tenant", 0, None, list(settings.items()))
    return JsonSplit().transform(poll, sluice.Response(200, [], body.encode()))


def rejected(settings, body):
    try:
        run(settings, body)
    except sluice.Rejected as error:
        return str(error)
    raise AssertionError("expected a rejection")


class JsonSplitTest(unittest.TestCase):
    def test_splits_top_level_array_keyed_by_project(self):
        output = run({}, '[{"a": 1}, {"b": [true, null]}]')
        self.assertEqual([r.data for r in output.records], [b'{"a":1}', b'{"b":[true,null]}'])
        self.assertTrue(all(r.partition_key == "proj" for r in output.records))
        self.assertEqual((output.state, output.next), (None, None))

    def test_follows_array_path_and_keys_by_field(self):
        body = '{"data": {"items": [{"id": "x"}, {"id": 42}], "other": 1}}'
        output = run({"array_path": "data.items", "partition_key_field": "id"}, body)
        self.assertEqual([r.partition_key for r in output.records], ["x", "42"])

    def test_numeric_segments_index_arrays(self):
        self.assertEqual(len(run({"array_path": "pages.1"}, '{"pages": [[1], [2, 3]]}').records), 2)

    def test_records_are_compact_json_with_sorted_keys_like_the_rust_plugin(self):
        output = run({}, '[{"z": 1, "a": "é", "m": 2.5}]')
        self.assertEqual(output.records[0].data, '{"a":"é","m":2.5,"z":1}'.encode())

    def test_rejects_malformed_json_with_position(self):
        message = rejected({}, "[1, 2")
        self.assertTrue(message.startswith("response body is not valid JSON: "), message)
        self.assertIn("line 1 column 6", message)
        self.assertIn("not valid JSON", rejected({}, "[NaN]"))

    def test_rejects_paths_that_do_not_lead_to_arrays(self):
        body = '{"data": {"items": {"not": "array"}}}'
        message = rejected({"array_path": "data.items"}, body)
        self.assertIn('"data.items" does not lead to an array but to an object', message)
        message = rejected({"array_path": "data.missing"}, body)
        self.assertIn('data (an object) has no "missing"', message)
        self.assertTrue(rejected({}, body).startswith("response body is an object, not an array"))

    def test_rejects_elements_without_key_field_by_index(self):
        settings = {"partition_key_field": "id"}
        self.assertTrue(rejected(settings, '[{"id": 1}, {"name": "no id"}]').startswith("element 1 has no `id` field"))
        message = rejected(settings, '[{"id": {"nested": 1}}]')
        self.assertTrue(message.startswith("element 0: `id` is an object, not a string or number"), message)
        self.assertTrue(rejected(settings, '[{"id": true}]').startswith("element 0: `id` is a boolean"))
        self.assertTrue(rejected(settings, '[{"id": ""}]').startswith("element 0: `id` has 0 characters"))


class SdkTest(unittest.TestCase):
    def test_with_query_replaces_the_first_and_drops_duplicates_like_the_rust_sdk(self):
        request = sluice.get("https://x.io/a?since=old&page=2&since=older#top")
        self.assertEqual(sluice.with_query(request, "since", "new").url, "https://x.io/a?since=new&page=2#top")
        self.assertEqual(sluice.with_query(sluice.get("https://x.io/?s%69nce=o"), "since", "n").url, "https://x.io/?since=n")
        url = sluice.with_query(sluice.get("https://x.io/a"), "since", "2024-01-01T00:00:00+01:00").url
        self.assertEqual(url, "https://x.io/a?since=2024-01-01T00%3A00%3A00%2B01%3A00")

    def test_state_helpers(self):
        poll = sluice.Poll("p", "t", 0, b"nope", [])
        with self.assertRaises(sluice.Rejected) as caught:
            sluice.state_json(poll)
        self.assertTrue(str(caught.exception).startswith("stored state is not valid JSON"))
        self.assertIn("reset the project's state", str(caught.exception))
        self.assertEqual(sluice.state_json(sluice.Poll("p", "t", 0, sluice.json_state({"c": 1}), [])), {"c": 1})


if __name__ == "__main__":
    unittest.main()
