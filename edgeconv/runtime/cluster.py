"""Ray, the optional distributed engine (``pip install 'edgeconv[ray]'``): one place that imports it and connects.
``edgeconv sweep --ray`` (:mod:`edgeconv.sweep.ray_backend`) and ``edgeconv validate --jobs N --ray``
(:mod:`edgeconv.runtime.shard`) use it."""
from __future__ import annotations

from edgeconv.errors import UsageError, first_line

__all__ = ["ray_module", "connect"]


def ray_module():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'edgeconv[ray]'") from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> str:
    """``ray.init`` once: ``address`` is ``host:port`` / ``ray://...`` of a running cluster, or ``auto`` (the
    cluster started on this machine with ``ray start --head``; when there is none, a local one is started in this
    process with ``num_cpus`` CPUs). -> a one-line description of what it connected to."""
    ray = ray_module()
    if ray.is_initialized():
        return "Ray (already initialized)"
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
    if address == "auto":
        try:
            ray.init(address="auto", runtime_env=env, log_to_driver=False)
            return "the Ray cluster running on this machine"
        except ConnectionError:
            ray.init(num_cpus=num_cpus, runtime_env=env, log_to_driver=False, include_dashboard=False)
            return f"a local Ray cluster started for this run ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
    try:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    except (ConnectionError, ValueError) as e:
        raise UsageError(f"--ray {address}: cannot connect: {first_line(e)}") from None
    return f"the Ray cluster at {address}"
