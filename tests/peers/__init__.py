"""Helpers that run real SIP peers (SIPp, Kamailio, baresip, stunnel, openssl) for interop tests and bench/.

Every peer runs in its own process group with a bounded lifetime and is killed on exit; a missing binary
raises PeerError (run scripts/bootstrap), it never skips.
"""

from .audio import read_wav_samples, rms, write_tone_wav
from .baresip import Baresip
from .kamailio import Kamailio, ProxyTls, proxy_config
from .openssl import OpenSslServer
from .proc import PeerError, PeerProcess, free_port, port_is_bound, require_binary, wait_port
from .sipp import SCENARIOS, SippProcess, SippResult, read_stat_file, run_sipp
from .stunnel import Stunnel
from .tls import combined_pem, dev_tls_cert

__all__ = [
    "SCENARIOS",
    "Baresip",
    "Kamailio",
    "OpenSslServer",
    "PeerError",
    "PeerProcess",
    "ProxyTls",
    "SippProcess",
    "SippResult",
    "Stunnel",
    "combined_pem",
    "dev_tls_cert",
    "free_port",
    "port_is_bound",
    "proxy_config",
    "read_stat_file",
    "read_wav_samples",
    "require_binary",
    "rms",
    "run_sipp",
    "wait_port",
    "write_tone_wav",
]
