#!/usr/bin/python3
"""Runs the non-C++ subscribers (client/python, client/node) against the real
fanout-server and checks what they print.

  client_test.py --server BIN --send BIN --examples DIR -- NAME CMD...
                 [-- NAME CMD...]

Each NAME CMD... is one subscriber command, to which the test adds
--target, a start position and patterns. The test starts fanout-server on
free loopback ports with a data directory and a secrets file of its own,
sends the examples with fanout-send (signed), and checks, for every client:
  - a subscription made before the sends (ticket.*, --from-start) prints the
    four ticket events, in order, each with every field of the example's
    data, with the right types (integers as JSON numbers);
  - --from-start with no pattern prints all the examples, and an event of a
    type no message models, equally exact;
  - --after SEQ and --since TIME print only the later events;
  - a refused subscription (bad pattern, sequence out of range) exits 1;
  - Ctrl-C (SIGINT) exits 0;
  - across a server restart a running subscriber resumes after the last
    sequence it printed: the next event once, nothing replayed;
  - against the server restarted with mutual TLS and access tokens
    (certificates made with the openssl command), a client with its
    certificate and a token (from --token-file or $FANOUT_TOKEN) sees only
    the token's grant; no token or an unknown one exits 1
    (UNAUTHENTICATED), a pattern outside the grant exits 1
    (PERMISSION_DENIED).
With several clients, their lines for the same events must be byte-equal.
Every wait is bounded; every process started is killed at the end.
"""

import datetime
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

WAIT_S = 30  # for any one expected thing to happen
EXIT_WAIT_S = 15
SKIP = 77  # ctest's SKIP_RETURN_CODE for a client whose packages are missing


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


# ----------------------------------------------------------------- processes


class Server:
    """fanout-server on 127.0.0.1, HTTP on a free port, gRPC on a free port
    the first time and on the same port after a restart."""

    def __init__(self, binary, work_dir):
        self._binary = binary
        self._data_dir = os.path.join(work_dir, "data")
        self._log_path = os.path.join(work_dir, "server.log")
        self.secrets_file = os.path.join(work_dir, "webhook-secrets")
        with open(os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT, 0o600),
                  "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        self.process = None
        self.http_port = None
        self.grpc_port = 0
        self.flags = []  # added to the command line from the next start

    def start(self):
        log = open(self._log_path, "a")
        self.process = subprocess.Popen(
            [self._binary, "--http_port=0",
             f"--grpc_address=127.0.0.1:{self.grpc_port}",
             f"--data_dir={self._data_dir}",
             f"--secrets_file={self.secrets_file}",
             # Idle streams in this test then see heartbeats, which must
             # print nothing.
             "--heartbeat_interval=300ms", "--shutdown_grace=2s"]
            + self.flags,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        found = queue.Queue()

        # Drains the output (spdlog writes to stdout, flag errors go to
        # stderr) into the log for the whole run, so that the server never
        # blocks on a full pipe; hands over the "listening" line.
        def drain():
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                if "listening http=" in line:
                    found.put(line)
            log.close()
            found.put(None)

        threading.Thread(target=drain, daemon=True).start()
        try:
            line = found.get(timeout=WAIT_S)
        except queue.Empty:
            line = None
        check(line is not None,
              f"fanout-server did not say it was listening within {WAIT_S} s")
        # [info] listening http=127.0.0.1:P grpc=127.0.0.1:P
        # webhook_path=/webhooks
        match = re.search(r"http=\S+:(\d+) grpc=\S+:(\d+) ", line)
        check(match is not None, f"cannot read the ports from: {line!r}")
        self.http_port = int(match.group(1))
        self.grpc_port = int(match.group(2))

    def stop(self):
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise TestFailure("fanout-server did not stop on SIGTERM")
        finally:
            self.process = None
        check(code == 0, f"fanout-server exited with {code} on SIGTERM")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self):
        try:
            with open(self._log_path) as log:
                return log.read()
        except OSError:
            return ""

    @property
    def target(self):
        return f"127.0.0.1:{self.grpc_port}"


class Client:
    """One run of a subscriber command; its stdout lines are read by a
    thread into a queue, its stderr goes to a file."""

    def __init__(self, name, command, args, work_dir, index, env=None):
        self.name = name
        self.args = args
        self._stderr_path = os.path.join(work_dir, f"{name}-{index}.stderr")
        environment = {key: value for key, value in os.environ.items()
                       if key != "FANOUT_TOKEN"}
        environment.update(env or {})
        with open(self._stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                command + args, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=stderr, text=True,
                encoding="utf-8", env=environment)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def describe(self):
        return f"{self.name} {' '.join(self.args)}"

    def read_lines(self, count):
        """Waits for `count` more lines; fails if they do not come in time."""
        deadline = time.monotonic() + WAIT_S
        got = []
        while len(got) < count:
            try:
                line = self._queue.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self._queue.put(None)  # stay at end of stream
                try:
                    code = self.process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    code = "none yet"
                raise TestFailure(
                    f"{self.describe()}: {len(got)} of {count} expected lines "
                    f"within {WAIT_S} s (exit status {code}); got {got}")
            got.append(line)
        self.lines += got
        return got

    def interrupt(self):
        """Ctrl-C: returns the exit status and the lines printed since the
        last read_lines."""
        self.process.send_signal(signal.SIGINT)
        return self.wait_exit()

    def wait_exit(self):
        try:
            code = self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.describe()}: still running "
                              f"{EXIT_WAIT_S} s after it should have ended")
        rest = []
        while True:
            try:
                line = self._queue.get(timeout=WAIT_S)
            except queue.Empty:
                raise TestFailure(f"{self.describe()}: stdout not closed")
            if line is None:
                break
            rest.append(line)
        self.lines += rest
        return code, rest

    def stderr(self):
        with open(self._stderr_path, encoding="utf-8",
                  errors="replace") as stderr:
            return stderr.read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def send(send_binary, server, paths):
    """Sends `paths` with fanout-send; returns {path: the server's answer}."""
    result = subprocess.run(
        [send_binary, f"--url=http://127.0.0.1:{server.http_port}/webhooks",
         f"--secrets_file={server.secrets_file}"] + paths,
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=WAIT_S * 2)
    check(result.returncode == 0,
          f"fanout-send exited with {result.returncode}: {result.stderr}")
    answers = {}
    for line in result.stdout.splitlines():
        path, _, rest = line.partition(": ")
        status, _, body = rest.partition(" ")
        check(status == "200", f"fanout-send: {line}")
        answers[path] = json.loads(body)
    check(sorted(answers) == sorted(paths),
          f"fanout-send answered for {sorted(answers)}, not {sorted(paths)}")
    return answers


OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[server_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[client_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
"""


def make_certificates(work_dir):
    """A throw-away CA and a server and a client certificate signed by it,
    made with the openssl command in work_dir/tls; returns their paths by
    name (ca.pem, server.pem, server.key, client.pem, client.key)."""
    directory = os.path.join(work_dir, "tls")
    os.makedirs(directory)
    with open(os.path.join(directory, "openssl.cnf"), "w") as out:
        out.write(OPENSSL_CONFIG)

    def openssl(*args):
        result = subprocess.run(["openssl", *args], cwd=directory,
                                stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=WAIT_S)
        check(result.returncode == 0,
              f"openssl {' '.join(args)}: {result.stderr}")

    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes"]
    openssl("req", "-config", "openssl.cnf", "-x509", "-extensions", "ca_ext",
            *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=client test CA")
    for name, extensions in (("server", "server_ext"),
                             ("client", "client_ext")):
        openssl("req", "-config", "openssl.cnf", "-new", *new_key, "-keyout",
                f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
                "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", "openssl.cnf", "-extensions", extensions,
                "-out", f"{name}.pem")
    paths = {}
    for name in ("ca.pem", "server.pem", "server.key", "client.pem",
                 "client.key"):
        paths[name] = os.path.join(directory, name)
        if name.endswith(".key"):
            os.chmod(paths[name], 0o600)
    return paths


def write_secret(path, text):
    """Writes `text` into a new file readable by its owner only."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
              "w") as out:
        out.write(text)


# ------------------------------------------------------------------- checks


def same_json(a, b):
    """Equality of parsed JSON that also tells true from 1 and 42 from 42.0
    or "42"; object key order does not matter."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return a == b


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_event_line(client, line, delivery, sequence):
    """`line` must be `delivery` (an example's JSON) as accepted with
    `sequence`, every field of its data intact."""
    where = f"{client.describe()}: line {line!r}"
    try:
        event = json.loads(line)
    except ValueError as error:
        raise TestFailure(f"{where}: not JSON ({error})")
    check(list(event) == ["sequence", "id", "event", "timestamp",
                          "receivedAt", "data"],
          f"{where}: keys {list(event)}")
    check(same_json(event["sequence"], sequence),
          f"{where}: sequence should be the number {sequence}")
    check(event["id"] == delivery["id"], f"{where}: id should be "
          f"{delivery['id']}")
    check(event["event"] == delivery["event"],
          f"{where}: event should be {delivery['event']}")
    check(parse_time(event["timestamp"]) == parse_time(delivery["timestamp"]),
          f"{where}: timestamp should be {delivery['timestamp']}")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z",
                       event["receivedAt"]) is not None,
          f"{where}: receivedAt is not RFC 3339 UTC")
    check(same_json(event["data"], delivery["data"]),
          f"{where}: data should be exactly {json.dumps(delivery['data'])}")
    return event


def check_events(client, lines, expected):
    """`expected` is a list of (delivery, sequence)."""
    check(len(lines) == len(expected),
          f"{client.describe()}: {len(lines)} lines, expected "
          f"{len(expected)}: {lines}")
    return [check_event_line(client, line, delivery, sequence)
            for line, (delivery, sequence) in zip(lines, expected)]


def check_interrupt(client, expected_rest=0):
    code, rest = client.interrupt()
    check(code == 0, f"{client.describe()}: exit status {code} on SIGINT, "
          f"not 0; stderr: {client.stderr()}")
    check(len(rest) == expected_rest,
          f"{client.describe()}: unexpected lines {rest}")


def check_refused(client, code_name):
    code, rest = client.wait_exit()
    check(code == 1, f"{client.describe()}: exit status {code}, expected 1")
    check(not rest, f"{client.describe()}: printed {rest}")
    check(code_name in client.stderr(),
          f"{client.describe()}: stderr does not name {code_name}: "
          f"{client.stderr()}")


# --------------------------------------------------------------------- run


def parse_command_line(argv):
    options = {}
    groups = [[]]
    for arg in argv:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    head = groups[0]
    while head:
        flag = head.pop(0)
        if flag not in ("--server", "--send", "--examples") or not head:
            sys.exit(f"usage: {__doc__}")
        options[flag[2:]] = head.pop(0)
    clients = [(group[0], group[1:]) for group in groups[1:] if len(group) > 1]
    if len(options) != 3 or not clients:
        sys.exit(f"usage: {__doc__}")
    return options, clients


def run(options, clients, work_dir, started):
    examples_dir = options["examples"]
    paths = sorted(os.path.join(examples_dir, name)
                   for name in os.listdir(examples_dir)
                   if name.endswith(".json"))
    deliveries = {}
    for path in paths:
        with open(path, encoding="utf-8") as example:
            deliveries[path] = json.load(example)
    ticket_paths = [p for p in paths
                    if deliveries[p]["event"].startswith("ticket.")]
    check(len(ticket_paths) == 4,
          f"expected 4 ticket examples, found {ticket_paths}")

    # A type no message models: its data travels as a Struct.
    untyped_path = os.path.join(work_dir, "untyped.json")
    deliveries[untyped_path] = {
        "id": "wh_client_test_untyped", "event": "custom.untyped_thing",
        "timestamp": "2026-03-01T14:30:00.123456Z",
        "data": {"count": 3, "ratio": 1e-7, "nested": {"list": [
            1.5, "x", None, True, {"deep": -12}]}, "10": "ten", "9": "nine"}}
    with open(untyped_path, "w", encoding="utf-8") as out:
        json.dump(deliveries[untyped_path], out)
    paths.append(untyped_path)

    server = Server(options["server"], work_dir)
    started.append(server)
    server.start()

    counter = iter(range(1000))

    def start_client(name, command, *args, env=None):
        client = Client(name, command, ["--target", server.target] + list(args),
                        work_dir, next(counter), env)
        started.append(client)
        return client

    # Subscribed before anything is sent; --from-start so that the test does
    # not depend on when the subscription reaches the server.
    early = {name: start_client(name, command, "--from-start", "ticket.*")
             for name, command in clients}

    answers = send(options["send"], server, paths)
    for path, answer in answers.items():
        check(answer.get("status") == "accepted",
              f"{path}: answered {answer}")
    sequence = {path: answers[path]["sequence"] for path in paths}
    order = sorted(paths, key=sequence.get)
    tickets = [(deliveries[p], sequence[p]) for p in order
               if p in ticket_paths]
    everything = [(deliveries[p], sequence[p]) for p in order]

    outputs = {}
    for name, command in clients:
        client = early[name]
        events = check_events(client, client.read_lines(4), tickets)

        # Every example, every field type (int64, double, bool, repeated).
        client_all = start_client(name, command, "--from-start")
        outputs[name] = client_all.read_lines(len(everything))
        check_events(client_all, outputs[name], everything)
        check_interrupt(client_all)

        after = start_client(name, command, "--after",
                             str(events[1]["sequence"]), "ticket.*")
        check_events(after, after.read_lines(2), tickets[2:])
        check_interrupt(after)

        since = start_client(name, command, "--since",
                             events[2]["receivedAt"], "ticket.*")
        check_events(since, since.read_lines(2), tickets[2:])
        check_interrupt(since)

        check_refused(start_client(name, command, "ticket.*", "*.created"),
                      "INVALID_ARGUMENT")
        check_refused(start_client(name, command, "--after", "1000000"),
                      "OUT_OF_RANGE")
        print(f"{name}: replay, --after, --since, refusals: ok", flush=True)

    if len(clients) > 1:
        first_name, first = next(iter(outputs.items()))
        for name, lines in outputs.items():
            check(lines == first,
                  f"{name} and {first_name} print different bytes:\n"
                  + "\n".join(f"{a}\n{b}" for a, b in zip(lines, first)
                              if a != b))
        print(f"{', '.join(outputs)}: byte-equal output", flush=True)

    # The early subscribers are still streaming. A restart ends their
    # streams with UNAVAILABLE; each must come back on its own and continue
    # after sequence 18, printing the next delivery once and nothing twice.
    server.stop()
    server.start()
    later = dict(deliveries[ticket_paths[0]])
    later["id"] += "-later"
    # Beyond 2^53, and negative: exact only if int64 stays an integer.
    later["data"] = dict(later["data"], ticketId=-9007199254740993)
    later_path = os.path.join(work_dir, "later.json")
    with open(later_path, "w", encoding="utf-8") as out:
        json.dump(later, out)
    later_answer = send(options["send"], server, [later_path])[later_path]
    check(later_answer.get("status") == "accepted",
          f"later delivery answered {later_answer}")
    for name, _ in clients:
        client = early[name]
        check_events(client, client.read_lines(1),
                     [(later, later_answer["sequence"])])
        check_interrupt(client)
        check("subscription interrupted" in client.stderr(),
              f"{client.describe()}: did not report the broken stream")
        print(f"{name}: resumed across a server restart: ok", flush=True)

    # The same log behind mutual TLS and access tokens.
    certificates = make_certificates(work_dir)
    token = secrets.token_hex(24)
    tokens_path = os.path.join(work_dir, "access-tokens")
    write_secret(tokens_path, f"# name token patterns\ntickets {token} "
                              "ticket.*\n")
    token_path = os.path.join(work_dir, "token")
    write_secret(token_path, token + "\n")
    wrong_token_path = os.path.join(work_dir, "wrong-token")
    write_secret(wrong_token_path, secrets.token_hex(24) + "\n")
    server.stop()
    server.flags = [f"--grpc_tls_cert={certificates['server.pem']}",
                    f"--grpc_tls_key={certificates['server.key']}",
                    f"--grpc_tls_client_ca={certificates['ca.pem']}",
                    f"--access_tokens_file={tokens_path}"]
    server.start()
    tls = ["--tls-ca-file", certificates["ca.pem"],
           "--tls-cert-file", certificates["client.pem"],
           "--tls-key-file", certificates["client.key"]]
    granted = tickets + [(later, later_answer["sequence"])]
    for name, command in clients:
        # "*" (no pattern) means everything the token may read.
        secure = start_client(name, command, *tls, "--token-file", token_path,
                              "--from-start")
        check_events(secure, secure.read_lines(len(granted)), granted)
        check_interrupt(secure)

        from_env = start_client(name, command, *tls, "--tls-server-name",
                                "localhost", "--from-start", "ticket.created",
                                env={"FANOUT_TOKEN": token})
        created = [(delivery, sequence) for delivery, sequence in granted
                   if delivery["event"] == "ticket.created"]
        check_events(from_env, from_env.read_lines(len(created)), created)
        check_interrupt(from_env)

        check_refused(start_client(name, command, *tls, "ticket.*"),
                      "UNAUTHENTICATED")
        check_refused(start_client(name, command, *tls, "--token-file",
                                   wrong_token_path, "ticket.*"),
                      "UNAUTHENTICATED")
        check_refused(start_client(name, command, *tls, "--token-file",
                                   token_path, "ticket.*", "call.*"),
                      "PERMISSION_DENIED")
        print(f"{name}: mutual TLS and access tokens: ok", flush=True)
    server.stop()


def main(argv):
    options, clients = parse_command_line(argv)
    for name, command in clients:
        if name == "node":
            modules = os.path.join(os.path.dirname(command[-1]), "node_modules")
            if not os.path.isdir(modules):
                print(f"skipped: {modules} is missing; run scripts/"
                      "install-deps.sh (npm ci in client/node)")
                return SKIP

    work_dir = tempfile.mkdtemp(prefix="fanout-client-test-")
    started = []
    try:
        run(options, clients, work_dir, started)
        print(f"{', '.join(name for name, _ in clients)}: all checks passed")
        return 0
    except (TestFailure, subprocess.TimeoutExpired) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        for process in started:
            if isinstance(process, Client):
                print(f"--- {process.describe()} stderr:\n{process.stderr()}",
                      file=sys.stderr)
            else:
                print(f"--- fanout-server log:\n{process.log()}",
                      file=sys.stderr)
        return 1
    finally:
        for process in started:
            process.kill()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
