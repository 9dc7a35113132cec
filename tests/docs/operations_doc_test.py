#!/usr/bin/python3
"""Keeps docs/operations.md in step with fanout-server.

Fails, naming each, when a flag that `fanout-server --help` lists has no
row in the flag tables of docs/operations.md, or its row gives another
environment variable or default; when a row names a flag --help does not
list; when an environment variable --help lists besides the flags is not
mentioned; and when a metric that GET /metrics serves is not in the metrics
table. The metrics come from real servers, started on free loopback ports
in a temporary directory: one with the embedded event log and, where
nats-server is installed, one whose events are kept in JetStream
(--bus=nats://...), on a nats-server of its own.

Usage: operations_doc_test.py --server PATH --doc PATH [--nats_server PATH]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

# `  --http_port` then, after the help text, `      default: 8080; env: X`.
HELP_FLAG = re.compile(r"^  --([a-z0-9_]+)$")
HELP_DEFAULT = re.compile(r"^      default: (.*); env: ([A-Z0-9_]+)$")
HELP_OTHER_VARIABLE = re.compile(r"^  ([A-Z][A-Z0-9_]+)$")
# | `--http_port` | `FANOUT_HTTP_PORT` | `8080` | meaning |
DOC_FLAG_ROW = re.compile(
    r"^\| `--([a-z0-9_]+)` \| `([A-Z0-9_]+)` \| `(.*)` \| .+ \|$")
# | `fanout_deliveries_total` | counter | ...
DOC_METRIC_ROW = re.compile(r"^\| `(fanout_[a-z0-9_]+)` \| ")
WAIT_S = 20


def help_flags(server):
    """Returns ({flag: (default, variable)}, [other variables])."""
    result = subprocess.run([server, "--help"], capture_output=True,
                            text=True, timeout=WAIT_S, check=False)
    if result.returncode != 0:
        sys.exit(f"{server} --help exited with {result.returncode}:\n"
                 f"{result.stdout}{result.stderr}")
    flags = {}
    others = []
    name = None
    in_others = False
    for line in result.stdout.splitlines():
        if line.startswith("Other environment variables"):
            in_others = True
        flag = HELP_FLAG.match(line)
        if flag:
            name = flag.group(1)
            continue
        default = HELP_DEFAULT.match(line)
        if default and name is not None:
            flags[name] = (default.group(1), default.group(2))
            name = None
            continue
        other = HELP_OTHER_VARIABLE.match(line)
        if in_others and other:
            others.append(other.group(1))
    if not flags:
        sys.exit(f"no flags found in the output of {server} --help:\n"
                 f"{result.stdout}")
    return flags, others


def doc_rows(doc_text):
    """Returns {flag: (variable, default)} from the doc's flag tables."""
    rows = {}
    for line in doc_text.splitlines():
        row = DOC_FLAG_ROW.match(line)
        if row:
            rows[row.group(1)] = (row.group(2), row.group(3))
    return rows


def wait_for_log(process, log_path, pattern, what):
    """Returns the first match of `pattern` in the log, waiting WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8") as log:
            match = re.search(pattern, log.read())
        if match:
            return match
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with open(log_path, encoding="utf-8") as log:
        sys.exit(f"{what} did not start:\n{log.read()}")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_nats(nats_server, root):
    """Starts a JetStream nats-server; returns (process, its URL)."""
    config = os.path.join(root, "nats.conf")
    with open(config, "w", encoding="utf-8") as out:
        out.write("listen: 127.0.0.1:-1\n"
                  "max_payload: 8MB\n"
                  f"jetstream {{ store_dir: \"{root}/nats\" }}\n")
    log_path = os.path.join(root, "nats.log")
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [nats_server, "-c", config], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT)
    try:
        match = wait_for_log(process, log_path,
                             r"Listening for client connections on (\S+)",
                             "nats-server")
    except SystemExit:
        stop(process)
        raise
    return process, f"nats://{match.group(1)}"


def served_metrics(server, root, name, flags):
    """Starts the server with `flags`, its files named `name` in `root`;
    returns the metric names of GET /metrics."""
    env = dict(os.environ)
    # A secret, so that the signature metrics are served too.
    env["FANOUT_WEBHOOK_SECRETS"] = "doc-test-secret"
    log_path = os.path.join(root, f"{name}.log")
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [server, "--http_address=127.0.0.1", "--http_port=0",
             "--grpc_address=127.0.0.1:0",
             f"--data_dir={os.path.join(root, name)}"] + flags,
            env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        port = int(wait_for_log(process, log_path,
                                r"listening http=\S+:(\d+) ",
                                "fanout-server").group(1))
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S) as r:
            text = r.read().decode("utf-8")
    finally:
        stop(process)
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def all_served_metrics(server, nats_server):
    """The metrics of an embedded server, plus those of a server on NATS
    when `nats_server` is given; and a word on which were checked."""
    with tempfile.TemporaryDirectory(prefix="fanout-doc-test-") as root:
        metrics = served_metrics(server, root, "embedded", [])
        if nats_server is None:
            return metrics, "embedded log only: no nats-server found"
        nats, url = start_nats(nats_server, root)
        try:
            metrics |= served_metrics(server, root, "on-nats",
                                      [f"--bus={url}"])
        finally:
            stop(nats)
    return metrics, "embedded log and NATS JetStream"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--doc", required=True)
    parser.add_argument(
        "--nats_server",
        help="nats-server, for the metrics of a server on NATS; by default "
        "the one on PATH or in /usr/sbin, if any")
    args = parser.parse_args()
    nats_server = args.nats_server or shutil.which(
        "nats-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin")

    with open(args.doc, encoding="utf-8") as doc:
        doc_text = doc.read()
    doc_name = os.path.join("docs", os.path.basename(args.doc))
    flags, others = help_flags(args.server)
    rows = doc_rows(doc_text)

    problems = []
    for name, (default, variable) in sorted(flags.items()):
        if name not in rows:
            problems.append(
                f"flag --{name} (env {variable}, default {default}) is in "
                f"`fanout-server --help` but not in {doc_name}; add the "
                f"row | `--{name}` | `{variable}` | `{default}` | <meaning> | "
                f"to the table of its group")
            continue
        doc_variable, doc_default = rows[name]
        if doc_variable != variable:
            problems.append(
                f"flag --{name}: {doc_name} gives the environment variable "
                f"{doc_variable}, --help gives {variable}")
        if doc_default != default:
            problems.append(
                f"flag --{name}: {doc_name} gives the default {doc_default}, "
                f"--help gives {default}")
    for name in sorted(set(rows) - set(flags)):
        problems.append(
            f"flag --{name} is in {doc_name} but not in "
            f"`fanout-server --help`; remove its row")
    for variable in others:
        if f"`{variable}`" not in doc_text:
            problems.append(
                f"environment variable {variable} is in `fanout-server "
                f"--help` but not in {doc_name}")

    documented_metrics = set()
    for line in doc_text.splitlines():
        row = DOC_METRIC_ROW.match(line)
        if row:
            documented_metrics.add(row.group(1))
    metrics, backends = all_served_metrics(args.server, nats_server)
    for metric in sorted(metrics):
        if metric not in documented_metrics:
            problems.append(
                f"metric {metric} is served on /metrics but has no row in "
                f"the metrics table of {doc_name}")

    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    print(f"{doc_name} documents all {len(flags)} flags, "
          f"{len(others)} other variable(s) and "
          f"{len(documented_metrics)} metrics of fanout-server "
          f"(metrics served with the {backends})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
