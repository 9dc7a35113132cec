#!/usr/bin/env node
// fanout_subscribe.js: a Node.js subscriber for staffify-fanout.
//
// Subscribes to event type patterns over gRPC and prints each event as one
// JSON object per line, with Staffify's own keys, byte for byte as
// client/python/fanout_subscribe.py does. A stream that breaks for a reason
// that may pass is resumed after the last sequence seen, after a backoff
// wait. Ctrl-C (or SIGTERM) ends it with exit status 0; a stream the server
// refuses, with 1.
//
// The .proto files are read at start-up from proto/ (FANOUT_PROTO_DIR names
// another folder). @grpc/proto-loader ignores json_name (its keepCase: false
// gives resolutionSummary where Staffify says resolution_summary), so the
// keys come from the json_name options that protobufjs, the parser under
// proto-loader, keeps on each field.

'use strict';

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR =
  process.env.FANOUT_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'staffify/fanout/v1/fanout.proto';

// Reconnection backoff, as in client/event_subscriber.h: the first wait after
// a broken stream is INITIAL; each further attempt that receives nothing
// multiplies it by MULTIPLIER, up to MAX; each actual wait is drawn from
// [nominal * (1 - JITTER), nominal].
const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10000;
const BACKOFF_MULTIPLIER = 2;
const JITTER = 0.2;

const MAX_MESSAGE_BYTES = 64 << 20;
const TOKEN_ENV = 'FANOUT_TOKEN';

// Stream ends worth subscribing again after; any other code ends the run.
// IsRetryableStreamEnd in client/event_subscriber.h, plus CANCELLED: a
// stopping server cancels the calls that reach it while it shuts down (our
// own cancellations end the run before the code is looked at).
const RETRYABLE_CODES = new Set([
  grpc.status.OK,
  grpc.status.CANCELLED,
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.ABORTED,
]);

const USAGE = `\
Usage: fanout_subscribe.js [--target HOST:PORT]
                           [--after SEQ | --since TIME | --from-start]
                           [--raw-body] [--tls-ca-file PEM
                           [--tls-cert-file PEM --tls-key-file PEM]]
                           [--tls-server-name NAME] [--token-file PATH]
                           [PATTERN...]
Prints every matching staffify-fanout event as one JSON line.

  --target HOST:PORT  the fanout-server gRPC endpoint (default 127.0.0.1:50051)
  --after SEQ         start with the events after sequence SEQ
  --since TIME        start with the events received at or after TIME
                      (RFC 3339, e.g. 2026-03-01T14:00:00Z)
  --from-start        start with the oldest event the server holds
  --raw-body          also print each delivery's original body as "rawBody"
  --tls-ca-file PEM   the CA certificate that signed the server's; connects
                      with TLS
  --tls-cert-file PEM --tls-key-file PEM
                      a client certificate and its key, for mutual TLS
  --tls-server-name NAME
                      the name the server's certificate must carry, when it
                      is not the host of --target
  --token-file PATH   file whose first line is the access token (default:
                      $FANOUT_TOKEN, if set)

A pattern is an event type (ticket.created), a domain (ticket.*) or *
(every type, also what no pattern means). By default only events accepted
after the subscription starts are printed.

A broken stream is resumed after the last sequence seen. A stream the server
refuses (a bad pattern, a start position it no longer holds, a missing or
unknown access token, a pattern outside the token's grant) ends the run
with exit status 1; Ctrl-C or SIGTERM, with 0.`;

// ------------------------------------------------------------------- JSON

// Text that goes into the JSON output as it is: the decimal digits of a
// 64-bit integer, which a JavaScript number would round beyond 2^53.
class RawJson {
  constructor(text) {
    this.text = text;
  }
}

// `value` as compact JSON; RawJson values are written as their text, and a
// Map as an object with its entries in order.
function dumpJson(value) {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(dumpJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = value instanceof Map ? [...value] : Object.entries(value);
    const members = entries.map(
      ([key, element]) => `${JSON.stringify(key)}:${dumpJson(element)}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

// Proto3's JSON mapping spells the values JSON has no number for.
function doubleToJson(value) {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  return value;
}

// protoc's default json_name: lowerCamelCase of the field name.
function defaultJsonName(name) {
  return name.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase())
    .replace(/_/g, '');
}

function jsonName(field) {
  const fromProto = field.options && field.options.json_name;
  return fromProto || defaultJsonName(field.name);
}

// A google.protobuf.Timestamp as RFC 3339 in UTC, with 0, 3, 6 or 9
// fractional digits, as protobuf's own JSON printers write it.
function formatTimestamp(timestamp) {
  const seconds = Number(timestamp.seconds || 0);
  const nanos = timestamp.nanos || 0;
  const whole = new Date(seconds * 1000).toISOString().slice(0, 19);
  let fraction = '';
  if (nanos % 1e6 === 0 && nanos !== 0) {
    fraction = `.${String(nanos / 1e6).padStart(3, '0')}`;
  } else if (nanos % 1e3 === 0 && nanos !== 0) {
    fraction = `.${String(nanos / 1e3).padStart(6, '0')}`;
  } else if (nanos !== 0) {
    fraction = `.${String(nanos).padStart(9, '0')}`;
  }
  return `${whole}${fraction}Z`;
}

// The numbers of google.protobuf.Value's fields. protobufjs names them as
// its bundled struct.proto does (numberValue), not as keepCase would have
// them, so they are told apart by number.
const VALUE_NULL = 1;
const VALUE_NUMBER = 2;
const VALUE_STRING = 3;
const VALUE_BOOL = 4;
const VALUE_STRUCT = 5;
const VALUE_LIST = 6;

// A decoded google.protobuf.Value, of type `valueType`, as plain JSON.
// Integral numbers print as integers, as they came, like the C++ client.
function structValueToJson(valueType, value) {
  const field =
    value.kind === undefined ? undefined : valueType.fields[value.kind];
  switch (field === undefined ? VALUE_NULL : field.id) {
    case VALUE_NUMBER:
      return doubleToJson(value[field.name]);
    case VALUE_STRING:
    case VALUE_BOOL:
      return value[field.name];
    case VALUE_STRUCT:
      return structToJson(field.resolvedType, value[field.name]);
    case VALUE_LIST:
      return (value[field.name].values || []).map(
        (element) => structValueToJson(valueType, element));
    default:
      return null;
  }
}

// Keys sorted by UTF-16 code units, as fanout_subscribe.py sorts them too.
function sortedKeys(object) {
  return Object.keys(object).sort();
}

// A google.protobuf.Struct, of type `structType`, as a JSON object, held in
// a Map: a plain object would list keys such as "10" before "9" whatever the
// insertion order. A Struct keeps no key order, so keys are sorted.
function structToJson(structType, struct) {
  const valueType = structType.fields.fields.resolvedType;
  const fields = struct.fields || {};
  return new Map(sortedKeys(fields).map(
    (key) => [key, structValueToJson(valueType, fields[key])]));
}

const INT64_TYPES =
  new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const DOUBLE_TYPES = new Set(['double', 'float']);

// One value of `field` (of a message decoded by proto-loader) as JSON.
function fieldValueToJson(field, value) {
  const type = field.resolvedType;
  if (type instanceof protobuf.Type) return messageToJson(type, value);
  if (type instanceof protobuf.Enum) return value;  // its name (enums: String)
  if (INT64_TYPES.has(field.type)) return new RawJson(String(value));
  if (DOUBLE_TYPES.has(field.type)) return doubleToJson(value);
  if (field.type === 'bytes') return Buffer.from(value).toString('base64');
  return value;  // 32-bit integer, bool, string
}

// `message`, decoded by proto-loader as a `type`, as JSON keyed by each
// field's json_name (Staffify's keys), with the present fields only, in field
// number order. Timestamp prints as RFC 3339 and Struct as the object it
// holds.
function messageToJson(type, message) {
  if (type.fullName === '.google.protobuf.Timestamp') {
    return formatTimestamp(message);
  }
  if (type.fullName === '.google.protobuf.Struct') {
    return structToJson(type, message);
  }

  const out = {};
  const fields = [...type.fieldsArray].sort((a, b) => a.id - b.id);
  for (const field of fields) {
    const value = message[field.name];
    if (value === undefined || value === null) continue;
    if (field.map) {
      out[jsonName(field)] = new Map(sortedKeys(value).map(
        (key) => [key, fieldValueToJson(field, value[key])]));
    } else if (field.repeated) {
      out[jsonName(field)] =
        value.map((element) => fieldValueToJson(field, element));
    } else {
      out[jsonName(field)] = fieldValueToJson(field, value);
    }
  }
  return out;
}

// The line printed for `event`: the shape of EventToJson in
// server/convert/event_json.h.
function eventToJson(eventType, event, includeRawBody) {
  const out = {
    sequence: new RawJson(String(event.sequence || '0')),
    id: event.id || '',
    event: event.event_type || '',
    timestamp: formatTimestamp(event.timestamp || {}),
    receivedAt: formatTimestamp(event.received_at || {}),
  };
  const payload = event.payload && eventType.fields[event.payload];
  out.data = payload
    ? fieldValueToJson(payload, event[event.payload])
    : {};
  const problems = event.conversion_problems || [];
  if (problems.length > 0) {
    const problemType = eventType.fields.conversion_problems.resolvedType;
    out.conversionProblems = problems.map((p) => messageToJson(problemType, p));
  }
  if (includeRawBody) {
    out.rawBody = Buffer.from(event.raw_body || []).toString('utf8');
  }
  return out;
}

// ----------------------------------------------------------- subscribing

// Parses an RFC 3339 time into a google.protobuf.Timestamp object; null when
// `text` is not one.
function parseRfc3339(text) {
  const match = new RegExp(
    '^(\\d{4})-(\\d{2})-(\\d{2})[Tt](\\d{2}):(\\d{2}):(\\d{2})(\\.\\d{1,9})?' +
    '([Zz]|[+-]\\d{2}:\\d{2})$').exec(text);
  if (match === null) return null;
  const [year, month, day, hour, minute, second] =
    match.slice(1, 7).map(Number);
  const millis = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(millis);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 ||
      check.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    return null;
  }
  let offsetSeconds = 0;
  if (!/^[Zz]$/.test(match[8])) {
    const sign = match[8][0] === '-' ? -1 : 1;
    const [offsetHours, offsetMinutes] =
      match[8].slice(1).split(':').map(Number);
    if (offsetHours > 23 || offsetMinutes > 59) return null;
    offsetSeconds = sign * (offsetHours * 3600 + offsetMinutes * 60);
  }
  const nanos = match[7] ? Number(match[7].slice(1).padEnd(9, '0')) : 0;
  return { seconds: String(millis / 1000 - offsetSeconds), nanos };
}

function describeStart(start) {
  if (start === undefined) return 'with new events';
  if (start.after_sequence !== undefined) {
    return `after sequence ${start.after_sequence}`;
  }
  if (start.since_time !== undefined) {
    return `since ${formatTimestamp(start.since_time)}`;
  }
  if (start.from_oldest) return 'from the oldest event';
  return 'with new events';
}

// Keeps a Subscribe stream going and prints its events, resuming after the
// last sequence seen when the stream breaks. `onExit` is called once, with
// the process exit status, when the subscriber is done.
class Subscriber {
  constructor({
    target, patterns, start, includeRawBody, credentials, serverName, token,
    onExit,
  }) {
    this.patterns = patterns;
    this.start = start;
    this.includeRawBody = includeRawBody;
    this.onExit = onExit;
    // A BigInt: sequences are 64-bit.
    this.lastSequence = 0n;
    // Whether an event or a heartbeat was seen (a heartbeat may carry
    // sequence 0), so that calls resume after lastSequence.
    this.hasPosition = false;
    this.backoffMs = INITIAL_BACKOFF_MS;
    this.stopped = false;
    this.call = null;
    this.retryTimer = null;

    const root = new protobuf.Root();
    root.resolvePath = (origin, target) =>
      (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    try {
      root.loadSync(PROTO_FILE, { keepCase: true });
      root.resolveAll();
    } catch (error) {
      process.stderr.write(`fanout_subscribe: cannot load ${PROTO_FILE} from ` +
                           `${PROTO_DIR} (FANOUT_PROTO_DIR names another ` +
                           `folder): ${error.message}\n`);
      process.exit(1);
    }
    this.eventType = root.lookupType('staffify.fanout.v1.Event');

    const definition = protoLoader.fromJSON(root.toJSON(), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: false,
      oneofs: true,
    });
    const { Fanout } =
      grpc.loadPackageDefinition(definition).staffify.fanout.v1;
    // The channel's own reconnection schedule is kept within ours, so that
    // it does not hold a reconnection back far beyond MAX_BACKOFF_MS;
    // keepalive pings find a connection that died without a word.
    const channelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.initial_reconnect_backoff_ms': INITIAL_BACKOFF_MS,
      'grpc.min_reconnect_backoff_ms': INITIAL_BACKOFF_MS,
      'grpc.max_reconnect_backoff_ms': MAX_BACKOFF_MS,
      'grpc.keepalive_time_ms': 30000,
      'grpc.keepalive_timeout_ms': 10000,
    };
    if (serverName) {
      channelOptions['grpc.ssl_target_name_override'] = serverName;
    }
    this.client = new Fanout(
      target, credentials || grpc.credentials.createInsecure(),
      channelOptions);
    this.metadata = new grpc.Metadata();
    if (token) this.metadata.add('authorization', `Bearer ${token}`);
  }

  nextRequest() {
    const request = { event_types: this.patterns };
    if (this.hasPosition) {
      request.start = { after_sequence: this.lastSequence.toString() };
    } else if (this.start !== undefined) {
      request.start = this.start;
    }
    return request;
  }

  advance(sequence) {
    const value = BigInt(sequence || '0');
    if (value > this.lastSequence) this.lastSequence = value;
    this.hasPosition = true;
  }

  // Starts one Subscribe call.
  subscribe() {
    if (this.stopped) return;
    const call = this.client.Subscribe(this.nextRequest(), this.metadata);
    this.call = call;
    let received = false;
    let status = null;
    let ended = false;

    // grpc-js reports the status as soon as it arrives, while messages may
    // still wait in the stream's buffer: the call is over only when both
    // the status came and the stream has handed out its last message.
    const settle = () => {
      if (status === null || !ended || this.call !== call) return;
      this.call = null;
      this.onCallEnd(status, received);
    };
    call.on('data', (response) => {
      if (this.call !== call) return;
      received = true;
      if (response.kind === 'event') {
        const line = dumpJson(
          eventToJson(this.eventType, response.event, this.includeRawBody));
        process.stdout.write(`${line}\n`);
        this.advance(response.event.sequence);
      } else if (response.kind === 'heartbeat') {
        this.advance(response.heartbeat.sequence);
      }
      // Another kind was added after this client was written.
    });
    // The status event carries the same error.
    call.on('error', () => {});
    call.on('status', (s) => {
      status = s;
      settle();
    });
    call.on('end', () => {
      ended = true;
      settle();
    });
    call.on('close', () => {
      ended = true;
      settle();
    });
  }

  onCallEnd(status, received) {
    if (this.stopped) {
      this.finish(0);
      return;
    }
    if (!RETRYABLE_CODES.has(status.code)) {
      process.stderr.write(
        `fanout_subscribe: ${grpc.status[status.code]}: ${status.details}\n`);
      this.finish(1);
      return;
    }

    if (received) this.backoffMs = INITIAL_BACKOFF_MS;
    const delay = this.backoffMs * (1 - JITTER * Math.random());
    const cause = status.code === grpc.status.OK
      ? 'closed by the server'
      : `${grpc.status[status.code]}: ${status.details}`;
    process.stderr.write(
      `fanout_subscribe: subscription interrupted (${cause}); subscribing ` +
      `again ${describeStart(this.nextRequest().start)} in ` +
      `${Math.round(delay)}ms\n`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.subscribe();
    }, delay);
    this.backoffMs =
      Math.min(this.backoffMs * BACKOFF_MULTIPLIER, MAX_BACKOFF_MS);
  }

  // Ends the run with status 0: cancels the call, or the backoff wait.
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.call !== null) {
      this.call.cancel();  // onCallEnd finishes
    } else {
      this.finish(0);
    }
  }

  finish(exitStatus) {
    this.stopped = true;
    this.client.close();
    this.onExit(exitStatus);
  }
}

function usageError(message) {
  process.stderr.write(`fanout_subscribe: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        target: { type: 'string', default: '127.0.0.1:50051' },
        after: { type: 'string' },
        since: { type: 'string' },
        'from-start': { type: 'boolean', default: false },
        from_start: { type: 'boolean', default: false },
        'raw-body': { type: 'boolean', default: false },
        raw_body: { type: 'boolean', default: false },
        'tls-ca-file': { type: 'string' },
        tls_ca_file: { type: 'string' },
        'tls-cert-file': { type: 'string' },
        tls_cert_file: { type: 'string' },
        'tls-key-file': { type: 'string' },
        tls_key_file: { type: 'string' },
        'tls-server-name': { type: 'string' },
        tls_server_name: { type: 'string' },
        'token-file': { type: 'string' },
        token_file: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    usageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }

  const fromStart = values['from-start'] || values.from_start;
  const chosen =
    [values.after !== undefined, values.since !== undefined, fromStart];
  if (chosen.filter(Boolean).length > 1) {
    usageError('give at most one of --after, --since and --from-start');
  }
  let start;
  if (values.after !== undefined) {
    if (!/^\d+$/.test(values.after) || BigInt(values.after) >= 1n << 64n) {
      usageError(
        `--after ${values.after}: expected a sequence number, e.g. 42`);
    }
    start = { after_sequence: BigInt(values.after).toString() };
  } else if (values.since !== undefined) {
    const since = parseRfc3339(values.since);
    if (since === null) {
      usageError(`--since ${values.since}: expected an RFC 3339 time, ` +
                 'e.g. 2026-03-01T14:00:00Z');
    }
    start = { since_time: since };
  } else if (fromStart) {
    start = { from_oldest: true };
  }
  return {
    target: values.target,
    patterns: positionals,
    start,
    includeRawBody: values['raw-body'] || values.raw_body,
    ...parseSecurity(values),
  };
}

// The bytes of `file`; one holding a secret must not be accessible to
// other users, as fanout-subscribe requires too.
function readFile(file, what, secret = false) {
  try {
    if (secret && (fs.statSync(file).mode & 0o007) !== 0) {
      usageError(`${what} ${file} holds a secret but other users may ` +
                 `access it; run chmod o-rwx ${file}`);
    }
    return fs.readFileSync(file);
  } catch (error) {
    usageError(`${what}: cannot read ${file}: ${error.message}`);
  }
  return null;
}

// The channel credentials and access token that the TLS and token flags
// (and $FANOUT_TOKEN) ask for.
function parseSecurity(values) {
  const ca = values['tls-ca-file'] || values.tls_ca_file;
  const cert = values['tls-cert-file'] || values.tls_cert_file;
  const key = values['tls-key-file'] || values.tls_key_file;
  const tokenFile = values['token-file'] || values.token_file;
  if (Boolean(cert) !== Boolean(key)) {
    usageError('--tls-cert-file and --tls-key-file go together');
  }
  if (cert && !ca) usageError('a client certificate needs --tls-ca-file');
  let credentials = null;
  if (ca) {
    credentials = grpc.credentials.createSsl(
      readFile(ca, '--tls-ca-file'),
      key ? readFile(key, '--tls-key-file', true) : null,
      cert ? readFile(cert, '--tls-cert-file') : null);
  }
  let token;
  let source;
  if (tokenFile) {
    token = (readFile(tokenFile, '--token-file', true).toString('utf8')
      .split('\n')[0] || '').trim();
    source = tokenFile;
  } else {
    token = (process.env[TOKEN_ENV] || '').trim();
    source = TOKEN_ENV;
  }
  if ((tokenFile || token) && !/^[\x21-\x7e]+$/.test(token)) {
    usageError(`the access token in ${source} must be printable ASCII ` +
               'without spaces, on the first line');
  }
  return {
    credentials,
    serverName: values['tls-server-name'] || values.tls_server_name,
    token: token || null,
  };
}

function main() {
  const options = parseCommandLine(process.argv.slice(2));
  // Whoever read our output has gone; there is no one left to print for.
  process.stdout.on('error', (error) => {
    process.stderr.write(
      `fanout_subscribe: cannot write to stdout: ${error.message}\n`);
    process.exit(1);
  });

  const subscriber = new Subscriber({
    ...options,
    onExit: (exitStatus) => {
      process.exitCode = exitStatus;
      // Closing the client ends every handle; this only guards against one
      // that lingers.
      setTimeout(() => process.exit(exitStatus), 2000).unref();
    },
  });
  process.on('SIGINT', () => subscriber.stop());
  process.on('SIGTERM', () => subscriber.stop());
  subscriber.subscribe();
}

main();
