"""Unit tests that run under plain Python: `python3 -m unittest`."""

import unittest

import sluice_plugin as sluice
from app import Transform


def transform(body):
    poll = sluice.Poll("local-project", "local-tenant", 0, None, [])
    return Transform().transform(poll, sluice.Response(200, [], body))


class TransformTest(unittest.TestCase):
    def test_one_record_per_element_of_the_sample_keyed_by_id(self):
        with open("sample-response.json", "rb") as sample:
            output = transform(sample.read())
        self.assertEqual([r.partition_key for r in output.records], ["berlin-1", "berlin-2"])
        self.assertIsNone(output.state)

    def test_an_element_without_an_id_is_rejected(self):
        with self.assertRaises(sluice.Rejected) as caught:
            transform(b'[{"name": "no id"}]')
        self.assertEqual(str(caught.exception), "element 0 has no usable `id`")


if __name__ == "__main__":
    unittest.main()
