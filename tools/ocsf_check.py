#!/usr/bin/env python3
"""Checks OCSF records against the OCSF schema (PyPI ocsf-json-schema, as
JSON Schema, with jsonschema): each line of the input file is one record;
its class comes from class_uid, its profiles from metadata.profiles, the
schema version from metadata.version. Prints one line per violation
(line, class, JSON path, message) and exits 1 if there is any; prints a
summary per class otherwise.

Usage: ocsf_check.py RECORDS.jsonl
"""
import collections
import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main(path):
    schemas = {}
    validators = {}
    bad = 0
    seen = collections.Counter()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            record = json.loads(line)
            version = record["metadata"]["version"]
            if version not in schemas:
                schemas[version] = OcsfJsonSchemaEmbedded(get_ocsf_schema(version))
            schema = schemas[version]
            name = schema.lookup_class_name_from_uid(record["class_uid"])
            profiles = tuple(sorted(record["metadata"].get("profiles", [])))
            key = (version, name, profiles)
            if key not in validators:
                s = schema.get_class_schema(name, list(profiles))
                validators[key] = jsonschema.Draft202012Validator(s)
            seen[name] += 1
            for e in validators[key].iter_errors(record):
                bad += 1
                where = "/".join(str(p) for p in e.absolute_path) or "(record)"
                print(f"line {n} ({record['metadata'].get('event_code')}, {name}): {where}: {e.message}")
    for name, count in sorted(seen.items()):
        print(f"ok: {count} {name} record(s)" if not bad else f"checked: {count} {name} record(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
