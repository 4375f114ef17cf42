"""{{name}}: a Sluice transform plugin.

It turns a response whose body is a JSON array into one record per element, keyed by the
element's `id` (or the field named by the `partition_key_field` setting). Change `transform` to
shape your own records; see the README for the build-test-upload loop.
"""

import sluice_plugin as sluice


class Transform(sluice.Plugin):
    def transform(self, poll, response):
        elements = sluice.body_json(response)
        if not isinstance(elements, list):
            raise sluice.Rejected("response body is not a JSON array")
        field = sluice.setting(poll, "partition_key_field", "id")
        records = []
        for index, element in enumerate(elements):
            key = element.get(field) if isinstance(element, dict) else None
            if isinstance(key, bool) or not isinstance(key, (str, int, float)) or key == "":
                raise sluice.Rejected(f"element {index} has no usable `{field}`")
            records.append(sluice.json_record(element, str(key)))
        sluice.info(f"{len(records)} records")
        return sluice.output(records)


WitWorld = sluice.export(Transform)
