"""The peer-to-peer cluster: `ringrift-p2p` nodes that find each other (UDP discovery on the
LAN, static peers elsewhere), elect a leader, and play self-play seed ranges for the pipeline's
`--backend p2p`. Reference: docs/p2p.md.

Modules: `node` (the aiohttp server and membership), `leader` (runs, ranges, dispatch,
collection), `jobs` (self-play worker subprocesses of one node), `discovery` (UDP), `auth`
(bearer token, HMAC of discovery datagrams), `netaddr` (interface addresses, Tailscale),
`client` (HTTP client used between nodes and by the pipeline), `dbtools` (game-DB checks run
off the event loop), `cli` (`ringrift-p2p`).
"""

PROTOCOL_VERSION = 1
DEFAULT_PORT = 8770
DEFAULT_DISCOVERY_PORT = 8771
TOKEN_ENV = "RINGRIFT_CLUSTER_AUTH_TOKEN"
