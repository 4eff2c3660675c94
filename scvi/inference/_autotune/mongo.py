"""hyperopt's MongoDB trials store and job claiming, on pymongo >= 4.

hyperopt 0.3's ``MongoJobs`` / ``MongoTrials`` call pymongo-3 APIs that pymongo 4 removed
(``Collection.insert/update/remove/find_and_modify``, ``Cursor.count``, ``Database.authenticate``;
upstream hyperopt issue #932). The subclasses here replace exactly those calls and keep hyperopt's
document format (``jobs``, ``job_ids``, ``drivers``, GridFS ``fs``), so hyperopt's own tools can
still read a database written here, and ours can read theirs.

Additions that hyperopt lacks: every operation the search loop depends on is retried while the
server is briefly unreachable (restart), and jobs whose worker is gone go back to the queue
(:func:`requeue_jobs`).
"""
import copy
import logging
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import gridfs
import pymongo
import pymongo.errors
from bson import SON
from hyperopt import base
from hyperopt.mongoexp import MongoJobs, MongoTrials, OperationFailure
from hyperopt.utils import coarse_utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a client waits for the server before an operation fails (then retried, see ``retrying``).
SERVER_SELECTION_TIMEOUT_S = 5.0
#: Seconds during which operations are retried while the server is unreachable.
RETRY_WINDOW_S = 120.0

_TRANSIENT = (pymongo.errors.AutoReconnect, pymongo.errors.ConnectionFailure, pymongo.errors.NetworkTimeout)


def to_mongodb_uri(url: str, default_db: str = "scvi_db") -> Tuple[str, str]:
    """Normalise a database address to a standard ``mongodb://`` URI and a database name.

    Parameters
    ----------
    url
        ``mongodb://[user:pw@]host:port[/db][?options]`` (or ``mongodb+srv://``), hyperopt's
        ``mongo://host:port/db/jobs``, or the legacy ``host:port/db``.
    default_db
        Database used when ``url`` names none.

    Returns
    -------
    (uri, db_name)
        ``uri`` keeps credentials and options (TLS, ``authSource``...), which pymongo handles.

    Raises
    ------
    ValueError
        If ``url`` is empty or is not one of the forms above.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(
            f"`mongo_url` must be a non-empty string such as 'mongodb://localhost:1234/scvi_db'; got {url!r}"
        )
    url = url.strip()
    if url.startswith("mongodb+srv://"):  # resolved by pymongo through DNS at connection time
        path = urllib.parse.urlsplit(url).path.strip("/")
        return url, urllib.parse.unquote(path) or default_db
    if url.startswith("mongodb://"):
        from pymongo.uri_parser import parse_uri

        try:
            parsed = parse_uri(url)
        except Exception as exc:  # pymongo raises InvalidURI / ConfigurationError
            raise ValueError(f"`mongo_url` is not a valid MongoDB URI: {url!r} ({exc})") from exc
        return url, parsed.get("database") or default_db
    if url.startswith("mongo://"):  # hyperopt's form: mongo://host:port/db/collection
        url = url[len("mongo://"):]
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"`mongo_url` scheme must be 'mongodb', 'mongodb+srv' or 'mongo'; got {scheme!r}")
    hostport, _, path = url.partition("/")
    if not hostport:
        raise ValueError(f"`mongo_url` has no host: {url!r}")
    db_name = path.split("/")[0] or default_db
    return f"mongodb://{hostport}/{urllib.parse.quote(db_name)}", db_name


def with_database(uri: str, db_name: str) -> str:
    """``uri`` with its path set to ``/db_name`` (credentials and options kept)."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + urllib.parse.quote(db_name), parts.query, ""))


def retrying(fn: Callable[[], T], what: str, window_s: Optional[float] = None) -> T:
    """Call ``fn()``, retrying with backoff while the server is unreachable.

    A restarted server (same data) is thus invisible to the search; after ``window_s`` seconds
    without a server the last error is raised.
    """
    window_s = RETRY_WINDOW_S if window_s is None else window_s
    deadline = time.monotonic() + window_s
    delay = 0.05
    while True:
        try:
            return fn()
        except _TRANSIENT as exc:
            if time.monotonic() > deadline:
                raise
            logger.debug("MongoDB unreachable during %s (%s); retrying in %.2fs", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def connect(uri: str, db_name: str) -> Tuple[pymongo.MongoClient, Any]:
    """Open a client (hyperopt's SON documents, acknowledged writes) and return it with the database."""
    client = pymongo.MongoClient(
        uri,
        document_class=SON,
        w=1,
        serverSelectionTimeoutMS=int(SERVER_SELECTION_TIMEOUT_S * 1000),
        connectTimeoutMS=int(SERVER_SELECTION_TIMEOUT_S * 1000),
        retryWrites=False,
    )
    return client, client[db_name]


class MongoJobs4(MongoJobs):
    """hyperopt's ``MongoJobs`` (the ``jobs`` collection and its GridFS attachments) on pymongo 4."""

    @classmethod
    def connect(cls, uri: str, db_name: str, jobs_coll: str = "jobs", gfs_coll: str = "fs") -> "MongoJobs4":
        """Connect to ``db_name`` at ``uri`` (see :func:`to_mongodb_uri`)."""
        client, db = connect(uri, db_name)
        return cls(db, db[jobs_coll], gridfs.GridFS(db, collection=gfs_coll), client, None, "spec")

    @classmethod
    def new_from_connection_str(cls, conn_str: str, gfs_coll: str = "fs", config_name: str = "spec") -> "MongoJobs4":
        """Connect from any address accepted by :func:`to_mongodb_uri` (hyperopt's included)."""
        collection = "jobs"
        if conn_str.startswith("mongo://") and conn_str.count("/") >= 4:
            collection = conn_str.rstrip("/").rsplit("/", 1)[1]
        uri, db_name = to_mongodb_uri(conn_str)
        return cls.connect(uri, db_name, jobs_coll=collection, gfs_coll=gfs_coll)

    def __len__(self) -> int:
        try:
            return self.jobs.count_documents({})
        except pymongo.errors.PyMongoError:
            return 0

    def close(self) -> None:
        """Close the client connection."""
        self.conn.close()

    def insert(self, job: dict) -> dict:
        """Insert a copy of ``job``; return the copy with its ``_id``."""
        cpy = copy.deepcopy(job)
        try:
            self.jobs.insert_one(cpy)
        except pymongo.errors.OperationFailure as exc:
            raise OperationFailure(exc) from exc
        return cpy

    def delete(self, job: dict) -> None:
        """Delete one job document."""
        try:
            self.jobs.delete_one({"_id": job["_id"]})
        except pymongo.errors.OperationFailure as exc:
            raise OperationFailure(exc) from exc

    def delete_all(self, cond: Optional[dict] = None) -> None:
        """Delete the jobs matching ``cond`` and their attachments."""
        try:
            for doc in self.jobs.find(filter=cond or {}, projection=["_id", "_attachments"]):
                for name, file_id in doc.get("_attachments", []):
                    try:
                        self.gfs.delete(file_id)
                    except gridfs.errors.NoFile:
                        logger.error("failed to remove attachment %s:%s", name, file_id)
                self.jobs.delete_one({"_id": doc["_id"]})
        except pymongo.errors.OperationFailure as exc:
            raise OperationFailure(exc) from exc

    def reserve(self, host_id: Sequence[str], cond: Optional[dict] = None, exp_key: Optional[str] = None):
        """Atomically claim the oldest new job (state 0, no owner); return it or ``None``."""
        cond = dict(cond or {})
        if exp_key is not None:
            cond["exp_key"] = exp_key
        if cond.get("owner") is not None:
            raise ValueError("refusing to reserve owned job")
        cond["owner"] = None
        cond["state"] = base.JOB_STATE_NEW
        now = coarse_utcnow()
        claim = {"owner": list(host_id), "book_time": now, "state": base.JOB_STATE_RUNNING, "refresh_time": now}
        update = {"$set": claim}
        try:
            return self.jobs.find_one_and_update(
                cond, update, sort=[("_id", pymongo.ASCENDING)], return_document=pymongo.ReturnDocument.AFTER
            )
        except pymongo.errors.OperationFailure as exc:
            logger.error("Error during reserve_job: %s", exc)
            return None

    def update(self, doc: dict, dct: dict, collection=None, do_sanity_checks: bool = True) -> dict:
        """Set ``dct`` on ``doc`` if its ``version`` is unchanged in the database (then bump it).

        Raises
        ------
        hyperopt.mongoexp.OperationFailure
            If the document changed meanwhile (e.g. its job was handed back to the queue) or is
            gone, and ``do_sanity_checks``.
        """
        collection = self.collection if collection is None else collection
        dct = copy.deepcopy(dct)
        if "_id" not in doc:
            raise ValueError('doc must have an "_id" key to be updated')
        if dct.pop("_id", doc["_id"]) != doc["_id"]:
            raise ValueError("cannot update the _id field")
        dct.pop("version", None)
        if "version" in doc:
            query = {"_id": doc["_id"], "version": doc["version"]}
            dct["version"] = doc["version"] + 1
        else:
            query = {"_id": doc["_id"]}
            dct["version"] = 1
        try:
            matched = collection.update_one(query, {"$set": dct}, upsert=False).matched_count
        except pymongo.errors.OperationFailure as exc:
            raise OperationFailure(exc) from exc
        if do_sanity_checks and not matched:
            raise OperationFailure(f"updated doc not found (changed or removed meanwhile): {doc['_id']}")
        doc.update(dct)
        return doc


class MongoTrials4(MongoTrials):
    """hyperopt's ``MongoTrials`` on pymongo 4, same database layout.

    Parameters
    ----------
    arg
        A :class:`MongoJobs4`, or an address accepted by :func:`to_mongodb_uri` (a
        ``mongodb://`` URI, hyperopt's ``mongo://host:port/db/jobs`` or ``host:port/db``).
    exp_key
        The experiment whose trials this object sees (``None``: all).
    refresh
        Load the trials now.

    Notes
    -----
    Pickling drops the database handle (as scVI 0.6 did before pickling its trials): the
    unpickled object keeps ``trials``, ``results``, ``best_trial``... but cannot refresh.
    ``hyperopt.fmin(..., trials=MongoTrials4(...))`` runs the fast driver loop of
    :func:`scvi.inference._autotune.driver.run_fmin` (workers are started separately).
    """

    def __init__(self, arg, exp_key: Optional[str] = None, cmd=None, workdir=None, refresh: bool = True):
        if not isinstance(arg, MongoJobs):
            arg = MongoJobs4.new_from_connection_str(arg)
        parent_init = super().__init__
        retrying(lambda: parent_init(arg, exp_key=exp_key, cmd=cmd, workdir=workdir, refresh=False), "index creation")
        if refresh:
            self.refresh()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("handle", None)
        return state

    def refresh_tids(self, tids: Optional[Iterable[int]]) -> None:
        """Sync local trial documents from the database (retried across a server restart)."""
        retrying(lambda: super(MongoTrials4, self).refresh_tids(tids), "refresh")

    def _insert_trial_docs(self, docs: List[dict]) -> List[Any]:
        ids = []
        for doc in docs:
            doc = SON(doc)

            def insert(doc=doc):
                try:
                    return self.handle.jobs.insert_one(doc).inserted_id
                except pymongo.errors.DuplicateKeyError:  # a retried insert that had gone through
                    return doc["_id"]

            ids.append(retrying(insert, "insert"))
        return ids

    def count_by_state_unsynced(self, arg) -> int:
        """Number of this experiment's jobs in state(s) ``arg``, read from the database."""
        states = [arg] if isinstance(arg, int) else list(arg)
        if not all(state in base.JOB_STATES for state in states):
            raise ValueError(f"invalid state(s) {arg!r}; allowed: {sorted(base.JOB_STATES)}")
        query: Dict[str, Any] = {"state": states[0] if len(states) == 1 else {"$in": states}}
        if self._exp_key is not None:
            query["exp_key"] = self._exp_key
        return retrying(lambda: self.handle.jobs.count_documents(query), "count")

    def new_trial_ids(self, n: int) -> List[int]:
        """Reserve ``n`` trial ids, unique across the whole database (hyperopt's ``job_ids``)."""
        doc = retrying(
            lambda: self.handle.db.job_ids.find_one_and_update(
                {"a": 0}, {"$inc": {"last_id": n}}, upsert=True, return_document=pymongo.ReturnDocument.AFTER
            ),
            "new trial ids",
        )
        last = doc["last_id"]
        return list(range(last - n, last))

    def fmin(self, fn, space, algo=None, max_evals=None, timeout=None, rstate=None, show_progressbar=True, **kwargs):
        """Run the search driver on this trials store (see :func:`~scvi.inference._autotune.driver.run_fmin`)."""
        from .driver import run_fmin

        run_fmin(self, fn, space, algo=algo, max_evals=max_evals, timeout=timeout, rstate=rstate)
        return self.argmin if kwargs.get("return_argmin", True) else None


def owner_of(hostname: str, pid: int) -> List[str]:
    """hyperopt's job ``owner`` value for a worker process: ``["hostname:pid"]``."""
    return [f"{hostname}:{pid}"]


def requeue_jobs(handle: MongoJobs, query: dict, reason: str) -> int:
    """Put the running jobs matching ``query`` back in the queue; return how many.

    The ``version`` is bumped, so a late result from the previous owner is refused.
    """
    query = dict(query, state=base.JOB_STATE_RUNNING)
    update = {
        "$set": {"state": base.JOB_STATE_NEW, "owner": None, "book_time": None, "refresh_time": None},
        "$inc": {"version": 1},
    }
    count = retrying(lambda: handle.jobs.update_many(query, update).modified_count, "requeue")
    if count:
        logger.warning("%d job(s) put back in the queue: %s", count, reason)
    return count


def requeue_stale(handle: MongoJobs, exp_key: Optional[str], lease_s: float) -> int:
    """Requeue running jobs whose worker has not checked in for ``lease_s`` seconds."""
    import datetime

    cutoff = coarse_utcnow() - datetime.timedelta(seconds=lease_s)
    query: Dict[str, Any] = {"refresh_time": {"$lt": cutoff}}
    if exp_key is not None:
        query["exp_key"] = exp_key
    return requeue_jobs(handle, query, f"their worker has not checked in for {lease_s:.0f}s")
