"""The wire protocol: every message that crosses a process boundary, declared as a type.

Two channels use it:

* supervisor <-> agent: websocket binary frames. A frame is a msgpack array of messages, so
  many status updates or run ops travel in one frame (batching is what makes thousands of
  short jobs per second possible).
* gateway -> supervisor: one HTTP request per gateway request (msgpack body), answered by a
  `Reply`; committed events flow back on a long-lived stream of `Event`s.

Messages are frozen dataclasses with a `TYPE` tag (`jobvisor.codec.Message`). They are
decoded only at the socket edge (`jobvisor.codec.decode_frame`, `decode`), with the set of
tags that edge accepts; the rest of the code never sees raw dicts. A message that is
malformed, of an unknown type or larger than the limit raises `ProtocolError`, which the edge
answers with an error (an `ErrorMessage` on the agents' socket, a failed `Reply` to the
gateway): the peer stays up.

One module per channel or concern; a new message goes in the one its readers look in:

| module | declares |
|---|---|
| `common` | what both channels share: `PROTOCOL_VERSION`, `WireError` (an op's failure), and the gateway's envelope, `Caller` and `Reply` |
| `agent_wire` | supervisor <-> agent: runs, cancels, inputs, analysis and io ops, hello, reports, logs |
| `job_requests` | gateway -> supervisor about jobs: submit (`JobSpec`), uploads, list, get, cancel, resubmit, logs, files, analysis |
| `system_requests` | gateway -> supervisor about the system: queue, agents, status, cluster logins, and the orchestrator's ops over many jobs |
| `workflow_requests` | gateway -> supervisor about workflows and the timers that execute them |
| `events` | `Event` and `EventKind`, and the requests that read and post events |
| `registry` | the one place that knows every type: each channel's closed set (`ToAgent`, `FromAgent`, `GatewayRequest`), the codec's registration, and the `ALLOWED_*` tags each edge decodes with |

A new message is declared in its module, then named in its channel's set in `registry`
(`tests/jobvisor/test_protocol_registry.py` fails on one left out); a gateway request also
gets a handler in `supervisor.requests` (`tests/supervisor/test_requests.py` checks).
This `__init__` imports nothing: import each name from the module that declares it.
"""
