"""Example Sluice plugin in Python: delivers each response body unchanged as one record, keyed
by the project id so that every record of a project lands on the same shard, in order.

It has no settings and keeps no state: the same behaviour as the Rust `plugins/passthrough`.
"""

import sluice_plugin as sluice

# Kinesis refuses records over 1 MiB, so a bigger body is rejected with advice instead.
MAX_RECORD_BYTES = 1024 * 1024


class Passthrough(sluice.Plugin):
    def transform(self, poll, response):
        if len(response.body) > MAX_RECORD_BYTES:
            raise sluice.Rejected(
                f"response body is {len(response.body)} bytes, over the 1 MiB record limit; "
                "page the source API or split the body with a plugin such as json-split"
            )
        return sluice.output([sluice.record(response.body, poll.project_id)])


WitWorld = sluice.export(Passthrough)
