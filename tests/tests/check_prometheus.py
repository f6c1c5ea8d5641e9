"""Parse the metrics endpoint's OpenMetrics text exposition (stdin) with prometheus_client's own
OpenMetrics parser (strict: typed families, `# EOF`, escaping), independently of
riptide, and print each family as JSON: {name: {"type", "help", "samples": [[name, labels, value]]}}.
Used by tests/tests/metrics.rs."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
out = {}
for fam in text_string_to_metric_families(text):
    out[fam.name] = {
        "type": fam.type,
        "help": fam.documentation,
        "samples": [[s.name, s.labels, s.value] for s in fam.samples],
    }
json.dump(out, sys.stdout)
