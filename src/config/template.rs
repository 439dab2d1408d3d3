//! The commented `neuron.toml` that `neuron init` writes: every key with its default (a test holds
//! it to `Config::default()`).

/// The commented `neuron.toml` that `neuron init` writes.
pub const TEMPLATE: &str = r#"# Neuron configuration. Every key is shown with its default.
# Environment variables override keys: NEURON_<SECTION>__<KEY>, e.g. NEURON_WEBSOCKET__MAX_QUEUED=5000.

[organization]
npi = "1245319599"              # 10 digits, Luhn-valid (prefix 80840)
name = "Demo Clinic"

[server]                        # the public WebSocket listener
host = "127.0.0.1"
port = 3000                     # 0 = pick a free port; the bound address is written to {data_dir}/serve.addr
public_url = "http://localhost:3000"   # provider endpoints are {public_url}/ws/provider/{npi}
header_timeout_ms = 5000        # a request's header must arrive within this, from accept (queued or not);
                                # on the operator listener also the idle keep-alive and body limit
max_connections = 20000         # open connections on this listener, queued ones included; then 503
shutdown_grace_ms = 5000        # a graceful stop ends within this, whatever clients do

[admin]                         # the operator listener: health, metrics, views, providers, export
host = "127.0.0.1"
port = 3001                     # 0 = pick a free port; written to {data_dir}/admin.addr
token_hashes = []               # blake3 hex of bearer tokens (`neuron admin-token` makes one);
                                # with any listed, /v1/* needs one; required off loopback
allowed_hosts = []              # Host header values accepted besides the listener's address and localhost
allowed_origins = []            # browser origins allowed; a request with any other Origin gets 403
max_connections = 64            # open connections on the operator listener
max_exports = 2                 # export streams at once; more get 503 with Retry-After

[websocket]
path = "/ws/handshake"
max_concurrent_handshakes = 10  # live handshakes; more wait in a FIFO queue without their HTTP 101
max_queued = 1000               # past this, HTTP 503 at once
auth_timeout_ms = 10000
challenge_timeout_ms = 10000
queue_timeout_ms = 30000        # a queued upgrade waiting longer gets HTTP 503 with Retry-After
max_payload_bytes = 65536       # larger frames are refused with close 1009
write_timeout_ms = 5000         # a frame the client does not take within this ends its session

[storage]
data_dir = "./data"             # the Neuron's key (neuron.key, mode 0600), serve.addr and, with sled, the log
backend = "sled"                # "sled" (embedded, nothing to install) or "postgres" (replicated; SPEC 3.6)
# [storage.postgres]
# url = "postgres://neuron@db1,db2,db3/neuron?target_session_attrs=read-write"
# log = "main"                  # which log in that database (one writer per log)
# require_sync_standbys = true  # refuse to start unless a synchronous standby is configured
# commit_timeout_ms = 10000     # a commit no quorum confirms within this stops the server

[audit]
checkpoint_every = 1000         # a signed log.checkpoint whenever the next seq is a multiple of this
origin = ""                     # the log's C2SP origin; "" = "{public_url host}/neuron/{organization npi}"; fixed once the log exists
witness_interval_ms = 10000     # how often the latest checkpoint is sent to each witness
witness_quorum = 0              # cosignatures for a checkpoint to count as witnessed (0 = every listed witness)
# [[audit.witnesses]]
# name = "witness.example.org/w1"
# vkey = "witness.example.org/w1+1234abcd+BA..."   # its C2SP vkey, type 0x04 (cosignature/v1)
# url = "https://witness.example.org/"             # its add-checkpoint submission prefix

# The organization's providers. Changes are recorded as events at start-up.
[[providers]]
npi = "1234567893"
name = "Demo Provider"
"#;
