#!/usr/bin/python3
"""fanout_subscribe.py: a Python subscriber for staffify-fanout.

Subscribes to event type patterns over gRPC and prints each event as one
JSON object per line, with Staffify's own keys, as build/client/fanout-subscribe
does. A stream that breaks for a reason that may pass is resumed after the
last sequence seen, after a backoff wait. Ctrl-C (or SIGTERM) ends it with
exit status 0; a stream the server refuses, with 1.

Needs Debian's python3-grpcio and python3-protobuf, and stubs generated from
proto/ by client/python/generate.sh (the build puts them in
build/client/python; FANOUT_PYTHON_STUBS names another folder).
"""

import argparse
import base64
import decimal
import json
import math
import os
import random
import re
import signal
import sys
import threading

STUBS_ENV = "FANOUT_PYTHON_STUBS"
TOKEN_ENV = "FANOUT_TOKEN"
DEFAULT_STUBS_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "build",
    "client", "python")

# Reconnection backoff, as in client/event_subscriber.h: the first wait after
# a broken stream is INITIAL; each further attempt that receives nothing
# multiplies it by MULTIPLIER, up to MAX; each actual wait is drawn from
# [nominal * (1 - JITTER), nominal].
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 10.0
BACKOFF_MULTIPLIER = 2.0
JITTER = 0.2

MAX_MESSAGE_BYTES = 64 << 20

USAGE_EPILOG = """\
A pattern is an event type (ticket.created), a domain (ticket.*) or *
(every type, also what no pattern means). By default only events accepted
after the subscription starts are printed.

A broken stream is resumed after the last sequence seen. A stream the server
refuses (a bad pattern, a start position it no longer holds, a missing or
unknown access token, a pattern outside the token's grant) ends the run
with exit status 1; Ctrl-C or SIGTERM, with 0.

For a server with TLS, give --tls-ca-file (and for mutual TLS
--tls-cert-file and --tls-key-file); for one with access tokens,
--token-file or the environment variable FANOUT_TOKEN.

Stubs are read from $FANOUT_PYTHON_STUBS, or else from build/client/python
(made by the build, or by client/python/generate.sh DIR)."""


def import_stubs():
    """Imports the generated modules; exits with a hint if they are missing."""
    stubs_dir = os.environ.get(STUBS_ENV) or os.path.normpath(DEFAULT_STUBS_DIR)
    sys.path.insert(0, stubs_dir)
    try:
        import grpc
        from google.protobuf import descriptor
        from staffify.fanout.v1 import fanout_pb2, fanout_pb2_grpc
    except ImportError as error:
        sys.exit(
            f"fanout_subscribe: {error}\n"
            f"Looked for the generated stubs in {stubs_dir}: run "
            "client/python/generate.sh DIR and set FANOUT_PYTHON_STUBS=DIR, "
            "and run it with /usr/bin/python3, with Debian's python3-grpcio "
            "and python3-protobuf installed.")
    return grpc, descriptor, fanout_pb2, fanout_pb2_grpc


grpc, descriptor, fanout_pb2, fanout_pb2_grpc = import_stubs()
FieldDescriptor = descriptor.FieldDescriptor

# Stream ends worth subscribing again after; any other code ends the run.
# IsRetryableStreamEnd in client/event_subscriber.h, plus CANCELLED: a
# stopping server cancels the calls that reach it while it shuts down (our
# own cancellations end the run before the code is looked at).
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.OK,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
})


# ------------------------------------------------------------------ JSON


def format_double(value):
    """Returns the finite `value` as ECMAScript's Number::toString writes it:
    the shortest digits that round-trip (those of repr), without ".0", in
    exponent form only below 1e-6 or from 1e21."""
    if value == 0:
        return "0"
    if value < 0:
        return "-" + format_double(-value)
    _, digit_tuple, exponent = decimal.Decimal(repr(value)).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    k = len(digits)
    n = exponent + len(all_digits)  # value = 0.<digits> * 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{n - 1:+d}"


def double_to_json(value):
    # Proto3's JSON mapping spells the values JSON has no number for.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def sorted_keys(keys):
    """`keys` as strings, sorted by UTF-16 code units, as JavaScript sorts
    them in client/node/fanout_subscribe.js."""
    return sorted(map(str, keys), key=lambda key: key.encode("utf-16-be"))


def struct_to_json(struct):
    """A google.protobuf.Struct as a JSON object. A Struct keeps no key
    order, so keys are sorted."""
    return {key: struct_value_to_json(struct.fields[key])
            for key in sorted_keys(struct.fields)}


def struct_value_to_json(value):
    """A google.protobuf.Value as plain JSON. Integral numbers print as
    integers (42, not 42.0), as they came, like the C++ client."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if math.isfinite(number) and number == math.trunc(number) and \
                abs(number) <= 9.0e15:
            return int(number)
        return double_to_json(number)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_json(value.struct_value)
    if kind == "list_value":
        return [struct_value_to_json(element)
                for element in value.list_value.values]
    return None


def message_to_json(message):
    """A message as JSON keyed by each field's json_name (Staffify's keys),
    with the present fields only, in field number order. 64-bit integers stay
    exact Python ints, so they print as JSON numbers; Timestamp prints as
    RFC 3339 and Struct as the object it holds."""
    type_name = message.DESCRIPTOR.full_name
    if type_name == "google.protobuf.Timestamp":
        return message.ToJsonString()
    if type_name == "google.protobuf.Struct":
        return struct_to_json(message)

    out = {}
    for field, value in message.ListFields():
        if field.message_type is not None and \
                field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            by_text = {str(key): key for key in value}
            out[field.json_name] = {
                text: field_value_to_json(value_field, value[by_text[text]])
                for text in sorted_keys(by_text)}
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            out[field.json_name] = [field_value_to_json(field, element)
                                    for element in value]
        else:
            out[field.json_name] = field_value_to_json(field, value)
    return out


def field_value_to_json(field, value):
    cpp_type = field.cpp_type
    if cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return message_to_json(value)
    if cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE,
                    FieldDescriptor.CPPTYPE_FLOAT):
        return double_to_json(value)
    if cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value  # int (any width), bool, str


def event_to_json(event, include_raw_body):
    """The line printed for `event`: the shape of EventToJson in
    server/convert/event_json.h."""
    out = {
        "sequence": event.sequence,
        "id": event.id,
        "event": event.event_type,
        "timestamp": event.timestamp.ToJsonString(),
        "receivedAt": event.received_at.ToJsonString(),
    }
    payload = event.WhichOneof("payload")
    out["data"] = message_to_json(getattr(event, payload)) if payload else {}
    if event.conversion_problems:
        out["conversionProblems"] = [message_to_json(problem)
                                     for problem in event.conversion_problems]
    if include_raw_body:
        out["rawBody"] = event.raw_body.decode("utf-8", errors="replace")
    return out


def dump_json(value):
    """`value` as compact JSON, byte for byte as JSON.stringify in
    client/node/fanout_subscribe.js writes it: json.dumps would print 1.0 and
    1e-07 where JavaScript prints 1 and 1e-7."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(
            json.dumps(key, ensure_ascii=False) + ":" + dump_json(element)
            for key, element in value.items()) + "}"
    return "[" + ",".join(dump_json(element) for element in value) + "]"


# ------------------------------------------------------------ subscribing


def describe_start(start):
    position = start.WhichOneof("position")
    if position == "after_sequence":
        return f"after sequence {start.after_sequence}"
    if position == "since_time":
        return f"since {start.since_time.ToJsonString()}"
    if position == "from_oldest":
        return "from the oldest event"
    return "with new events"


class Subscriber:
    """Keeps a Subscribe stream going and prints its events, resuming after
    the last sequence seen when the stream breaks. Runs on the main thread;
    stop() is meant for signal handlers, which Python runs there too."""

    def __init__(self, target, patterns, start, include_raw_body,
                 credentials=None, server_name=None, token=None):
        self._patterns = list(patterns)
        self._start = start
        self._include_raw_body = include_raw_body
        self._last_sequence = 0
        # Whether an event or a heartbeat was seen (a heartbeat may carry
        # sequence 0), so that calls resume after _last_sequence.
        self._has_position = False
        self._stopped = threading.Event()
        self._call = None
        # The channel's own reconnection schedule is kept within ours, so
        # that it does not hold a reconnection back far beyond MAX_BACKOFF_S;
        # keepalive pings find a connection that died without a word.
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.initial_reconnect_backoff_ms", int(INITIAL_BACKOFF_S * 1e3)),
            ("grpc.min_reconnect_backoff_ms", int(INITIAL_BACKOFF_S * 1e3)),
            ("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF_S * 1e3)),
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 10000),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, credentials,
                                                options=options)
        self._metadata = [("authorization", f"Bearer {token}")] \
            if token else None
        self._stub = fanout_pb2_grpc.FanoutStub(self._channel)

    def stop(self, *_):
        self._stopped.set()
        if self._call is not None:
            self._call.cancel()

    def _next_request(self):
        request = fanout_pb2.SubscribeRequest(event_types=self._patterns)
        if self._has_position:
            request.start.after_sequence = self._last_sequence
        elif self._start.WhichOneof("position") is not None:
            request.start.CopyFrom(self._start)
        return request

    def _advance(self, sequence):
        self._last_sequence = max(self._last_sequence, sequence)
        self._has_position = True

    def _run_call(self):
        """Runs one Subscribe call to its end. Returns (status code, details,
        whether anything was received)."""
        received = False
        call = self._stub.Subscribe(self._next_request(),
                                    metadata=self._metadata)
        self._call = call
        # A stop() that came before _call was set could not cancel it.
        if self._stopped.is_set():
            call.cancel()
        try:
            for response in call:
                received = True
                kind = response.WhichOneof("kind")
                if kind == "event":
                    sys.stdout.write(dump_json(event_to_json(
                        response.event, self._include_raw_body)) + "\n")
                    sys.stdout.flush()
                    self._advance(response.event.sequence)
                elif kind == "heartbeat":
                    self._advance(response.heartbeat.sequence)
                # Another kind was added after this client was written.
            return grpc.StatusCode.OK, "", received
        except grpc.RpcError as error:
            return error.code(), error.details() or "", received
        finally:
            self._call = None

    def run(self):
        """Subscribes until stop() or a stream end that retrying cannot fix.
        Returns the process exit status."""
        backoff = INITIAL_BACKOFF_S
        while not self._stopped.is_set():
            code, details, received = self._run_call()
            if self._stopped.is_set():
                break
            if code not in RETRYABLE_CODES:
                print(f"fanout_subscribe: {code.name}: {details}",
                      file=sys.stderr)
                return 1

            if received:
                backoff = INITIAL_BACKOFF_S
            delay = backoff * (1 - JITTER * random.random())
            cause = "closed by the server" if code == grpc.StatusCode.OK \
                else f"{code.name}: {details}"
            print(f"fanout_subscribe: subscription interrupted ({cause}); "
                  f"subscribing again "
                  f"{describe_start(self._next_request().start)} in "
                  f"{delay * 1e3:.0f}ms", file=sys.stderr, flush=True)
            self._stopped.wait(delay)
            backoff = min(backoff * BACKOFF_MULTIPLIER, MAX_BACKOFF_S)
        return 0

    def close(self):
        self._channel.close()


def parse_start(args, parser):
    """The StartPosition that --after, --since and --from-start ask for."""
    start = fanout_pb2.StartPosition()
    if args.after is not None:
        sequence = int(args.after) if re.fullmatch(r"[0-9]+", args.after) \
            else -1
        if not 0 <= sequence < 1 << 64:
            parser.error(f"--after {args.after}: expected a sequence number, "
                         "e.g. 42")
        start.after_sequence = sequence
    elif args.since is not None:
        try:
            start.since_time.FromJsonString(args.since)
        except ValueError as error:
            parser.error(f"--since {args.since}: expected an RFC 3339 time, "
                         f"e.g. 2026-03-01T14:00:00Z ({error})")
    elif args.from_start:
        start.from_oldest = True
    return start


def read_file(path, what, parser, secret=False):
    """The bytes of `path`; a file holding a secret must not be accessible
    to other users, as fanout-subscribe requires too."""
    try:
        if secret and os.stat(path).st_mode & 0o007:
            parser.error(f"{what} {path} holds a secret but other users may "
                         f"access it; run chmod o-rwx {path}")
        with open(path, "rb") as source:
            return source.read()
    except OSError as error:
        parser.error(f"{what}: cannot read {path}: {error.strerror}")


def parse_security(args, parser):
    """(channel credentials or None, access token or None) from the TLS and
    token flags and $FANOUT_TOKEN."""
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")
    if args.tls_cert_file and not args.tls_ca_file:
        parser.error("a client certificate needs --tls-ca-file")
    credentials = None
    if args.tls_ca_file:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.tls_ca_file, "--tls-ca-file",
                                        parser),
            private_key=read_file(args.tls_key_file, "--tls-key-file", parser,
                                  secret=True) if args.tls_key_file else None,
            certificate_chain=read_file(args.tls_cert_file, "--tls-cert-file",
                                        parser)
            if args.tls_cert_file else None)
    if args.token_file:
        text = read_file(args.token_file, "--token-file", parser, secret=True)
        lines = text.decode("utf-8", errors="replace").splitlines()
        token = lines[0].strip() if lines else ""
        source = args.token_file
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = TOKEN_ENV
    if (args.token_file or token) and \
            re.fullmatch(r"[\x21-\x7e]+", token) is None:
        parser.error(f"the access token in {source} must be printable ASCII "
                     "without spaces, on the first line")
    return credentials, token or None


def main(argv):
    parser = argparse.ArgumentParser(
        prog="fanout_subscribe.py",
        description="Prints every matching staffify-fanout event as one JSON "
                    "line.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051",
                        metavar="HOST:PORT",
                        help="the fanout-server gRPC endpoint "
                             "(default %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--after", metavar="SEQ",
                       help="start with the events after sequence SEQ")
    where.add_argument("--since", metavar="TIME",
                       help="start with the events received at or after "
                            "TIME (RFC 3339, e.g. 2026-03-01T14:00:00Z)")
    where.add_argument("--from-start", "--from_start", dest="from_start",
                       action="store_true",
                       help="start with the oldest event the server holds")
    parser.add_argument("--raw-body", "--raw_body", dest="raw_body",
                        action="store_true",
                        help="also print each delivery's original body as "
                             "\"rawBody\"")
    parser.add_argument("--tls-ca-file", "--tls_ca_file", dest="tls_ca_file",
                        metavar="PEM",
                        help="the CA certificate that signed the server's; "
                             "connects with TLS")
    parser.add_argument("--tls-cert-file", "--tls_cert_file",
                        dest="tls_cert_file", metavar="PEM",
                        help="a client certificate, for mutual TLS")
    parser.add_argument("--tls-key-file", "--tls_key_file",
                        dest="tls_key_file", metavar="PEM",
                        help="the key of --tls-cert-file")
    parser.add_argument("--tls-server-name", "--tls_server_name",
                        dest="tls_server_name", metavar="NAME",
                        help="the name the server's certificate must carry, "
                             "when it is not the host of --target")
    parser.add_argument("--token-file", "--token_file", dest="token_file",
                        metavar="PATH",
                        help="file whose first line is the access token "
                             f"(default: ${TOKEN_ENV}, if set)")
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="ticket.created, ticket.* or * (the default)")
    args = parser.parse_args(argv)

    credentials, token = parse_security(args, parser)
    subscriber = Subscriber(args.target, args.patterns,
                            parse_start(args, parser), args.raw_body,
                            credentials, args.tls_server_name, token)
    signal.signal(signal.SIGINT, subscriber.stop)
    signal.signal(signal.SIGTERM, subscriber.stop)
    try:
        return subscriber.run()
    except BrokenPipeError:
        # Whoever read our output has gone; say nothing more on stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("fanout_subscribe: cannot write to stdout", file=sys.stderr)
        return 1
    finally:
        subscriber.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
