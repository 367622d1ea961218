"""Dask execution for ``anodescope run``: the default scheduler, an existing cluster, recipes.

- :func:`connect` (context manager): ``None`` -> no client (stages run one after the other
  with Dask's local threaded scheduler); an address ``"tcp://host:8786"`` -> a
  ``dask.distributed.Client`` connected to that scheduler (closed on exit).
- Recipes that build a cluster to pass to ``connect`` (or use directly):
  :func:`local_cluster` (``distributed.LocalCluster``), :func:`slurm_cluster`
  (``dask_jobqueue.SLURMCluster``, constructed, nothing submitted until ``scale``) and
  :func:`cuda_cluster` (``dask_cuda.LocalCUDACluster``, one worker per GPU).

See ``docs/clusters.md`` for runnable snippets.
"""

from __future__ import annotations

import contextlib

from ._errors import InputError

__all__ = ["connect", "local_cluster", "slurm_cluster", "cuda_cluster"]


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("a dask scheduler needs the 'distributed' package (pip install distributed)") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler=None, *, timeout_s: float = 10.0):
    """Client for a dask.distributed scheduler, or None for the local threaded scheduler.

    Parameters
    ----------
    scheduler : str, distributed.Client, cluster object or None
        ``None``: no client (Dask's default threaded scheduler). A string: the scheduler
        address (``"tcp://10.0.0.5:8786"``, ``"localhost:8786"``). A cluster object (from
        :func:`local_cluster`, :func:`slurm_cluster`, ...) or a ``Client``: used as is and
        left open on exit.
    timeout_s : float
        Seconds to wait for the scheduler to answer.

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    InputError
        When ``distributed`` is missing or nobody answers at the address.

    Examples
    --------
    >>> with connect(None) as client:
    ...     print(client)
    None
    """
    if scheduler is None:
        yield None
        return
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if not isinstance(scheduler, str):  # a cluster object
        client = distributed.Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    address = scheduler.strip()
    if not address:
        raise InputError("--scheduler: empty address (expected e.g. tcp://host:8786)")
    try:
        client = distributed.Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--scheduler {address}: no dask scheduler answered within {timeout_s:g} s "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    try:
        yield client
    finally:
        client.close()


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, *, memory_limit="auto",
                  processes: bool = True, dashboard_address: str | None = None, **kwargs):
    """A ``distributed.LocalCluster`` on this machine.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    threads_per_worker : int
        Threads per worker.
    memory_limit : str, int or "auto"
        Memory per worker (bytes or "4GB"; "auto" shares the machine's memory).
    processes : bool
        Workers in separate processes (True) or threads of this process.
    dashboard_address : str, optional
        Dashboard address (e.g. ":8787"); default none.
    **kwargs
        Passed to ``LocalCluster``.

    Returns
    -------
    distributed.LocalCluster
        Use ``cluster.scheduler_address`` with ``anodescope run --scheduler`` or pass the
        cluster to :func:`connect`; close it when done.

    Examples
    --------
    >>> with local_cluster(2) as cluster:                 # doctest: +SKIP
    ...     run_study("study.yaml", scheduler=cluster.scheduler_address)
    """
    distributed = _import_distributed()
    if int(n_workers) != n_workers or n_workers < 1:
        raise InputError(f"n_workers must be a positive integer, got {n_workers!r}")
    if int(threads_per_worker) != threads_per_worker or threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    return distributed.LocalCluster(n_workers=int(n_workers), threads_per_worker=int(threads_per_worker),
                                    memory_limit=memory_limit, processes=processes,
                                    dashboard_address=dashboard_address, **kwargs)


def slurm_cluster(*, cores: int = 8, memory: str = "32GB", processes: int = 1, walltime: str = "02:00:00",
                  queue: str | None = None, account: str | None = None, gpus_per_job: int = 0,
                  job_extra_directives: list[str] | None = None, local_directory: str | None = None,
                  job_script_prologue: list[str] | None = None, **kwargs):
    """A ``dask_jobqueue.SLURMCluster`` (constructed; no job is submitted until ``scale``).

    Parameters
    ----------
    cores : int
        CPU cores per SLURM job.
    memory : str
        Memory per job ("32GB").
    processes : int
        Dask worker processes per job.
    walltime : str
        Job time limit ("HH:MM:SS").
    queue : str, optional
        SLURM partition.
    account : str, optional
        SLURM account.
    gpus_per_job : int
        GPUs per job (adds ``--gres=gpu:N``).
    job_extra_directives : list of str, optional
        More ``#SBATCH`` options (e.g. ``["--constraint=a100"]``).
    local_directory : str, optional
        Node-local scratch for worker spill.
    job_script_prologue : list of str, optional
        Shell lines run before the worker starts (``module load``, ``source venv``).
    **kwargs
        Passed to ``SLURMCluster``.

    Returns
    -------
    dask_jobqueue.SLURMCluster
        ``cluster.job_script()`` shows the batch script; ``cluster.scale(jobs=4)`` submits.

    Raises
    ------
    InputError
        When dask-jobqueue is not installed, or a value is out of range.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("slurm_cluster needs the 'dask-jobqueue' package (pip install dask-jobqueue)") from None
    for name, value in (("cores", cores), ("processes", processes)):
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if int(gpus_per_job) != gpus_per_job or gpus_per_job < 0:
        raise InputError(f"gpus_per_job must be an integer >= 0, got {gpus_per_job!r}")
    extra = list(job_extra_directives or [])
    if gpus_per_job:
        extra.append(f"--gres=gpu:{int(gpus_per_job)}")
    opts = dict(cores=int(cores), memory=memory, processes=int(processes), walltime=walltime, queue=queue,
                account=account, job_extra_directives=extra, job_script_prologue=list(job_script_prologue or []))
    if local_directory:
        opts["local_directory"] = local_directory
    opts.update(kwargs)
    return SLURMCluster(**opts)


def cuda_cluster(*, visible_devices=None, memory_limit="auto", **kwargs):
    """A ``dask_cuda.LocalCUDACluster``: one worker per GPU of this machine.

    Parameters
    ----------
    visible_devices : str or list of int, optional
        GPUs to use (``"0,1"``); default all.
    memory_limit : str, int or "auto"
        Host memory per worker.
    **kwargs
        Passed to ``LocalCUDACluster`` (e.g. ``rmm_pool_size="20GB"``).

    Returns
    -------
    dask_cuda.LocalCUDACluster

    Raises
    ------
    InputError
        When dask-cuda is not installed or no CUDA GPU is visible.
    """
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise InputError("cuda_cluster needs the 'dask-cuda' package and a CUDA GPU "
                         "(pip install dask-cuda)") from None
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDA driver missing
        raise InputError(f"cuda_cluster: no CUDA GPU available ({type(exc).__name__})") from None
    if n < 1:
        raise InputError("cuda_cluster: no CUDA GPU available")
    return LocalCUDACluster(CUDA_VISIBLE_DEVICES=visible_devices, memory_limit=memory_limit, **kwargs)
