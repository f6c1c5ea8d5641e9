#!/usr/bin/env python3
"""Independent check of a riptide MCAP recording with the PyPI `mcap` and `mcap-ros2-support` packages.

Usage: check_mcap.py FILE.mcap EXPECT.json [--stream]

EXPECT.json (written by msgs/tests/mcap_recording.rs) lists the channels, metadata and messages the
file must hold, each message with its field values as serde_json wrote them. Every message is decoded with
mcap_ros2's decoder from the channel's `ros2msg` schema (not riptide's CDR code) and compared field by field.

Default mode uses mcap's seeking reader, which needs a finished file (summary and footer). `--stream` reads the
file front to back with mcap's StreamReader and stops at the first error, as one would read a recording whose
writer was killed: the messages read before it must be exactly the expected ones.

Exit status 0 on success, 1 on a mismatch, 3 if the packages are missing (prints SKIPPED).
"""

import array
import json
import sys

try:
    from mcap.reader import make_reader
    from mcap.records import Channel, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader
    from mcap_ros2.decoder import DecoderFactory
except ImportError as e:  # pragma: no cover - depends on the environment
    print(
        f"SKIPPED: {e}; install with: pip install -r tests/py-tools-requirements.txt "
        "(mcap==1.6.0 mcap-ros2-support==0.6.0)"
    )
    sys.exit(3)


def plain(value):
    """A decoded ROS message (objects with __slots__, bytes, array.array) as JSON-like Python values."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, array.array):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    slots = getattr(type(value), "__slots__", None)
    if slots:
        return {name: plain(getattr(value, name)) for name in slots}
    return value


def diff(path, got, want, out):
    """Append to `out` every place where `got` differs from `want` (exact, also for floats)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            out.append(f"{path}: fields {list(got) if isinstance(got, dict) else got!r} != {list(want)}")
            return
        for k in want:
            diff(f"{path}.{k}", got[k], want[k], out)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"{path}: {short(got)} != {short(want)}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            diff(f"{path}[{i}]", g, w, out)
    elif isinstance(want, bool) or isinstance(got, bool):
        if got is not want:
            out.append(f"{path}: {got!r} != {want!r}")
    elif isinstance(want, (int, float)):
        if not isinstance(got, (int, float)) or got != want:
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {got!r} != {want!r}")


def short(value, limit=100):
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_seeking(path):
    """Finished file: summary-based reader, messages in log-time order."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        if summary is None:
            raise SystemExit(f"{path}: no summary section (file not finished?)")
        header = reader.get_header()
        channels = [(c, summary.schemas.get(c.schema_id)) for c in summary.channels.values()]
        messages = [
            (channel.topic, schema.name, message.log_time, plain(decoded))
            for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True)
        ]
        metadata = [(m.name, dict(m.metadata)) for m in reader.iter_metadata()]
        stats = summary.statistics
        if stats is not None and stats.message_count != len(messages):
            raise SystemExit(f"{path}: statistics say {stats.message_count} messages, read {len(messages)}")
        return header.profile, channels, metadata, messages, None


def read_stream(path):
    """Possibly truncated file: records front to back until the first error."""
    factory = DecoderFactory()
    schemas, channels, metadata, messages = {}, {}, [], []
    stopped = None
    try:
        for record in StreamReader(path, validate_crcs=True).records:
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels[record.id] = record
            elif isinstance(record, Metadata):
                metadata.append((record.name, dict(record.metadata)))
            elif isinstance(record, Message):
                channel = channels[record.channel_id]
                schema = schemas[channel.schema_id]
                decoder = factory.decoder_for(channel.message_encoding, schema)
                messages.append((channel.topic, schema.name, record.log_time, plain(decoder(record.data))))
    except Exception as e:  # the truncated tail
        stopped = f"{type(e).__name__}: {e}"
    messages.sort(key=lambda m: m[2])
    return "ros2", [(c, schemas.get(c.schema_id)) for c in channels.values()], metadata, messages, stopped


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        raise SystemExit(__doc__)
    path, expect_path = args
    stream = "--stream" in sys.argv
    with open(expect_path) as f:
        expect = json.load(f)

    profile, channels, metadata, messages, stopped = (read_stream if stream else read_seeking)(path)
    mode = "stream" if stream else "seeking"
    print(f"{path} ({mode} reader): profile {profile!r}, {len(channels)} channels, {len(metadata)} metadata, "
          f"{len(messages)} messages" + (f"; stopped at: {stopped}" if stopped else ""))

    errors = []
    got_channels = sorted(
        (c.topic, s.name if s else "", s.encoding if s else "", s.data.decode() if s else "", c.message_encoding)
        for c, s in channels
    )
    want_channels = sorted(
        (c["topic"], c["type"], "ros2msg", c["schema"], "cdr") for c in expect["channels"]
    )
    if got_channels != want_channels:
        errors.append(f"channels: {[c[:2] + c[4:] for c in got_channels]} != {[c[:2] + c[4:] for c in want_channels]}")
    want_metadata = [(m["name"], m["entries"]) for m in expect["metadata"]]
    if metadata != want_metadata:
        errors.append(f"metadata: {metadata} != {want_metadata}")
    want_messages = expect["messages"]
    if len(messages) != len(want_messages):
        errors.append(f"{len(messages)} messages decoded, {len(want_messages)} expected")
    for i, ((topic, type_name, log_time, fields), want) in enumerate(zip(messages, want_messages)):
        where = f"message {i} ({want['topic']} @ {want['log_time']})"
        if (topic, type_name, log_time) != (want["topic"], want["type"], want["log_time"]):
            errors.append(f"{where}: got {topic} {type_name} @ {log_time}")
            continue
        found = []
        diff(where, fields, want["fields"], found)
        errors.extend(found)
        if i < 12 or i == len(want_messages) - 1:
            print(f"  {topic} {type_name} @ {log_time}: {short(fields)}")
        elif i == 12:
            print("  ...")
    if errors:
        for e in errors[:40]:
            print("MISMATCH:", e)
        print(f"FAILED: {len(errors)} mismatches")
        sys.exit(1)
    print(f"OK: {len(messages)} messages decoded with mcap_ros2 match the expectation")


if __name__ == "__main__":
    main()
