"""The pin worker: the operator pins, on its IPFS node, every CID that the assets it indexes name.

``empressa indexer pin`` (run by ``empressa up`` when ``ipfs_api`` is set) loops
until SIGINT/SIGTERM, in one thread:

1. **Reconcile** (:meth:`~indexer.store.pins.Pins.reconcile`): follow the asset
   changes onto ``asset_media`` and the queue, until caught up.
2. **Claim** a batch of due jobs (``FOR UPDATE SKIP LOCKED``, each with a lease of
   ``pin_lease_s``) and do each: ``pin add`` for a wanted CID, ``pin rm`` for one no
   current asset has named for ``pin_unpin_grace_s``.
3. **Record** each outcome under the claim's token: ``pinned`` (or the row gone after
   an unpin), or the failure's reason with the next attempt after an exponential
   backoff (``pin_backoff_s`` doubled per attempt, at most ``pin_backoff_max_s``);
   after ``pin_max_attempts`` a pin is ``failed``.

A worker killed mid-job (``kill -9``) loses nothing: the job's lease ends and
another claim (this worker restarted, or another one) does it; the killed one
recorded nothing, and a worker whose lease ran out records nothing, so each job is
recorded done once. Pinning is idempotent on the IPFS node, so doing the RPC again
after a crash is harmless. Each call to the daemon has ``pin_timeout_s``, shorter
than the lease (the settings refuse otherwise), so a live worker finishes before
its lease ends. An unreachable daemon, a refused or bad CID, a timeout: each is a
recorded failure with its reason, never a crash; a database outage is waited out.

Log lines: ``pinned cid=… attempts=…``, ``unpinned cid=…``, ``pin failed cid=… status=…
error=…``: one per recorded outcome (the crash-safety test counts them). The worker
holds no key material.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ipfsrpc import RpcClient

from .errors import DatabaseError, IpfsRefused, IpfsUnavailable
from .pin_settings import PinSettings
from .stop import StopCue
from .store.pins import Job, Pins

if TYPE_CHECKING:
    from .settings import IndexerSettings

log = logging.getLogger(__name__)

__all__ = ["PinClient", "PinWorker", "WorkerFigures"]


class PinClient(RpcClient):
    """The operator's IPFS node (:mod:`ipfsrpc`), raising the indexer's errors."""

    unavailable = IpfsUnavailable
    refused = IpfsRefused
    unreadable = IpfsRefused


@dataclass
class WorkerFigures:
    """What one worker did since it started (for its log and the benchmark)."""

    pinned: int = 0
    unpinned: int = 0
    failures: int = 0
    lost: int = 0  # outcomes not recorded: the lease had gone to another claim


def _default(name: str) -> Any:
    return PinSettings.model_fields[name].default


@dataclass
class PinWorker:
    """One pin worker on ``pins`` (the queue) and ``ipfs`` (the daemon); settings are the indexer's ``pin_*``."""

    pins: Pins
    ipfs: RpcClient
    # The defaults are the settings' (one place): see indexer.pin_settings.
    interval: float = _default("pin_interval")
    batch: int = _default("pin_batch")
    lease_s: float = _default("pin_lease_s")
    grace_s: float = _default("pin_unpin_grace_s")
    max_attempts: int = _default("pin_max_attempts")
    backoff_s: float = _default("pin_backoff_s")
    backoff_max_s: float = _default("pin_backoff_max_s")

    def __post_init__(self) -> None:
        self.figures = WorkerFigures()

    @classmethod
    def from_settings(cls, pins: Pins, settings: IndexerSettings) -> PinWorker:
        """A worker configured by the indexer's settings (``ipfs_api``, which must be set, and ``pin_*``)."""
        if settings.ipfs_api is None:
            raise IpfsUnavailable("no IPFS node configured: set ipfs_api (EMPRESSA_INDEXER_IPFS_API)")
        return cls(
            pins=pins,
            ipfs=PinClient(settings.ipfs_api, timeout=settings.pin_timeout_s),
            interval=settings.pin_interval,
            batch=settings.pin_batch,
            lease_s=settings.pin_lease_s,
            grace_s=settings.pin_unpin_grace_s,
            max_attempts=settings.pin_max_attempts,
            backoff_s=settings.pin_backoff_s,
            backoff_max_s=settings.pin_backoff_max_s,
        )

    def run(self, stop: StopCue) -> None:
        """Reconcile, claim, pin, record, until ``stop`` is set; a database outage is logged and waited out."""
        log.info("pin worker started ipfs_api=%s", self.ipfs.api)
        backoff = self.interval
        while not stop.is_set():
            try:
                busy = self.step()
                backoff = self.interval
            except DatabaseError as exc:
                log.warning("pin worker: database unavailable retry_in=%.1f error=%s", backoff, exc)
                stop.wait(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            if not busy:
                stop.wait(self.interval)
        log.info(
            "pin worker stopped pinned=%d unpinned=%d failures=%d",
            self.figures.pinned,
            self.figures.unpinned,
            self.figures.failures,
        )

    def step(self) -> bool:
        """One reconcile and one batch of jobs; whether there was work (then the next step comes at once)."""
        read = 0
        while n := self.pins.reconcile(grace_s=self.grace_s):
            read += n
        jobs = self.pins.claim(n=self.batch, lease_s=self.lease_s, grace_s=self.grace_s)
        for job in jobs:
            self.do(job)
        return bool(jobs) or read > 0

    def do(self, job: Job) -> None:
        """Pin or unpin ``job``'s CID and record the outcome (see the module docstring)."""
        try:
            if job.op == "pin":
                self.ipfs.pin(job.cid)
            else:
                self.ipfs.unpin(job.cid)
        except (IpfsUnavailable, IpfsRefused) as exc:
            self._failed(job, f"{exc.code}: {exc}")
            return
        except Exception as exc:  # an unexpected answer: recorded on the job, never a crash loop
            log.exception("pin job failed unexpectedly cid=%s", job.cid)
            self._failed(job, f"internal: {type(exc).__name__}: {exc}")
            return
        done = self.pins.pinned(job) if job.op == "pin" else self.pins.unpinned(job)
        if not done:
            self.figures.lost += 1
            log.warning("pin job lease lost, outcome not recorded cid=%s op=%s", job.cid, job.op)
        elif job.op == "pin":
            self.figures.pinned += 1
            log.info("pinned cid=%s attempts=%d", job.cid, job.attempts)
        else:
            self.figures.unpinned += 1
            log.info("unpinned cid=%s", job.cid)

    def _failed(self, job: Job, reason: str) -> None:
        self.figures.failures += 1
        status = self.pins.failed(
            job,
            reason,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
        )
        log.warning(
            "pin failed cid=%s op=%s attempts=%d status=%s error=%s",
            job.cid,
            job.op,
            job.attempts,
            status or "lease-lost",
            reason,
        )
