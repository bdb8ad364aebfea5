"""One run per folder: a lock (pid, host, start time, refreshed while the run lives), the run's status, clearing a
previous run's outputs on ``overwrite_output_dir`` (never what the run reads), and resuming only from complete
checkpoints.

A run killed without a word (SIGKILL, out of memory, a lost machine) leaves ``running`` behind; :func:`run_state`
reads such a folder as ``interrupted`` (its process is gone on this host, or its lock has not been refreshed for
:data:`STALE_S` seconds) and :func:`unfinished_problem` says so in one message for the commands that read a run.

File-system faults (disk full, read-only, a file where the folder belongs) become one message naming
``output_dir``; recording a failure never raises."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from typing import Optional

from .api import UserError
from .runtime import is_main_process
from .safeio import os_error_text, write_json

LOCK = ".lfx_run.lock"
STATUS = "run_status.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# what a previous run left in its folder (cleared before a new run with overwrite_output_dir: true)
RUN_FILES = (
    "predictions.jsonl", "classification_report.json", "classification_report.md", "confusion_matrix.png",
    "cls_run.json", "label_map.json", "cls_head.safetensors", "all_results.json", "train_results.json",
    "eval_results.json", "predict_results.json", "trainer_state.json", "trainer_log.jsonl", STATUS,
    "adapter_model.safetensors", "adapter_config.json", "model.safetensors", "model.safetensors.index.json",
    "config.json", "training_args.bin", "README.md",
)
RUN_PATTERNS = (re.compile(r"^model-\d+-of-\d+\.safetensors$"), re.compile(r"^training_.*\.png$"), CHECKPOINT,
                re.compile(r"^incomplete-checkpoint-\d+$"))
# host keys whose values are paths the run reads (comma-separated lists allowed); `dataset_dir` stands for the
# dataset_info.json and the data files of the datasets a run names
INPUT_KEYS = ("model_name_or_path", "adapter_name_or_path", "resume_from_checkpoint", "dataset_dir", "media_dir",
              "tokenized_path", "cache_dir", "deepspeed", "ref_model", "ref_model_adapters", "reward_model",
              "reward_model_adapters")
DATASET_KEYS = ("dataset", "eval_dataset", "test_dataset")
HEARTBEAT_S = 30  # a held lock's mtime is refreshed this often
STALE_S = 600  # a lock of another host not refreshed for this long belongs to a run that stopped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _proc_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None where unknown:
    tells a live run from a new process that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def owner_record() -> dict:
    """Who holds a run folder: pid, host, start time (and the process's start ticks, against pid reuse)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pid_start": _proc_start(os.getpid())}


def owner_gone(owner: dict, lock_age: Optional[float] = None) -> Optional[str]:
    """Why the run that ``owner`` (a lock or status record) names has stopped, or None if it may be alive: its
    process is gone on this host (or the pid now belongs to another process), or, on another host, its lock
    (``lock_age`` seconds since last refreshed) has gone stale."""
    pid, host = owner.get("pid"), owner.get("host")
    if host is None or host == socket.gethostname():
        if not isinstance(pid, int) or isinstance(pid, bool) or not _pid_alive(pid):
            return f"its process (pid {pid}) is gone"
        start = owner.get("pid_start")
        if start and _proc_start(pid) not in (None, start):
            return f"its process (pid {pid}) is gone (the pid now belongs to another process)"
        return None
    if lock_age is not None and lock_age > STALE_S:
        return f"its lock on host {host} has not been refreshed for {lock_age / 60:.0f} min"
    return None


class RunLock:
    """Exclusive ownership of an output folder; a lock whose process is gone (same host) is taken over."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK)
        self.held = False

    def acquire(self) -> "RunLock":
        if not is_main_process():
            return self
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as err:
            raise self._refused(err, "cannot create it") from None
        me = owner_record()
        before, why = run_state(self.output_dir)
        noted = False
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                gone = owner_gone(owner) if owner is not None and owner.get("host") == socket.gethostname() else None
                if gone:
                    noted = True
                    print(f"llama-factory-ext: {self.output_dir} holds an interrupted run (started {owner.get('started')}; "
                          f"{gone}: killed, or its machine stopped); taking the folder over", file=sys.stderr)
                    self._remove_stale()
                    continue
                if owner is None:  # being written right now, or unreadable: look again
                    time.sleep(0.2)
                    owner = self._owner() or {}
                    if not owner:
                        self._remove_stale()
                        continue
                stale = owner_gone(owner, _age(self.path))
                raise UserError(
                    f"key `output_dir`: {self.output_dir} is in use by another run (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, since {owner.get('started')})"
                    + (f"; {stale}, so it has probably stopped: if no run uses the folder, delete {self.path}" if stale
                       else f"; pick another output_dir, or wait for it. If no run uses it any more, delete {self.path}")
                )
            except OSError as err:
                raise self._refused(err, "cannot write in it") from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as err:  # e.g. the disk is full
                self._remove_stale()
                raise self._refused(err, "cannot write in it") from None
            self.held = True
            if before == "interrupted" and not noted:  # marked running, no lock left: say so too
                print(f"llama-factory-ext: {self.output_dir} holds an interrupted run ({why}); taking the folder over",
                      file=sys.stderr)
            self._beat = threading.Event()
            threading.Thread(target=self._heartbeat, args=(self._beat,), name="lfx-run-lock", daemon=True).start()
            return self
        raise UserError(f"key `output_dir`: cannot take the lock {self.path}")

    def _refused(self, err: OSError, what: str) -> UserError:
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            return UserError(f"key `output_dir`: {self.output_dir} is a file, not a folder; pick another output_dir")
        return UserError(f"key `output_dir`: {self.output_dir}: {what} ({os_error_text(err)})")

    def _remove_stale(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise self._refused(err, f"cannot remove the stale lock {self.path}") from None

    def _owner(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                owner = json.load(f)
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def _heartbeat(self, stop: threading.Event) -> None:
        """Refresh the lock's mtime while the run lives (readers on other hosts tell a stopped run by its age)."""
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Remove the lock; never raises (a lock left behind is taken over by the next run on this host)."""
        if self.held:
            self.held = False
            self._beat.set()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as err:
                print(f"llama-factory-ext: warning: cannot remove the lock {self.path} ({os_error_text(err)}); "
                      "the next run here takes it over", file=sys.stderr)


def write_status(output_dir: str, status: str, **fields) -> None:
    """``run_status.json``: running / finished / failed (with reason and advice). A file-system fault is a
    UserError naming ``output_dir``."""
    if not is_main_process():
        return
    me = owner_record()
    data = {"status": status, "pid": me["pid"], "host": me["host"], "pid_start": me["pid_start"],
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), **fields}
    path = os.path.join(output_dir, STATUS)
    try:
        write_json(path, data)
    except OSError as err:
        raise UserError(f"key `output_dir`: cannot write {path} ({os_error_text(err)})") from None


def mark_failed(output_dir: str, reason: str, **fields) -> bool:
    """Record a failed run; never raises. When ``run_status.json`` cannot be written (disk full, read-only), a
    stale ``running`` is removed (removing needs no space) and one message says what the folder now shows."""
    if not is_main_process():
        return True
    try:
        write_status(output_dir, "failed", reason=reason, **fields)
        return True
    except Exception as exc:  # noqa: BLE001 -- the failure handler must not fail
        why = exc.problems[0] if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    path = os.path.join(output_dir, STATUS)
    status = read_status(output_dir)
    if status is None:
        left = f"{STATUS} is absent, so the folder does not claim a finished run"
    elif status.get("status") != "running":
        left = f"{STATUS} still says `{status.get('status')}` from an earlier run (pid {status.get('pid')})"
    else:
        try:
            os.unlink(path)
            left = "the stale `running` status was removed"
        except OSError:
            left = f"{STATUS} still says `running`, but the run (pid {status.get('pid')}) has stopped"
    print(f"llama-factory-ext: the run failed and the failure could not be recorded ({why}); {left}",
          file=sys.stderr, flush=True)
    return False


def _age(path: str) -> Optional[float]:
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:
        return None


def run_state(output_dir: str) -> tuple[str, str]:
    """(state, why) of a run folder: ``finished`` / ``failed`` (as recorded), ``running`` (its process may be alive),
    ``interrupted`` (it says or looks ``running``, but its process is gone, or its lock is stale, or it holds no
    lock: a live run holds one), or ``none`` (no run status and no lock)."""
    status = read_status(output_dir)
    lock_path = os.path.join(output_dir, LOCK)
    try:
        with open(lock_path, encoding="utf-8") as f:
            lock = json.load(f)
    except (OSError, ValueError):
        lock = None
    lock = lock if isinstance(lock, dict) else None
    said = (status or {}).get("status")
    if said in ("finished", "failed"):
        return said, str((status or {}).get("reason") or "")
    if said != "running" and lock is None:
        return "none", ""
    owner = lock or status
    gone = owner_gone(owner, _age(lock_path) if lock else None)
    if gone is None and lock is None and owner.get("host") not in (None, socket.gethostname()):
        gone = f"it holds no lock (a live run holds one), so its process on host {owner.get('host')} ended without a word"
    where = f"pid {owner.get('pid')} on {owner.get('host') or 'this host'}, started {owner.get('started') or owner.get('time')}"
    return ("interrupted", f"{gone} ({where})") if gone else ("running", where)


def unfinished_problem(run_dir: str) -> Optional[str]:
    """One message when ``run_dir`` holds a run that is still running, was interrupted or failed (what a command
    that reads a finished run refuses), else None."""
    state, why = run_state(run_dir)
    if state == "interrupted":
        return (f"{run_dir} holds an interrupted run: it is marked running, but {why}; it has no final "
                "weights. Run the same recipe again to resume it from its last complete checkpoint, or train anew "
                "with overwrite_output_dir: true")
    if state == "running":
        return f"{run_dir} holds a run that is still running ({why}); wait until it finishes"
    if state == "failed":
        return f"{run_dir} holds a failed run ({STATUS}: {why.splitlines()[0] if why else 'no reason recorded'})"
    return None


def read_status(output_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(output_dir, STATUS), encoding="utf-8") as f:
            status = json.load(f)
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def previous_run(output_dir: str) -> list[str]:
    """Entries of ``output_dir`` that a previous run wrote."""
    try:
        names = os.listdir(output_dir)
    except (OSError, ValueError):  # absent, a file, unreadable, a name the file system cannot hold
        return []
    return sorted(e for e in names if e in RUN_FILES or any(p.match(e) for p in RUN_PATTERNS))


def to_clear(output_dir: str) -> list[str]:
    """What ``overwrite_output_dir`` removes from ``output_dir``: a previous run's outputs; nothing if the folder
    holds no run (no run marker)."""
    gone = previous_run(output_dir)
    markers = {"cls_run.json", "trainer_state.json", "all_results.json", STATUS, "trainer_log.jsonl"}
    if not (set(gone) & markers or any(CHECKPOINT.match(e) for e in gone)):
        return []
    return gone


def _values(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if isinstance(v, (str, os.PathLike)) and str(v).strip()]
    if isinstance(value, (str, os.PathLike)):
        return [v.strip() for v in str(value).split(",") if v.strip()]
    return []


def _dataset_files(args: dict) -> list[tuple[str, str]]:
    """(key, path) of the dataset_info.json under ``dataset_dir`` and of the local files of the datasets named."""
    ddir = args.get("dataset_dir") or "data"
    if not isinstance(ddir, (str, os.PathLike)) or str(ddir) == "ONLINE" or str(ddir).startswith("REMOTE:"):
        return []
    info_path = os.path.join(ddir, "dataset_info.json")
    found = [("dataset_dir", info_path)]
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return found
    for key in DATASET_KEYS:
        for name in _values(args.get(key)):
            entry = info.get(name) if isinstance(info, dict) else None
            file_name = entry.get("file_name") if isinstance(entry, dict) else None
            if isinstance(file_name, str) and file_name:
                path = os.path.join(ddir, file_name)
                folder = entry.get("folder")
                found.append((key, os.path.join(path, folder) if isinstance(folder, str) and folder else path))
    return found


def input_paths(args: dict) -> list[tuple[str, str]]:
    """(key, path) for every local path the run reads: each of :data:`INPUT_KEYS` (lists split), and for
    ``dataset_dir`` its dataset_info.json and the data files of ``dataset`` / ``eval_dataset`` / ``test_dataset``."""
    found: list[tuple[str, str]] = []
    for key in INPUT_KEYS:
        if key == "dataset_dir":
            if any(args.get(k) for k in DATASET_KEYS):
                found += _dataset_files(args)
            continue
        found += [(key, v) for v in _values(args.get(key))]
    return [(k, p) for k, p in found if os.path.lexists(p)]


def overwrite_conflicts(output_dir: str, inputs: dict) -> list[str]:
    """One problem per input that ``overwrite_output_dir`` would remove before the run reads it: an input that is
    ``output_dir`` itself (a folder input reads its files) or lies in one of the entries :func:`to_clear` lists."""
    gone = to_clear(output_dir)
    if not gone:
        return []
    outs = {os.path.abspath(output_dir), os.path.realpath(output_dir)}
    entries = {os.path.join(o, e): e for o in outs for e in gone}
    problems = []
    for key, path in input_paths(inputs):
        forms = {os.path.abspath(path), os.path.realpath(path)}
        if forms & outs:
            problems.append(f"key `{key}`: {path} is output_dir itself: `overwrite_output_dir: true` would remove its "
                            f"run files ({', '.join(gone[:4])}{', ...' if len(gone) > 4 else ''}) before the run reads "
                            "them; pick a new output_dir for this run")
            continue
        hit = next((e for f in forms for full, e in entries.items() if f == full or f.startswith(full + os.sep)), None)
        if hit is not None:
            problems.append(f"key `{key}`: {path} lies in {hit} of output_dir {output_dir}, which `overwrite_output_dir: "
                            f"true` would remove before the run reads it; pick a new output_dir for this run, or move "
                            f"{path} out of {output_dir} first")
    return problems


def clear_previous_run(output_dir: str, inputs: dict) -> list[str]:
    """Remove a previous run's outputs (files and checkpoints), nothing else; returns what was removed.

    ``inputs``: the run's host keys (see :func:`input_paths`). If anything the run reads would be removed, one
    UserError names the key and the path, and nothing is removed."""
    if not is_main_process():
        return []
    problems = overwrite_conflicts(output_dir, inputs)
    if problems:
        raise UserError(problems)
    gone = to_clear(output_dir)
    for e in gone:
        path = os.path.join(output_dir, e)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as err:
            raise UserError(f"key `overwrite_output_dir`: cannot remove {path} from the previous run "
                            f"({os_error_text(err)})") from None
    if gone:
        print(f"llama-factory-ext: overwrite_output_dir: removed the previous run's outputs from {output_dir} "
              f"({len(gone)} entries: {', '.join(gone[:6])}{' ...' if len(gone) > 6 else ''})", file=sys.stderr)
    return gone


def checkpoint_complete(path: str) -> bool:
    """A checkpoint the trainer finished writing: trainer state and weights present and readable."""
    state = os.path.join(path, "trainer_state.json")
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    names = os.listdir(path)
    return any(n.endswith((".safetensors", ".bin")) for n in names)


def _newest_first(names) -> list[str]:
    """The ``checkpoint-N`` entries among ``names``, highest step first."""
    return [e for _, e in sorted(((int(m.group(1)), e) for e in names for m in [CHECKPOINT.match(e)] if m),
                                 reverse=True)]


def latest_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (read only), or None."""
    try:
        names = os.listdir(output_dir)
    except (OSError, ValueError):
        return None
    return next((p for p in (os.path.join(output_dir, n) for n in _newest_first(names)) if checkpoint_complete(p)),
                None)


def usable_checkpoint(output_dir: str, wanted: Optional[str]) -> Optional[str]:
    """The checkpoint to resume from: ``wanted`` if complete, else the newest complete one.

    Incomplete ones (a kill during saving) are renamed ``incomplete-checkpoint-N`` with a warning.
    """
    if not wanted or not is_main_process():
        return wanted
    wanted_dir = os.path.dirname(os.path.abspath(wanted))
    if wanted_dir != os.path.abspath(output_dir):
        if not checkpoint_complete(wanted):
            raise UserError(f"key `resume_from_checkpoint`: {wanted} is incomplete (no trainer_state.json or weights)")
        return wanted
    for name in _newest_first(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if checkpoint_complete(path):
            return path
        moved = os.path.join(output_dir, "incomplete-" + name)
        os.replace(path, moved)
        print(f"llama-factory-ext: warning: {path} is incomplete (the run stopped while saving it); "
              f"skipped and moved to {moved}", file=sys.stderr)
    print(f"llama-factory-ext: warning: no complete checkpoint in {output_dir}; training starts from the beginning",
          file=sys.stderr)
    return None
