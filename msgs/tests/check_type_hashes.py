"""Independent RIHS01 check: rosbags' type store hashes every type riptide publishes or subscribes.

stdin: JSON list of {"type_name", "msg_definition", "hash"} from the Rust test. Types rosbags' Jazzy store
lacks (riptide's own) are registered from their .msg definitions first. Prints one line per type and exits
1 on any mismatch.
"""
import json
import sys

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

store = get_typestore(Stores.ROS2_JAZZY)
types = json.load(sys.stdin)
for t in types:
    if t["type_name"] not in store.fielddefs:
        store.register(get_types_from_msg(t["msg_definition"], t["type_name"]))
bad = 0
for t in types:
    theirs = store.hash_rihs01(t["type_name"])
    ok = theirs == t["hash"]
    bad += not ok
    print(f"{'ok' if ok else 'MISMATCH'} {t['type_name']} riptide {t['hash']} rosbags {theirs}")
sys.exit(1 if bad else 0)
