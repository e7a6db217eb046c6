"""ImageNet weights for zoo models through keras.applications' own downloader, never waiting on a network that is
not there.

keras.applications loads its ImageNet weights with ``keras.utils.get_file(fname, origin, cache_subdir="models",
file_hash=...)``: it looks for ``<keras home>/models/<fname>`` (``$KERAS_HOME`` as it was when keras was imported,
else ``~/.keras``; ``/tmp/.keras`` when that folder is not writable), checks the file's hash and downloads it with
urllib's ``urlretrieve`` (no timeout) when it is missing or does not match. edgeconv keeps that path, with no HTTP
code of its own, and adds what a command-line tool needs around it:

1. the file is in the Keras cache: keras loads it (the network is not involved);
2. it is not: a quick check that the download host answers (name resolution in a helper thread with a deadline, then
   a TCP connection with a timeout, to the HTTPS proxy when one is configured), :data:`PROBE_TIMEOUT` seconds at
   most; keras downloads only when the host answered;
3. either step failing raises :class:`WeightsUnavailable` with one line that says why. The export's default then
   goes on with random weights and one warning; an explicit ``--weights imagenet`` makes it an error.

Nothing global changes: no ``socket.setdefaulttimeout``, no patch of keras. Measured on a machine without network
(name resolution fails at once): cache miss + check -> :class:`WeightsUnavailable` in 2-5 ms (0.2 s on the first
call, which imports the zoo); a resolver that does not answer costs :data:`PROBE_TIMEOUT`. What is not guarded: a download that stalls after the host answered,
and a cached file whose hash keras rejects (keras then downloads it again without asking).
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line
from edgeconv.fileio import sha256_file

__all__ = ["PROBE_TIMEOUT", "WeightsUnavailable", "PretrainedWeights", "keras_cache_dir", "probe_host",
           "load_pretrained"]

#: Seconds the reachability check may take in all (name resolution + TCP connect).
PROBE_TIMEOUT = 3.0


class WeightsUnavailable(EdgeconvError):
    """Pretrained weights could not be had (not in the Keras cache and no way to download them, or keras failed)."""


@dataclass(frozen=True)
class PretrainedWeights:
    """What was loaded: the file keras asked for (its name in the Keras cache) and its sha256."""

    dataset: str
    file: str
    path: Path
    sha256: str | None


def keras_cache_dir() -> Path:
    """The folder keras.applications' ``get_file(..., cache_subdir="models")`` reads and writes, decided exactly as
    ``keras.src.utils.file_utils.get_file`` decides it (keras' home as read at import, /tmp/.keras when that is not
    writable)."""
    try:
        from keras.src.backend import config

        home = config.keras_home()
    except (ImportError, AttributeError):  # a keras that moved its private accessor: its documented rule
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    base = os.path.expanduser(home)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base) / "models"


def _proxy_for(host: str) -> tuple[str, int] | None:
    """The (host, port) of the HTTPS proxy urllib would use for ``host``, if any (environment / system settings)."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def probe_host(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to ``host`` (or to the HTTPS proxy for it) opens within ``timeout`` seconds, else
    why not, in a few words. Name resolution runs in a daemon thread so that a resolver that never answers cannot
    hold the caller; no global socket setting is changed."""
    target = _proxy_for(host) or (host, port)
    via = "" if target == (host, port) else f" (through the proxy {target[0]}:{target[1]})"
    deadline = time.monotonic() + timeout
    answer: dict = {}

    def resolve():
        try:
            answer["addresses"] = socket.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
        except OSError as e:
            answer["error"] = e

    thread = threading.Thread(target=resolve, name="edgeconv-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"no answer for {target[0]} from the name resolver within {timeout:g} s{via}"
    if "error" in answer:
        e = answer["error"]
        return f"cannot resolve {target[0]}{via}: {getattr(e, 'strerror', None) or e}"
    last: OSError | None = None
    for family, kind, proto, _, address in answer["addresses"]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(left)
                s.connect(address)
            return None
        except OSError as e:
            last = e
    if last is None:
        return f"no connection to {target[0]}:{target[1]} within {timeout:g} s{via}"
    return f"cannot connect to {target[0]}:{target[1]}{via}: {getattr(last, 'strerror', None) or last}"


# What keras raises when a download or a weights file fails: get_file wraps URL errors in a plain ``Exception``
# (exactly that type), h5py raises OSError for damaged files, keras ValueError for a hash or layer mismatch. Any
# other exception type is a bug and is not turned into "weights unavailable".
def _is_weights_failure(e: BaseException) -> bool:
    return type(e) is Exception or isinstance(e, (OSError, ValueError))


def load_pretrained(name: str, input_shape: tuple, classes: int, width: dict, *,
                    probe_timeout: float = PROBE_TIMEOUT):
    """Build zoo model ``name`` with keras.applications' own ``weights="imagenet"`` -> (model, PretrainedWeights).

    The caller has checked the configuration (``ModelInfo.pretrained_problem``). Raises :class:`WeightsUnavailable`
    (one line: the file, the Keras cache folder, why) when the weights cannot be had.
    """
    from edgeconv import models
    from edgeconv.models.pretrained import KERAS_WEIGHTS_HOST

    info = models.model_info(name)
    pre = info.pretrained
    fname = pre.file_name(info.build_config(input_shape, classes, **width))
    cache = keras_cache_dir()
    path = cache / fname
    cached = path.is_file()
    if not cached:
        why = probe_host(KERAS_WEIGHTS_HOST, timeout=probe_timeout)
        if why:
            raise WeightsUnavailable(f"{fname} is not in the Keras cache ({cache}) and cannot be downloaded: {why}")
    try:
        model = models.create_model(name, input_shape=input_shape, classes=classes, weights=pre.dataset, **width)
    except Exception as e:  # noqa: BLE001 - narrowed by _is_weights_failure; anything else is re-raised
        if not _is_weights_failure(e):
            raise
        what = f"loading {fname} from the Keras cache" if cached else f"downloading {fname} into the Keras cache"
        raise WeightsUnavailable(f"{what} ({cache}) failed: {first_line(e)}") from None
    return model, PretrainedWeights(pre.dataset, fname, path, sha256_file(path) if path.is_file() else None)
