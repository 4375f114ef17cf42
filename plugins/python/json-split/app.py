"""Example Sluice plugin in Python: splits a JSON array in the response into one record per
element, each holding the element as compact JSON: the same behaviour as the Rust
`plugins/json-split`, error messages included.

Settings:

- `array_path` (optional): where the array is in the body, as object keys joined by dots, such
  as `data.items` for `{"data": {"items": [...]}}`. A segment made of digits indexes an array
  (`results.0.rows`). Without it the body itself must be the array.
- `partition_key_field` (optional): the name of a top-level field of every element whose value
  (a string, or a number written out) becomes the record's partition key, such as `id`. Without
  it every record is keyed by the project id.

Everything that goes wrong is `Rejected`, since the same body would fail again.
"""

import sluice_plugin as sluice


def kind(value):
    """The JSON type of `value` with an article, for error messages."""
    # bool before int: in Python, True is an int.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def find_array(body, path):
    """The array at the dot-separated `path` in `body`, or the body itself without a path."""
    if not path:
        if isinstance(body, list):
            return body
        raise sluice.Rejected(
            f"response body is {kind(body)}, not an array; set `array_path` to the dot-separated "
            "path of the array inside it"
        )
    current, walked = body, ""
    for segment in path.split("."):
        found = None
        if isinstance(current, dict):
            found = current.get(segment)
            present = segment in current
        elif isinstance(current, list) and segment.isdigit() and segment.isascii():
            present = int(segment) < len(current)
            found = current[int(segment)] if present else None
        else:
            present = False
        if not present:
            at = walked or "the body"
            raise sluice.Rejected(
                f'`array_path` "{path}" does not lead to an array: {at} ({kind(current)}) has no '
                f'"{segment}"; set `array_path` to the dot-separated path of the array'
            )
        current = found
        walked = f"{walked}.{segment}" if walked else segment
    if isinstance(current, list):
        return current
    raise sluice.Rejected(
        f'`array_path` "{path}" does not lead to an array but to {kind(current)}; set '
        "`array_path` to the dot-separated path of the array"
    )


def partition_key(element, index, field):
    """The element's `field`: a non-empty string or a number, at most 256 characters long."""
    value = element.get(field) if isinstance(element, dict) else None
    if isinstance(element, dict) and field in element:
        if isinstance(value, str):
            key = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            key = str(value)
        else:
            raise sluice.Rejected(
                f"element {index}: `{field}` is {kind(value)}, not a string or number; "
                "set `partition_key_field` to a field holding an id"
            )
    else:
        raise sluice.Rejected(
            f"element {index} has no `{field}` field; "
            "set `partition_key_field` to a field that every element has"
        )
    if not 1 <= len(key) <= 256:
        raise sluice.Rejected(
            f"element {index}: `{field}` has {len(key)} characters, but partition keys must "
            "have 1 to 256; set `partition_key_field` to another field"
        )
    return key


class JsonSplit(sluice.Plugin):
    def transform(self, poll, response):
        body = sluice.body_json(response)
        elements = find_array(body, sluice.setting(poll, "array_path"))
        field = sluice.setting(poll, "partition_key_field")
        records = []
        for index, element in enumerate(elements):
            key = partition_key(element, index, field) if field is not None else poll.project_id
            records.append(sluice.json_record(element, key))
        return sluice.output(records)


WitWorld = sluice.export(JsonSplit)
